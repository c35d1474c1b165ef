"""Evaluation outputs: files written, with and without detections."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from bafenet.engine.report import write_eval_outputs


def test_outputs_with_curves(tmp_path: Path) -> None:
    details = {
        "per_image": [{"image_id": "a", "tp": 1}],
        "pr_curve": {"recall": np.array([0.0, 0.5, 1.0]), "precision": np.array([1.0, 1.0, 0.5])},
        "pd_fa_curve": {"pd": np.array([0.2, 0.8]), "fa_per_mpix": np.array([0.0, 3.0])},
    }
    written = write_eval_outputs(tmp_path, {"mAP07": 0.5, "mAP12": 0.6}, details)
    names = {p.name for p in written}
    assert {"metrics.json", "per_image.json", "pr_curve.png", "pd_fa_curve.png"} <= names
    assert json.loads((tmp_path / "metrics.json").read_text())["mAP07"] == 0.5
    assert Image.open(tmp_path / "pr_curve.png").size[0] > 100


def test_outputs_without_detections_plot_no_empty_legend(tmp_path: Path) -> None:
    """No detection at all: the PR plot says so and matplotlib does not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = write_eval_outputs(tmp_path, {"mAP07": 0.0, "mAP12": 0.0}, {"pr_curve": None})
    assert tmp_path / "pr_curve.png" in written
    assert tmp_path / "pd_fa_curve.png" not in written
    assert not (tmp_path / "predictions.json").exists()
