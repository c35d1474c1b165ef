"""The demo verb end to end at a tiny size (the accuracy target needs the full default run)."""

from __future__ import annotations

import json
from pathlib import Path

from bafenet.cli import main


def test_demo_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    code = main(
        ["demo", "--out", str(out), "--n", "8", "--epochs", "1", "--minutes", "0.05", "--no-progress"]
    )
    assert code == 0
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
    assert 0.0 <= metrics["mAP07"] <= 1.0 and metrics["num_images"] == 2
    assert list((out / "predictions").glob("*.png"))
    assert "mAP07" in (out / "report.md").read_text()


def test_demo_defaults_learn_the_synthetic_task(tmp_path: Path) -> None:
    """The README's ``bafenet demo`` (default size and epochs) reaches its mAP07 >= 0.5 target.

    Epoch-bounded (14 epochs finish well inside the 7-minute cap even on one thread), so the
    run and its score are reproducible; ~4 minutes on one CPU thread.
    """
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "val" / "metrics.json").read_text())
    summary = json.loads((out / "train" / "summary.json").read_text())
    assert summary["epochs_done"] == 14 and not summary["stopped_by_budget"]
    assert metrics["mAP07"] >= 0.5, metrics["mAP07"]
    assert "PASS" in (out / "report.md").read_text()
