"""``bafenet val --sky-gate-sweep``: every gate threshold scored from one ungated pass."""

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
    return write_synthetic_devkit(tmp_path_factory.mktemp("gate") / "devkit", n=6, seed=4, sizes=((64, 64),))


def _weights(devkit: Path, path: Path, *extra: str) -> Path:
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
            *extra,
        ],
    )
    torch.manual_seed(0)
    return save_checkpoint(path, build_model_from_config(cfg), cfg.model.name, config_to_dict(cfg))


def _val(weights: Path, devkit: Path, out: Path, *flags: str) -> int:
    return main(["val", "--weights", str(weights), "--data", str(devkit), "--out", str(out), *flags])


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
