"""The models on a GPU (skipped without CUDA): same results as on the CPU, losses and detections."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bafenet.models.zoo import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _well_scaled(name: str) -> nn.Module:
    """A model whose cross-task features are of order 1 (well-separated channel scores)."""
    torch.manual_seed(0)
    model = build_model(name)
    if model.head.cross_task is not None:
        for module in model.head.cross_task.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
    return model


@pytest.mark.parametrize("name", ["fcos_r18", "bafenet_r18", "bafenet_r50"])
def test_cuda_matches_cpu(name, batch_factory):
    model = _well_scaled(name).eval()
    images, targets = batch_factory(96, 128, [[[8.0, 10.0, 40.0, 44.0], [50.0, 50.0, 53.0, 53.0]], []])
    allow_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # full fp32 convs for the comparison
    try:
        with torch.no_grad():
            cpu = model.head_outputs(images)
            gpu_model = model.cuda()
            gpu = gpu_model.head_outputs(images.cuda())
    finally:
        torch.backends.cudnn.allow_tf32 = allow_tf32
    for field in ("cls_logits", "box_distances", "centerness_logits"):
        for a, b in zip(getattr(cpu, field), getattr(gpu, field), strict=True):
            torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-3)
    gpu_model.train()
    cuda_targets = [{k: v.cuda() for k, v in t.items()} for t in targets]
    losses = gpu_model(images.cuda(), cuda_targets)
    assert all(torch.isfinite(v) and v.device.type == "cuda" for v in losses.values())
    sum(losses.values()).backward()
    gpu_model.eval()
    with torch.no_grad():
        results = gpu_model(
            images.cuda(), image_sizes=[(96, 128), (90, 120)], original_sizes=[(192, 256), (45, 60)]
        )
    assert all(r["boxes"].device.type == "cuda" for r in results)
