"""The exported ONNX graph: raw per-level head outputs equal PyTorch's for any batch and input size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bafenet.models.context import resample_context, whole_image_context
from bafenet.models.export import HeadGraph, export_onnx
from bafenet.models.zoo import build_model

ort = pytest.importorskip("onnxruntime")

TINY = {"channels": 16, "backbone_width": 8}


def spread_scores(model: nn.Module) -> nn.Module:
    """Give an untrained head outputs of order 1 (the official N(0, 0.01) init makes them tiny
    and nearly tied, so float rounding could reorder them)."""
    torch.manual_seed(0)
    for module in model.head.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.1)
    if model.head.cross_task is not None:
        for module in model.head.cross_task.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
    nn.init.constant_(model.head.cls_pred.bias, -2.0)
    return model.eval()


def assert_dense_close(expected: list[torch.Tensor], got: list[np.ndarray]) -> None:
    """Equal within 1e-4 relative to max(1, |value|) (box distances are pixels, up to tens)."""
    assert len(expected) == len(got)
    for ours, theirs in zip(expected, got, strict=True):
        assert theirs.shape == tuple(ours.shape)
        error = np.abs(theirs - ours.numpy()) / np.maximum(1.0, np.abs(ours.numpy()))
        assert error.max() <= 1e-4


def test_dynamic_graph_gives_the_head_outputs_at_any_size(tmp_path):
    torch.manual_seed(0)
    model = spread_scores(build_model("bafenet_hr", **TINY))
    path = export_onnx(model, tmp_path / "bafenet.onnx", height=64, width=96, dynamic=True)
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    names = [o.name for o in session.get_outputs()]
    assert names[:5] == ["cls_logits_0", "cls_logits_1", "cls_logits_2", "cls_logits_3", "box_distances_0"]
    assert names[-1] == "sky_logits_3" and len(names) == 4 * 4
    graph = HeadGraph(model)
    for batch, height, width in ((2, 96, 64), (1, 128, 160)):  # other sizes than the export's
        images = torch.rand(batch, 1, height, width) * 255
        with torch.no_grad():
            expected = graph(images)
        got = session.run(None, {"images": images.numpy()})
        assert got[0].shape == (batch, 1, height // 4, width // 4)
        assert_dense_close(expected, got)


def test_fixed_graph_takes_its_size_only(tmp_path):
    model = build_model("fcos_hr", **TINY).eval()
    path = export_onnx(model, tmp_path / "fixed.onnx", height=64, width=64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 1, 64, 64]
    assert [o.name for o in session.get_outputs()][-1] == "centerness_logits_3"  # no sky branch
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument):
        session.run(None, {"images": np.zeros((1, 1, 64, 96), np.float32)})


@pytest.mark.parametrize("context_net", [False, True])
def test_sky_context_graph_takes_the_context_as_inputs(tmp_path, context_net):
    torch.manual_seed(0)
    switches = {"sky_context": True, "context_size": 64, "context_net": context_net, "context_width": 8}
    model = spread_scores(build_model("fcos_seg_hr", **switches, **TINY))
    path = export_onnx(model, tmp_path / "context.onnx", height=64, width=96, dynamic=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    strides = model.strides
    assert [i.name for i in session.get_inputs()] == ["images", "context_images"] + [
        f"sky_prior_{level}" for level in range(len(strides))
    ]
    images = torch.rand(2, 1, 128, 96) * 255
    sizes = [(128, 96), (100, 70)]  # the second image is padded in the batch
    context = whole_image_context(images, model.context_size, sizes)
    zeros = {f"sky_prior_{i}": np.zeros((1, 1, 32 // s, 32 // s), np.float32) for i, s in enumerate(strides)}
    with torch.no_grad():
        expected = model.head_outputs(images, image_sizes=sizes)
        # the context part depends on the context images alone (here: no images, no priors)
        first = {"images": np.zeros((1, 1, 32, 32), np.float32), "context_images": context.images.numpy()}
        context_logits = torch.from_numpy(session.run(["context_sky_logits"], first | zeros)[0])
        priors = {
            f"sky_prior_{level}": resample_context(
                context_logits, context, (128 // s, 96 // s), s, strides[0]
            ).numpy()
            for level, s in enumerate(strides)
        }
        feeds = {"images": images.numpy(), "context_images": context.images.numpy(), **priors}
        got = session.run(None, feeds)
    assert_dense_close(expected.context_sky_logits[:1], got[-1:])
    head = [x for field in expected[:4] for x in field]
    assert_dense_close(head, got[:-1])


def test_export_refuses_sizes_off_the_stride_and_unknown_opsets(tmp_path):
    model = build_model("fcos_hr", **TINY)
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(model, tmp_path / "a.onnx", height=100, width=64)
    with pytest.raises(ValueError, match="opset must be in 11..20"):
        export_onnx(model, tmp_path / "a.onnx", height=64, width=64, opset=9)
    assert not list(tmp_path.iterdir())
