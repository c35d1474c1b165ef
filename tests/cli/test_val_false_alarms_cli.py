"""``bafenet val``: the stated operating point, false alarms by sky, the sky-gate sweep, a refused --out."""

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
from bafenet.engine.sky_gate import GATE_GRID


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_devkit(tmp_path_factory.mktemp("fa") / "devkit", n=6, seed=3, sizes=((64, 64),))


def _weights(devkit: Path, path: Path, *overrides: str, metadata: dict | None = None) -> Path:
    """An untrained bafenet_r18 checkpoint (a sky model) whose zero score threshold keeps detections."""
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
            *overrides,
        ],
    )
    torch.manual_seed(0)
    return save_checkpoint(
        path, build_model_from_config(cfg), cfg.model.name, config_to_dict(cfg), metadata=metadata
    )


def _val(weights: Path, devkit: Path, out: Path, *flags: str) -> int:
    return main(["val", "--weights", str(weights), "--data", str(devkit), "--out", str(out), *flags])


def test_val_reports_the_stated_operating_point_and_the_sky_split(
    devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # operating point 0: every kept detection counts
    weights = _weights(devkit, tmp_path / "w.pt", metadata={"operating_score_thr": 0.0})
    out = tmp_path / "val"
    assert _val(weights, devkit, out) == 0
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
    weights = _weights(devkit, tmp_path / "w.pt")
    out = tmp_path / "val"
    assert _val(weights, devkit, out) == 0
    assert "stated_score_thr" not in json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert _val(weights, devkit, out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.txt" in err[0] and "Traceback" not in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_sweep_scores_each_threshold_as_the_models_own_gate_does(
    devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gated = _weights(devkit, tmp_path / "gated.pt", "model.kwargs.sky_gate_thr=0.5")
    assert _val(gated, devkit, tmp_path / "own_gate") == 0
    own_gate = json.loads((tmp_path / "own_gate" / "metrics.json").read_text())
    assert own_gate["sky_gate_thr"] == 0.5
    capsys.readouterr()

    assert _val(gated, devkit, tmp_path / "sweep", "--sky-gate-sweep") == 0
    printed = capsys.readouterr().out
    assert "sky gate (0.5) is off for the sweep" in printed
    metrics = json.loads((tmp_path / "sweep" / "metrics.json").read_text())
    record = json.loads((tmp_path / "sweep" / "sky_gate.json").read_text())
    sweep = record["sweep"]
    assert list(sweep) == [f"{t:g}" for t in GATE_GRID] and record["split"] == "val"
    assert metrics["sky_gate_thr"] is None  # evaluated without the gate
    assert sweep["0"]["num_pred"] == metrics["num_pred"] > sweep["0.5"]["num_pred"]
    # filtering the ungated detections at 0.5 gives what the model's own gate at 0.5 returned
    assert sweep["0.5"]["num_pred"] == own_gate["num_pred"]
    assert sweep["0.5"]["mAP07"] == pytest.approx(own_gate["mAP07"])
    counts = [sweep[k]["num_pred"] for k in sweep]
    assert counts == sorted(counts, reverse=True)
    best = max(sweep.values(), key=lambda m: m["mAP07"])["mAP07"]
    assert sweep[f"{record['best_threshold']:g}"]["mAP07"] == best
    advice = "leave the gate off" if record["best_threshold"] == 0 else "model.kwargs.sky_gate_thr="
    assert advice in printed


def test_sweep_refuses_a_model_without_sky_and_the_onnx_backend(
    devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = _weights(devkit, tmp_path / "plain.pt", "model.name=fcos_r18")
    assert _val(plain, devkit, tmp_path / "plain", "--sky-gate-sweep") == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("--sky-gate-sweep needs a sky model, not fcos_r18") and "\n" not in err
    assert not (tmp_path / "plain").exists()  # nothing written
    assert _val(plain, devkit, tmp_path / "onnx", "--sky-gate-sweep", "--backend", "onnxruntime") == 1
    assert "runs with --backend torch" in capsys.readouterr().err
