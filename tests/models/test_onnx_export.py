from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from bafenet.models.export import DenseOutputs, export_onnx
from bafenet.models.zoo import build_model

ort = pytest.importorskip("onnxruntime")


def test_onnx_export_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = build_model("bafenet_r18").eval()
    # With the official N(0, 0.01) head init, an untrained net's channel scores are tiny and
    # nearly tied, so the rounding differences between runtimes could select other channels.
    # Kaiming-scaled cross-task convs give features of order 1 and well-separated scores.
    for module in model.head.cross_task.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)
    path = tmp_path / "bafenet.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, path, height=96, width=64)
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))

    images = torch.rand(1, 1, 96, 64) * 255
    with torch.no_grad():
        expected = DenseOutputs(model)(images)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["cls_prob", "centerness", "boxes", "sky_prob"]
    got = session.run(None, {"images": images.numpy()})
    locations = 12 * 8 + 6 * 4 + 3 * 2
    assert (
        got[0].shape == (1, locations, 1)
        and got[2].shape == (1, locations, 4)
        and got[3].shape == (1, 96, 64)
    )
    for ours, theirs in zip(expected, got, strict=True):
        np.testing.assert_allclose(theirs, ours.numpy(), rtol=1e-4, atol=1e-5)
