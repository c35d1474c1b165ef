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
