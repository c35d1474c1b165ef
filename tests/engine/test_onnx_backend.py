"""The onnxruntime backend: a checkpoint exported to ONNX detects as the PyTorch detector does."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import config_to_dict, load_config
from bafenet.engine.checkpoint import save_checkpoint
from bafenet.engine.inference import load_trained_model
from bafenet.engine.onnx_backend import OnnxDetector, export_model, load_onnx_model
from bafenet.engine.setup import build_model_from_config
from bafenet.engine.tiling import predict_tiled
from bafenet.errors import BafenetError, DataError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

CPU = torch.device("cpu")
MODELS = {
    "sky": ["model.name=bafenet_hr"],
    "sky_context": [
        "model.name=fcos_seg_hr",
        "model.kwargs.sky_context=true",
        "model.kwargs.context_size=64",
    ],
}


def tiny_checkpoint(path: Path, overrides: list[str]) -> Path:
    """A small HR checkpoint whose untrained head gives scores of order 1 (the official
    N(0, 0.01) init makes them tiny and nearly tied, so float rounding could reorder them)."""
    cfg = load_config(
        PACKAGED_CONFIGS / "bafenet_hr.yaml",
        ["model.kwargs.channels=16", "model.kwargs.backbone_width=8", "eval.amp=false", *overrides],
    )
    torch.manual_seed(0)
    model = build_model_from_config(cfg)
    for module in model.head.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.1)
    if model.head.cross_task is not None:
        for module in model.head.cross_task.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
    nn.init.constant_(model.head.cls_pred.bias, -2.0)
    metadata = {"operating_score_thr": 0.4, "metrics_val_v2": {"mAP07": 0.5}}
    return save_checkpoint(path, model, cfg.model.name, config_to_dict(cfg), metadata=metadata)


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, dynamic ONNX file) of a sky model and of a sky_context model."""
    folder = tmp_path_factory.mktemp(f"onnx_{request.param}")
    weights = tiny_checkpoint(folder / "model.pt", MODELS[request.param])
    return weights, export_model(weights, folder / "model.onnx", height=64, width=64)


def test_onnx_detector_detects_as_the_pytorch_detector(exported) -> None:
    weights, path = exported
    torch_model, _, _ = load_trained_model(weights, CPU)
    onnx_model, _, _ = load_onnx_model(path, CPU)
    assert isinstance(onnx_model, OnnxDetector) and onnx_model.eval() is onnx_model
    torch.manual_seed(1)
    for height, width in ((96, 128), (160, 64)):  # neither is the export's example size
        images = torch.rand(2, 1, height, width) * 255
        image_sizes = [(height, width), (height - 30, width - 20)]  # the second one padded
        original_sizes = [(height // 2, width // 2), (height - 30, width - 20)]
        with torch.no_grad():
            expected_dense = torch_model.head_outputs(images, image_sizes=image_sizes)
            expected = torch_model(images, image_sizes=image_sizes, original_sizes=original_sizes)
        dense = onnx_model.head_outputs(images, image_sizes)
        for field in ("cls_logits", "box_distances", "centerness_logits", "sky_logits"):
            for ours, theirs in zip(getattr(expected_dense, field), getattr(dense, field), strict=True):
                error = (theirs - ours).abs() / ours.abs().clamp(min=1.0)
                assert float(error.max()) <= 1e-4, field
        got = onnx_model(images, image_sizes=image_sizes, original_sizes=original_sizes)
        for ours, theirs in zip(expected, got, strict=True):
            assert 0 < len(ours["boxes"]) == len(theirs["boxes"])  # the same detections, in order
            assert torch.equal(ours["labels"], theirs["labels"])
            torch.testing.assert_close(theirs["boxes"], ours["boxes"], rtol=0, atol=1e-3)
            torch.testing.assert_close(theirs["scores"], ours["scores"], rtol=0, atol=1e-5)
            torch.testing.assert_close(theirs["sky_prob"], ours["sky_prob"], rtol=0, atol=1e-5)


def test_tiled_prediction_on_onnxruntime(exported) -> None:
    weights, path = exported
    torch_model, _, _ = load_trained_model(weights, CPU)
    onnx_model, _, _ = load_onnx_model(path, CPU)
    image = torch.rand(1, 150, 170) * 255
    expected = predict_tiled(torch_model, image, tile_size=96, overlap=32, device=CPU)
    got = predict_tiled(onnx_model, image, tile_size=96, overlap=32, device=CPU)
    assert 0 < len(got["boxes"]) == len(expected["boxes"])
    torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=0, atol=1e-3)
    torch.testing.assert_close(got["sky_prob"], expected["sky_prob"], rtol=0, atol=1e-5)


def test_the_file_holds_config_and_metadata(exported) -> None:
    weights, path = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["bafenet.format"] == "bafenet-onnx"
    _, cfg, ckpt = load_trained_model(weights, CPU)
    model, onnx_cfg, onnx_ckpt = load_onnx_model(path, CPU, overrides=["eval.nms_iou=0.3"])
    assert onnx_ckpt["model_name"] == ckpt["model_name"] == props["bafenet.model_name"]
    assert onnx_ckpt["metadata"] == ckpt["metadata"] == json.loads(props["bafenet.metadata"])
    assert onnx_ckpt["config"] == config_to_dict(cfg)  # the file alone is enough
    assert onnx_cfg.eval.nms_iou == 0.3 and model.nms_thresh == 0.3  # overrides as for a checkpoint
    assert model.score_thresh == cfg.eval.score_thr and model.detections_per_img == cfg.eval.max_per_img
    model.score_thresh = 0.5  # settable, as on the PyTorch detector
    assert model.postprocessor.score_thresh == 0.5


def test_a_checkpoint_runs_on_onnxruntime_through_a_temporary_export(tmp_path: Path) -> None:
    weights = tiny_checkpoint(tmp_path / "model.pt", ["model.name=fcos_hr"])
    model, cfg, ckpt = load_trained_model(weights, CPU, ["eval.score_thr=0.2"], backend="onnxruntime")
    assert isinstance(model, OnnxDetector) and model.score_thresh == 0.2
    assert ckpt["model_name"] == "fcos_hr" and ckpt["metadata"]["operating_score_thr"] == 0.4
    images = torch.rand(1, 1, 64, 96) * 255
    torch_model, _, _ = load_trained_model(weights, CPU, ["eval.score_thr=0.2"])
    with torch.no_grad():
        expected = torch_model(images)[0]
    got = model(images)[0]
    assert "sky_prob" not in got and 0 < len(got["boxes"]) == len(expected["boxes"])
    torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=0, atol=1e-3)
    assert list(tmp_path.iterdir()) == [weights]  # nothing left behind


def test_fixed_graph_runs_a_batch_image_by_image_and_refuses_other_sizes(tmp_path: Path) -> None:
    weights = tiny_checkpoint(tmp_path / "model.pt", ["model.name=fcos_hr"])
    path = export_model(weights, tmp_path / "fixed.onnx", dynamic=False, height=64, width=96)
    model, _, _ = load_onnx_model(path, CPU)
    assert model.fixed_size == (64, 96)
    images = torch.rand(3, 1, 64, 96) * 255
    batched = model(images)
    for i in range(3):
        alone = model(images[i : i + 1])[0]
        torch.testing.assert_close(batched[i]["boxes"], alone["boxes"])
    with pytest.raises(DataError, match=r"fixed.onnx: the graph takes 64x96 input only .* got 64x64"):
        model(torch.zeros(1, 1, 64, 64))


def test_files_that_are_not_bafenet_onnx_files_fail_clearly(tmp_path: Path) -> None:
    weights = tiny_checkpoint(tmp_path / "model.pt", ["model.name=fcos_hr"])
    with pytest.raises(DataError, match="missing.onnx: ONNX file not found"):
        load_onnx_model(tmp_path / "missing.onnx", CPU)
    renamed = tmp_path / "renamed.onnx"
    renamed.write_bytes(weights.read_bytes())
    with pytest.raises(DataError, match="renamed.onnx: not a readable ONNX file"):
        load_onnx_model(renamed, CPU)
    foreign = tmp_path / "foreign.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(DataError, match="foreign.onnx: not an ONNX file written by bafenet export"):
        load_onnx_model(foreign, CPU)
    external = onnx.helper.make_model(graph)
    external.graph.initializer.append(onnx.numpy_helper.from_array(np.ones(4, np.float32), "w"))
    onnx.save(
        external,
        str(tmp_path / "external.onnx"),
        save_as_external_data=True,
        location="w.bin",
        size_threshold=0,
    )
    assert (tmp_path / "w.bin").is_file()  # a path the file names: never followed
    with pytest.raises(DataError, match="external.onnx: its weights are in external data files"):
        load_onnx_model(tmp_path / "external.onnx", CPU)
    with pytest.raises(BafenetError, match="opset must be in 11..20, got 9"):
        export_model(weights, tmp_path / "old.onnx", opset=9)
    assert not (tmp_path / "old.onnx").exists()


@pytest.mark.parametrize(
    ("stored", "overrides", "message"),
    [
        ({"bafenet.config": "[1]"}, [], ": broken bafenet metadata (bafenet.config is not a mapping)"),
        ({"bafenet.metadata": "[1]"}, [], ": broken bafenet metadata (bafenet.metadata is not a mapping)"),
        (
            {"bafenet.metadata": '{"operating_score_thr": 2}'},
            [],
            ": checkpoint metadata.operating_score_thr 2 is not a score threshold in [0, 1]",
        ),
        ({}, ["eval.scale=-1"], " + overrides eval.scale=-1: eval.scale must be > 0"),
    ],
)
def test_bad_stored_config_metadata_or_overrides_fail_clearly(
    stored: dict[str, str], overrides: list[str], message: str, tmp_path: Path
) -> None:
    """The file's config and metadata are checked as a checkpoint's are (one line naming the file)."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    proto = onnx.helper.make_model(graph)
    props = {
        "bafenet.format": "bafenet-onnx",
        "bafenet.format_version": "1",
        "bafenet.model_name": "fcos_hr",
        "bafenet.config": json.dumps(config_to_dict(load_config(None))),
        "bafenet.metadata": "{}",
        **stored,
    }
    onnx.helper.set_model_props(proto, props)
    path = tmp_path / "edited.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(BafenetError, match=f"^{re.escape(f'{path}{message}')}$"):
        load_onnx_model(path, CPU, overrides=overrides)


@pytest.mark.parametrize("package", ["onnx", "onnxruntime"])
def test_a_missing_package_says_how_to_install_it(package: str, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # `import package` raises ImportError
    with pytest.raises(BafenetError, match=rf"need the package {package}: pip install bafenet\[export\]"):
        load_onnx_model(tmp_path / "model.onnx", CPU)
