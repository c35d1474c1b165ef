"""Batching: samples of different sizes -> one padded image tensor + per-image targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from bafenet.data.sample import UNKNOWN, Sample
from bafenet.data.transforms import get_geometry


def collate_samples(
    samples: Sequence[Sample], size_divisor: int = 32
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Pad samples (bottom/right) to a common size that is a multiple of ``size_divisor``.

    Returns:
        ``images``: Tensor[B, 1, H, W] float32 grey levels 0..255, padding 0.
        ``targets``: one dict per image with
        ``boxes`` Tensor[N, 4] float32 (x1 y1 x2 y2 half-open, input pixels),
        ``labels`` Tensor[N] int64 (all 0, "target"), ``points`` Tensor[N, 2] float32,
        ``sky_mask`` Tensor[H, W] uint8 (1 sky, 0 not, 255 unknown and padding),
        ``target_mask`` Tensor[H, W] uint8 (padding 0), ``image_id``,
        ``image_size`` (h, w) before padding, ``original_size`` (H0, W0) of the file,
        ``scale`` (sy, sx) applied by resizes, ``offset`` (oy, ox) and ``flipped`` (together:
        ``x_input = ±sx * x_original + ox``, see :class:`bafenet.data.transforms.Geometry`).
        Samples with a whole-frame context (:class:`bafenet.data.transforms.FrameContext`)
        add ``context_image`` Tensor[1, h_c, w_c] float32, ``context_sky`` Tensor[h_c, w_c]
        uint8 and ``crop_box`` Tensor[4] float32 (not padded: sizes may differ in a batch).
    """
    if not samples:
        raise ValueError("collate_samples needs at least one sample")
    divisor = max(1, int(size_divisor))
    height = math.ceil(max(s.height for s in samples) / divisor) * divisor
    width = math.ceil(max(s.width for s in samples) / divisor) * divisor
    images = torch.zeros((len(samples), 1, height, width), dtype=torch.float32)
    targets: list[dict[str, Any]] = []
    for i, sample in enumerate(samples):
        h, w = sample.height, sample.width
        images[i, 0, :h, :w] = torch.from_numpy(sample.image)
        sky = torch.full((height, width), UNKNOWN, dtype=torch.uint8)
        sky[:h, :w] = torch.from_numpy(sample.sky_mask)
        target_mask = torch.zeros((height, width), dtype=torch.uint8)
        target_mask[:h, :w] = torch.from_numpy(sample.target_mask)
        geometry = get_geometry(sample)
        targets.append(
            {
                "boxes": torch.from_numpy(sample.boxes.copy()).float().reshape(-1, 4),
                "labels": torch.zeros(sample.num_targets, dtype=torch.int64),
                "points": torch.from_numpy(sample.points.copy()).float().reshape(-1, 2),
                "sky_mask": sky,
                "target_mask": target_mask,
                "image_id": sample.image_id,
                "image_size": (h, w),
                "original_size": geometry.original_size,
                "scale": geometry.scale_factors,
                "offset": geometry.offset,
                "flipped": geometry.flipped,
            }
        )
        if sample.context is not None:
            targets[-1]["context_image"] = torch.from_numpy(sample.context.image.copy())[None]
            targets[-1]["context_sky"] = torch.from_numpy(sample.context.sky_mask.copy())
            targets[-1]["crop_box"] = torch.tensor(sample.context.box, dtype=torch.float32)
    return images, targets
