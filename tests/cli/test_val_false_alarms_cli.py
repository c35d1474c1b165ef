"""``bafenet val``: the checkpoint's stated operating point, false alarms by sky, a refused --out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bafenet.cli import main
from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import config_to_dict, load_config
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.checkpoint import save_checkpoint
from bafenet.engine.setup import build_model_from_config


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_devkit(tmp_path_factory.mktemp("fa") / "devkit", n=6, seed=3, sizes=((64, 64),))


def _weights(devkit: Path, folder: Path, metadata: dict | None) -> Path:
    """An untrained bafenet_r18 checkpoint whose low score threshold still yields detections."""
    cfg = load_config(
        PACKAGED_CONFIGS / "bafenet_r18.yaml",
        [
            f"data.root={devkit}",
            "eval.split=val",
            "eval.score_thr=0.0",
            "eval.amp=false",
            "model.weights_backbone=null",
            "eval.protocol=native",
            "eval.scale=1",
        ],  # fmt: skip
    )
    torch.manual_seed(0)
    return save_checkpoint(
        folder / "w.pt", build_model_from_config(cfg), cfg.model.name, config_to_dict(cfg), metadata=metadata
    )


def test_val_reports_the_stated_operating_point_and_the_sky_split(
    devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = _weights(devkit, tmp_path, {"operating_score_thr": 0.0})  # every kept detection
    out = tmp_path / "val"
    assert main(["val", "--weights", str(weights), "--data", str(devkit), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stated_score_thr"] == 0.0 and "operating point" in metrics["stated_score_thr_source"]
    # at threshold 0 every prediction counts; the split adds up to all false alarms
    assert metrics["irstd_false_alarms_at_stated"] == metrics["num_pred"] - round(
        metrics["irstd_pd_at_stated"] * metrics["irstd_num_targets"]
    )
    split = [
        metrics[f"irstd_false_alarms_{where}_at_stated"] for where in ("in_sky", "off_sky", "sky_unknown")
    ]
    assert sum(split) == metrics["irstd_false_alarms_at_stated"] > 0
    assert split[2] == 0  # the synthetic set annotates every pixel's sky
    for level in ("0.80", "0.85", "0.90"):
        assert f"irstd_fa_per_mpix_at_pd_{level}" in metrics
    assert "sky_iou" in metrics and "sky_pixel_accuracy" in metrics
    assert "irstd_false_alarms_off_sky_at_stated" in printed and (out / "metrics.txt").is_file()


def test_val_without_a_stated_threshold_and_a_refused_out(
    devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = _weights(devkit, tmp_path, None)
    out = tmp_path / "val"
    assert main(["val", "--weights", str(weights), "--data", str(devkit), "--out", str(out)]) == 0
    assert "stated_score_thr" not in json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["val", "--weights", str(weights), "--data", str(devkit), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.txt" in err[0] and "Traceback" not in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
