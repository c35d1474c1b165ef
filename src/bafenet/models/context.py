"""Whole-frame sky context for models trained on crops (the ``sky_context`` switch).

A high-resolution model trained on small crops rarely sees where the sky ends. With
``sky_context`` it also gets a low-resolution view of the *whole* frame (long side
``context_size``, 256 by default) and the place of its input inside that view:

* the model's own backbone, FPN and sky tower (shared weights) run on the context image;
  a context sky predictor gives whole-frame sky logits (``loss_sky_context``);
* the sky logits of the finest context level are resampled onto every pyramid level of
  the input with :func:`torchvision.ops.roi_align` (:func:`resample_context`) and added to
  the sky branch's features through a learned 1x1 conv (``FCOSHead``).

In training the context comes with the targets (``context_image``, ``context_sky``,
``crop_box``: see :func:`context_from_targets`); at inference the model makes it from its
whole input (:func:`whole_image_context`).

Coordinate convention. Boxes are in pixel-edge coordinates (pixel ``p`` covers
``[p, p + 1)``, its centre is ``p + 0.5``). ``crop_box`` = ``x1 y1 x2 y2`` is where the
input's un-padded extent ``[0, w) x [0, h)`` lies in the context image, so input
coordinate ``x`` is context coordinate ``x1 + x (x2 - x1) / w``. A sky cell ``(i, j)`` of
stride ``s`` sits on pixel ``(s i, s j)``, the pixel its sky target is read from (top-left
nearest sampling, as the sky loss), on the input grid and on the context grid alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from bafenet.models.losses import SKY_IGNORE

DEFAULT_CONTEXT_SIZE = 256
CONTEXT_KEYS = ("context_image", "context_sky", "crop_box")


class ContextBatch(NamedTuple):
    """The context of a batch of B input images."""

    images: Tensor  # (B, 1, h_c, w_c) grey 0..255, zero-padded at the bottom/right
    sky: Tensor | None  # (B, h_c, w_c) uint8 1 / 0 / 255, padding 255 (training only)
    boxes: Tensor  # (B, 4) float32 crop boxes in context pixels (see the module docstring)
    image_sizes: Tensor  # (B, 2) float32 (h, w): the input extent each box describes


def pad_stack(planes: Sequence[Tensor], fill: float) -> Tensor:
    """Stack (..., h_i, w_i) tensors, padded at the bottom/right with ``fill`` to the largest size."""
    height = max(p.shape[-2] for p in planes)
    width = max(p.shape[-1] for p in planes)
    return torch.stack(
        [F.pad(p, (0, width - p.shape[-1], 0, height - p.shape[-2]), value=fill) for p in planes]
    )


def _input_sizes(images: Tensor, image_sizes: Sequence[tuple[int, int]] | None) -> list[tuple[int, int]]:
    if image_sizes is None:
        return [tuple(images.shape[-2:])] * images.shape[0]
    if len(image_sizes) != images.shape[0]:
        raise ValueError("image_sizes need one (h, w) per image")
    return [(int(h), int(w)) for h, w in image_sizes]


def context_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(h_c, w_c) of an ``height x width`` image scaled to the long side ``size`` (sides rounded)."""
    factor = size / max(height, width)
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def whole_image_context(
    images: Tensor, size: int, image_sizes: Sequence[tuple[int, int]] | None = None
) -> ContextBatch:
    """The context at inference: each input image (its un-padded part) scaled to long side ``size``.

    Antialiased bilinear resizing, the same as the training pipeline's context; the crop box
    of each image is the whole context image.
    """
    sizes = _input_sizes(images, image_sizes)
    views, boxes = [], []
    for image, (height, width) in zip(images, sizes, strict=True):
        shape = context_shape(height, width, size)
        view = F.interpolate(
            image[None, :, :height, :width].float(), size=shape, mode="bilinear", antialias=True
        )
        views.append(view[0])
        boxes.append([0.0, 0.0, float(shape[1]), float(shape[0])])
    return ContextBatch(
        pad_stack(views, 0.0),
        None,
        torch.tensor(boxes, device=images.device),
        torch.tensor(sizes, dtype=torch.float32, device=images.device),
    )


def context_from_targets(targets: Sequence[dict], images: Tensor) -> ContextBatch:
    """The context in training, from each target's ``context_image`` (1, h_c, w_c),
    ``context_sky`` (h_c, w_c) and ``crop_box`` (4,); ``image_size`` (h, w) of the un-padded
    input if present (the collate function adds it), else the padded batch size."""
    if any(key not in t for t in targets for key in CONTEXT_KEYS):
        raise ValueError(
            "a sky-context model needs 'context_image', 'context_sky' and 'crop_box' in every "
            "target (set data.sky_context_size)"
        )
    device = images.device
    sizes = [tuple(t.get("image_size", images.shape[-2:])) for t in targets]
    return ContextBatch(
        pad_stack([t["context_image"].to(device).float() for t in targets], 0.0),
        pad_stack([t["context_sky"].to(device) for t in targets], SKY_IGNORE),
        torch.stack([torch.as_tensor(t["crop_box"], dtype=torch.float32) for t in targets]).to(device),
        torch.tensor(sizes, dtype=torch.float32, device=device),
    )


def context_rois(
    boxes: Tensor, image_sizes: Tensor, grid_size: tuple[int, int], stride: int, context_stride: int
) -> Tensor:
    """``roi_align`` boxes (B, 5) that sample a context map of stride ``context_stride`` at the
    cells of an input grid ``grid_size`` (h_l, w_l) of stride ``stride``.

    Per axis, with ``k`` context pixels per input pixel and the crop box starting at ``x1``:
    cell ``j`` sits on input pixel ``s j`` (centre ``s j + 0.5``), i.e. at context coordinate
    ``x1 + k (s j + 0.5)``, which is context cell coordinate ``(x1 + k (s j + 0.5) - 0.5) / s_c``.
    ``roi_align(aligned=True, spatial_scale=1 / s_c)`` reads bin ``j`` of a box starting at
    ``b`` with bins of ``s k`` context pixels at cell coordinate ``(b + (j + 0.5) s k) / s_c
    - 0.5``; equating both gives ``b = x1 - (s - 1) k / 2 + (s_c - 1) / 2``.
    """
    grid_h, grid_w = grid_size
    scale = (boxes[:, 2:] - boxes[:, :2]) / image_sizes.flip(1)  # (B, 2): kx, ky
    start = boxes[:, :2] - (stride - 1) * scale / 2 + (context_stride - 1) / 2
    end = start + stride * scale * scale.new_tensor([grid_w, grid_h])
    index = torch.arange(len(boxes), dtype=boxes.dtype, device=boxes.device)[:, None]
    return torch.cat([index, start, end], dim=1)


def resample_context(
    features: Tensor,
    context: ContextBatch,
    grid_size: tuple[int, int],
    stride: int,
    context_stride: int,
) -> Tensor:
    """Context maps (B, C, h', w') of stride ``context_stride`` -> (B, C, h_l, w_l) on the
    input's grid of stride ``stride``: bilinear where the input grid is finer, averaged over
    each cell where it is coarser (``roi_align``'s adaptive sampling); 0 far outside the context."""
    rois = context_rois(context.boxes, context.image_sizes, grid_size, stride, context_stride)
    # in float32: bf16 box coordinates would be off by up to a pixel
    out = roi_align(features.float(), rois, grid_size, spatial_scale=1.0 / context_stride, aligned=True)
    return out.to(features.dtype)
