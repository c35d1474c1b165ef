"""Run logs: CSV rows kept exactly once across a resume, column changes, curves."""

from __future__ import annotations

from pathlib import Path

import pytest

from bafenet.engine.logs import RunLogger, plot_curves, read_csv


def _logger(run: Path) -> RunLogger:
    return RunLogger(run, tensorboard=False)


def test_truncate_after_keeps_the_checkpointed_epochs_and_steps(tmp_path: Path) -> None:
    logger = _logger(tmp_path)
    for epoch in (1, 2, 3):
        for step in range(10 * epoch - 9, 10 * epoch + 1):
            logger.log_iter(step, {"loss": 1.0 / step})
        logger.log_epoch(epoch, {"loss": 1.0 / epoch})
    with open(tmp_path / "epochs.csv", "a") as fh:
        fh.write("4")  # a row torn by a kill

    # resuming from a checkpoint taken after 2 epochs (20 steps)
    logger.truncate_after(2, 20)
    assert [r["epoch"] for r in read_csv(tmp_path / "epochs.csv")] == ["1", "2"]
    assert [int(r["step"]) for r in read_csv(tmp_path / "iters.csv")] == list(range(1, 21))
    logger.log_epoch(3, {"loss": 1 / 3})
    logger.log_epoch(4, {"loss": 0.25})
    assert [r["epoch"] for r in read_csv(tmp_path / "epochs.csv")] == ["1", "2", "3", "4"]


def test_truncate_after_without_logs_and_when_disabled(tmp_path: Path) -> None:
    _logger(tmp_path).truncate_after(3, 30)
    assert list(tmp_path.iterdir()) == []
    disabled = RunLogger(tmp_path / "other", enabled=False)
    disabled.log_epoch(1, {"loss": 1.0})
    disabled.truncate_after(0, 0)
    assert not (tmp_path / "other").exists()


def test_new_columns_rewrite_the_file_with_every_row(tmp_path: Path) -> None:
    logger = _logger(tmp_path)
    logger.log_epoch(1, {"loss": 2.0})
    logger.log_epoch(2, {"loss": 1.0, "mAP07": 0.5})  # the first validation adds columns
    rows = read_csv(tmp_path / "epochs.csv")
    assert rows == [
        {"epoch": "1", "loss": "2.0", "mAP07": ""},
        {"epoch": "2", "loss": "1.0", "mAP07": "0.5"},
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epochs.csv"]  # no temporary file left
    assert read_csv(tmp_path / "missing.csv") == []


def test_plot_curves_draws_losses_and_metrics(tmp_path: Path) -> None:
    logger = _logger(tmp_path)
    logger.log_iter(10, {"loss": 2.0, "lr": 0.1})
    logger.log_iter(20, {"loss": 1.0, "lr": 0.1})
    logger.log_epoch(1, {"loss": 1.5, "mAP07": 0.2})
    written = plot_curves(tmp_path)
    assert [p.name for p in written] == ["loss_curves.png", "metric_curves.png"]
    assert all(p.stat().st_size > 0 for p in written)


def test_metric_curves_draw_the_main_metrics_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """epochs.csv holds every numeric metric; the plot keeps a readable legend."""
    import matplotlib.axes

    drawn: list[str] = []
    plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(
        matplotlib.axes.Axes, "plot", lambda ax, *a, **kw: drawn.append(kw.get("label")) or plot(ax, *a, **kw)
    )
    logger = _logger(tmp_path)
    many = {f"irstd_fa_per_mpix_at_pd_0.{k}": 1.0 for k in range(80, 100)}
    logger.log_epoch(1, {"loss": 1.5, "lr": 0.1, "mAP07": 0.2, "sky_iou": 0.5, **many})
    plot_curves(tmp_path)
    assert drawn == ["mAP07", "sky_iou"]
