"""ONNX export of the network (post-processing stays in Python).

The exported graph maps a fixed-size grey batch to dense per-location outputs; thresholding,
top-k and NMS (reference §1.9) are left to the caller, e.g. :meth:`FCOSDetector.postprocess`
logic or any runtime's NMS. Outputs of :class:`DenseOutputs`:

* ``cls_prob``  (B, P, C) sigmoid class probabilities, P = all locations, finest level first;
* ``centerness`` (B, P) sigmoid centerness;
* ``boxes``     (B, P, 4) decoded x1 y1 x2 y2 in input pixels (not clipped);
* ``sky_prob``  (B, H, W) sky probability at input resolution (sky models only).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from bafenet.errors import BafenetError
from bafenet.fileio import atomic_path
from bafenet.models.detector import FCOSDetector, sky_probability


class DenseOutputs(nn.Module):
    """Wrap a detector so that ``forward(images)`` returns dense tensors (exportable)."""

    def __init__(self, model: FCOSDetector) -> None:
        super().__init__()
        self.model = model

    @property
    def output_names(self) -> list[str]:
        names = ["cls_prob", "centerness", "boxes"]
        return names + (["sky_prob"] if self.model.head.with_sky else [])

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """(B, 1, H, W) grey 0..255 -> the tensors named by :attr:`output_names`."""
        outputs = self.model.head_outputs(images)
        batch = images.shape[0]
        grid = self.model.location_grid(outputs)
        cls_prob = torch.cat([x.flatten(2) for x in outputs.cls_logits], dim=2).transpose(1, 2).sigmoid()
        centerness = torch.cat([x.flatten(1) for x in outputs.centerness_logits], dim=1).sigmoid()
        ltrb = torch.cat([x.flatten(2) for x in outputs.box_distances], dim=2).transpose(1, 2)  # (B, P, 4)
        points = grid.points[None].expand(batch, -1, -1)  # (B, P, 2)
        boxes = torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], dim=2)
        result = (cls_prob, centerness, boxes)
        if outputs.sky_logits is not None:
            sky = sky_probability(outputs.sky_logits[0], self.model.strides[0], tuple(images.shape[-2:]))
            result = result + (sky,)
        return result


def export_onnx(
    model: FCOSDetector, path: str | Path, height: int = 512, width: int = 512, opset: int = 17
) -> Path:
    """Export ``model`` (eval mode, batch 1, fixed ``height`` x ``width``) to an ONNX file, atomically."""
    if model.context_size is not None:  # its antialiased context resize has no ONNX operator
        raise BafenetError("ONNX export of a sky_context model is not supported")
    wrapper = DenseOutputs(model).eval()
    example = torch.zeros(1, 1, height, width, device=next(model.parameters()).device)
    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad():
        torch.onnx.export(
            wrapper,
            (example,),
            str(tmp),
            input_names=["images"],
            output_names=wrapper.output_names,
            opset_version=opset,
            dynamo=False,
        )
    return path
