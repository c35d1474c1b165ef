"""The demo verb: a fixed amount of work (epochs), its verdict and exit status, its safety cap.

Every run here is bounded by epochs, never by the clock: the score of a demo run depends on
its data, seed and epochs only, not on how fast or busy the machine is.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bafenet.cli import main
from bafenet.engine import trainer
from bafenet.engine.optim import TrainingBudget


def test_tiny_demo_writes_its_report_and_fails_below_the_bar(tmp_path: Path, capsys) -> None:
    """1 epoch on 8 images (3 steps, still in warm-up) predicts nothing: mAP07 0, FAIL, exit 1."""
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--n", "8", "--epochs", "1", "--no-progress"])
    stdout = capsys.readouterr().out
    assert code == 1
    assert "demo mAP07 0.000 (the demo expects >= 0.5: FAIL)" in stdout
    assert "bafenet_hr (high-resolution BAFE-Net" in stdout and "1 epoch(s)" in stdout
    assert "R18" not in stdout  # it trains bafenet_hr, not BAFE-Net R18
    for name in (
        "report.md",
        "report.html",
        "val/metrics.json",
        "val/pr_curve.png",
        "train/best.pt",
        "stats/stats.json",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "val" / "metrics.json").read_text())
    assert metrics["mAP07"] == 0.0 and metrics["num_images"] == 2
    summary = json.loads((out / "train" / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and not summary["stopped_by_budget"]
    assert list((out / "predictions").glob("*.png"))
    report = (out / "report.md").read_text()
    assert "trained 1 of 1 epoch(s)" in report and "mAP07 0.000 (expected >= 0.5: FAIL)" in report
    assert "safety cap" not in report


def _hour_per_call() -> Callable[[], float]:
    """A fake clock that jumps an hour each time it is read."""
    ticks = itertools.count(1)
    return lambda: 3600.0 * next(ticks)


def test_safety_cap_says_plainly_that_it_cut_the_run(tmp_path: Path, capsys, monkeypatch) -> None:
    """The cap is hit after the first step (a fake clock: no race): output and report say so."""
    monkeypatch.setattr(trainer, "TrainingBudget", functools.partial(TrainingBudget, clock=_hour_per_call()))
    out = tmp_path / "demo"
    code = main(
        ["demo", "--out", str(out), "--n", "8", "--epochs", "3", "--max-minutes", "30", "--no-progress"]
    )
    stdout = capsys.readouterr().out
    assert code == 1 and "FAIL" in stdout
    expected = "Training was stopped by the 30-minute safety cap after 1 of 3 epochs"
    assert expected in stdout and expected in (out / "report.md").read_text()
    summary = json.loads((out / "train" / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and summary["stopped_by_budget"]


def test_demo_refuses_a_bad_cap(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--max-minutes", "-1"])
    assert exc.value.code == 2
    assert "--max-minutes: expected a finite number of minutes >= 0, got '-1'" in capsys.readouterr().err


@pytest.mark.timeout(3600)  # a hang guard only: ~4 minutes alone on one thread, longer on a busy machine
def test_demo_defaults_learn_the_synthetic_task(tmp_path: Path) -> None:
    """The README's ``bafenet demo`` (default data, seed and 14 epochs) reaches mAP07 >= 0.5.

    The default run is bounded by its epochs; the safety cap is turned off here so that no
    clock can shorten it: the score is what 14 epochs learn, on any machine.
    """
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--max-minutes", "0", "--no-progress"]) == 0
    metrics = json.loads((out / "val" / "metrics.json").read_text())
    summary = json.loads((out / "train" / "summary.json").read_text())
    assert summary["epochs_done"] == 14 and not summary["stopped_by_budget"]
    assert metrics["mAP07"] >= 0.5, metrics["mAP07"]
    assert "PASS" in (out / "report.md").read_text()
