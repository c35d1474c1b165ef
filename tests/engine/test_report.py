"""Evaluation outputs: files written, with and without detections."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bafenet.engine import report
from bafenet.engine.report import check_eval_out, write_eval_outputs
from bafenet.errors import BafenetError


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


def _details() -> dict:
    return {
        "per_image": [{"image_id": "a", "tp": 1}],
        "pr_curve": {"recall": np.array([0.0, 1.0]), "precision": np.array([1.0, 0.5])},
        "pd_fa_curve": {"pd": np.array([0.5, 0.9]), "fa_per_mpix": np.array([0.0, 2.0])},
    }


def test_new_outputs_replace_the_old_set_as_a_whole(tmp_path: Path) -> None:
    out = tmp_path / "val"
    write_eval_outputs(out, {"mAP07": 0.1}, _details())
    written = write_eval_outputs(out, {"mAP07": 0.2}, {"pr_curve": None})  # no Pd-FA curve this time
    assert json.loads((out / "metrics.json").read_text())["mAP07"] == 0.2
    assert not (out / "pd_fa_curve.png").exists()  # nothing of the old set is left
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    assert [p.name for p in tmp_path.iterdir()] == ["val"]  # no staging or old folder left


def test_failure_midway_keeps_the_previous_set_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "val"
    write_eval_outputs(out, {"mAP07": 0.1}, _details())
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_plot(*args: object) -> None:
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report, "_plot_pd_fa", broken_plot)  # after metrics.json and the PR plot
    with pytest.raises(RuntimeError, match="plot failed"):
        write_eval_outputs(out, {"mAP07": 0.9}, _details())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["val"]


def test_a_folder_with_other_files_or_a_file_is_refused(tmp_path: Path) -> None:
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(BafenetError, match="notes.txt"):
        write_eval_outputs(tmp_path, {"mAP07": 0.1}, {})
    assert keep.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(BafenetError, match="not a folder"):
        check_eval_out(keep)


def test_metrics_json_has_null_for_nan_and_the_table_names_undefined_values(tmp_path: Path) -> None:
    metrics = {
        "mAP07": 0.5,
        "irstd_pd": float("nan"),
        "irstd_false_alarms_off_sky": np.int64(7),
        "irstd_fa_per_mpix_at_pd_0.85": 1.25,
        "irstd_fa_per_mpix_at_pd_0.90": None,
    }
    write_eval_outputs(tmp_path / "v", metrics, {})
    saved = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert saved["irstd_pd"] is None and saved["irstd_false_alarms_off_sky"] == 7
    table = (tmp_path / "v" / "metrics.txt").read_text()
    rows = {line.split()[0]: line.split()[1] for line in table.splitlines()[2:-1]}
    assert rows["irstd_false_alarms_off_sky"] == "7"
    assert rows["irstd_fa_per_mpix_at_pd_0.85"] == "1.2500"
    assert rows["irstd_fa_per_mpix_at_pd_0.90"] == "--"
    assert "interpolated" in table
