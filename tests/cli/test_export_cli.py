"""``bafenet export`` and ``--backend onnxruntime`` for ``val`` and ``predict`` on a tiny synthetic devkit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bafenet.cli import main
from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import config_to_dict, load_config
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.checkpoint import save_checkpoint
from bafenet.engine.setup import build_model_from_config

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exportcli") / "devkit"
    return write_synthetic_devkit(root, n=12, seed=5, sizes=((96, 80), (120, 100)))


@pytest.fixture(scope="module")
def weights(devkit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained BAFE-Net-HR checkpoint (native protocol at x2) whose head gives scores of
    order 1 (with the official N(0, 0.01) init they are nearly tied: float rounding could reorder them)."""
    cfg = load_config(
        PACKAGED_CONFIGS / "bafenet_hr.yaml",
        [f"data.root={devkit}", "eval.split=val", "eval.amp=false", "model.kwargs.channels=16",
         "model.kwargs.backbone_width=8"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model_from_config(cfg)
    for module in model.head.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.1)
    for module in model.head.cross_task.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)
    nn.init.constant_(model.head.cls_pred.bias, -2.0)
    path = tmp_path_factory.mktemp("weights") / "hr.pt"
    return save_checkpoint(
        path, model, cfg.model.name, config_to_dict(cfg), metadata={"operating_score_thr": 0.3}
    )


@pytest.fixture(scope="module")
def onnx_file(weights: Path) -> Path:
    assert main(["export", "--weights", str(weights), "--format", "onnx", "--dynamic"]) == 0
    return weights.with_suffix(".onnx")  # the default output


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_export_writes_a_dynamic_graph_next_to_the_weights(onnx_file: Path) -> None:
    import onnx

    proto = onnx.load(str(onnx_file))
    assert proto.opset_import[0].version == 17
    images = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in images] == ["batch", 1, "height", "width"]
    assert not [p for p in onnx_file.parent.iterdir() if p.name.startswith(".")]  # no temporary file


def test_export_errors_are_one_line_and_leave_nothing(weights: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.onnx"
    cases = [
        (["--weights", str(tmp_path / "missing.pt")], "missing.pt: checkpoint file not found"),
        (["--weights", str(weights), "--opset", "8", "--out", str(out)], "opset must be in 11..20, got 8"),
        (["--weights", str(weights), "--size", "100", "64", "--out", str(out)], "multiples of 32"),
        (["--weights", str(weights), "--out", str(tmp_path)], "is a folder"),
    ]
    for args, message in cases:
        assert main(["export", *args]) == 1
        line = _error_line(capsys)
        assert line.startswith("bafenet: error: ") and message in line
    assert list(tmp_path.iterdir()) == []


def test_export_without_onnx_says_how_to_install_it(
    weights: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    assert main(["export", "--weights", str(weights), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "need the package onnx: pip install bafenet[export]" in _error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def _val(weights: Path, devkit: Path, out: Path, *flags: str) -> tuple[dict, list]:
    val = ["val", "--weights", str(weights), "--data", str(devkit), "--out", str(out), "--device", "cpu"]
    code = main([*val, *flags])  # onnxruntime runs on the CPU: compare on the same device
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics, json.loads((out / "predictions.json").read_text())


def test_val_on_onnxruntime_equals_pytorch(
    weights: Path, onnx_file: Path, devkit: Path, tmp_path: Path
) -> None:
    expected, expected_preds = _val(weights, devkit, tmp_path / "torch")
    got, got_preds = _val(onnx_file, devkit, tmp_path / "ort", "--backend", "onnxruntime")
    assert (expected["backend"], got["backend"]) == ("torch", "onnxruntime")
    assert expected["num_pred"] > 0 and got["num_pred"] == expected["num_pred"]
    assert got["mAP07"] == pytest.approx(expected["mAP07"], abs=0.002)
    assert got["recall"] == pytest.approx(expected["recall"], abs=0.002)
    assert got["sky_iou"] == pytest.approx(expected["sky_iou"], abs=0.002)
    assert len(got_preds) == len(expected_preds) == expected["num_images"] == 3
    for ours, theirs in zip(expected_preds, got_preds, strict=True):  # rounded to 0.01 px, 1e-4
        assert theirs["image_id"] == ours["image_id"]
        np.testing.assert_allclose(theirs["boxes"], ours["boxes"], rtol=0, atol=0.0101)
        np.testing.assert_allclose(theirs["scores"], ours["scores"], rtol=0, atol=1.01e-4)


def test_predict_on_onnxruntime_equals_pytorch(
    weights: Path, onnx_file: Path, devkit: Path, tmp_path: Path
) -> None:
    images = [str(p) for p in sorted((devkit / "PNGImages").glob("*.png"))[:2]]
    records = []
    for name, model, flags in (("torch", weights, []), ("ort", onnx_file, ["--backend", "onnxruntime"])):
        out = tmp_path / name
        predict = ["predict", "--weights", str(model), *images, "--out", str(out), "--device", "cpu"]
        assert main([*predict, *flags]) == 0
        records.append(json.loads((out / "predictions.json").read_text()))
    expected, got = records
    assert got["score_thr"] == expected["score_thr"] == 0.3  # the operating point stored in the file
    assert 0 < len(got["annotations"]) == len(expected["annotations"])
    for ours, theirs in zip(expected["annotations"], got["annotations"], strict=True):  # rounded to 0.01 px
        np.testing.assert_allclose(theirs["bbox"], ours["bbox"], rtol=0, atol=0.0201)
        assert theirs["score"] == pytest.approx(ours["score"], abs=1.01e-4)
