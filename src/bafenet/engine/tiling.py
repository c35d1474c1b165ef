"""Tiled inference: a large (or upsampled) frame cut into overlapping tiles, detections merged.

Each tile goes through the model on its own (padded to the stride like a whole frame). Every
point of the frame is *owned* by exactly one tile: neighbouring tiles split their overlap at
its middle line. A tile keeps only the detections whose centre lies in the part it owns, so
a target cut by a tile border, which that tile sees only partly, is taken from the
neighbour that sees it whole (provided the overlap is at least twice the target's size).
The kept detections of all tiles then go through one class-wise NMS, and the best
``detections_per_img`` are returned. A frame that fits in one tile gives exactly the
whole-frame result.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from bafenet.engine.distributed import unwrap_model


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with ``overlap``.

    The last tile ends at ``length`` (it may overlap its neighbour by more); a length that
    fits in one tile gives ``[0]``.
    """
    if tile <= overlap:
        raise ValueError(f"tile size {tile} must be larger than the overlap {overlap}")
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def owned_ranges(starts: list[int], tile: int, length: int) -> list[tuple[float, float]]:
    """``[lo, hi)`` of the frame owned by each tile: overlaps split at their middle."""
    ranges = []
    for i, start in enumerate(starts):
        lo = 0.0 if i == 0 else (starts[i - 1] + tile + start) / 2
        hi = float(length) if i == len(starts) - 1 else (start + tile + starts[i + 1]) / 2
        ranges.append((lo, hi))
    return ranges


@torch.no_grad()
def predict_tiled(
    model: nn.Module,
    image: Tensor,
    tile_size: int,
    overlap: int,
    device: torch.device,
    size_divisor: int = 32,
) -> dict[str, Tensor]:
    """Detections of one frame computed tile by tile.

    Args:
        model: a detector in eval mode, called as ``model(images, image_sizes=...)``, with
            ``nms_thresh`` and ``detections_per_img`` attributes (read from the model inside
            a DDP wrapper).
        image: (1, H, W) grey levels of the frame (already at the evaluation scale).
        tile_size, overlap: tile side and overlap, in pixels of ``image``.
        size_divisor: each tile is zero-padded (bottom / right) to a multiple of this.

    Returns:
        ``boxes`` (K, 4) x1 y1 x2 y2, ``scores`` (K,), ``labels`` (K,) in ``image``
        coordinates, and ``sky_prob`` (H, W) when the model has a sky branch.
    """
    _, height, width = image.shape
    ys = tile_starts(height, tile_size, overlap)
    xs = tile_starts(width, tile_size, overlap)
    y_owned = owned_ranges(ys, tile_size, height)
    x_owned = owned_ranges(xs, tile_size, width)
    boxes, scores, labels = [], [], []
    sky = None
    for y0, (y_lo, y_hi) in zip(ys, y_owned, strict=True):
        for x0, (x_lo, x_hi) in zip(xs, x_owned, strict=True):
            crop = image[:, y0 : y0 + tile_size, x0 : x0 + tile_size]
            th, tw = crop.shape[-2:]
            padded_h = math.ceil(th / size_divisor) * size_divisor
            padded_w = math.ceil(tw / size_divisor) * size_divisor
            batch = crop.new_zeros((1, 1, padded_h, padded_w))
            batch[0, :, :th, :tw] = crop
            out = model(batch.to(device), image_sizes=[(th, tw)])[0]
            tile_boxes = out["boxes"].float() + out["boxes"].new_tensor([x0, y0, x0, y0]).float()
            cx = (tile_boxes[:, 0] + tile_boxes[:, 2]) / 2
            cy = (tile_boxes[:, 1] + tile_boxes[:, 3]) / 2
            keep = (cx >= x_lo) & (cx < x_hi) & (cy >= y_lo) & (cy < y_hi)
            boxes.append(tile_boxes[keep])
            scores.append(out["scores"].float()[keep])
            labels.append(out["labels"][keep])
            if "sky_prob" in out:
                if sky is None:
                    sky = image.new_zeros((height, width), device=out["sky_prob"].device)
                # each pixel from the tile that owns it
                r0, r1 = math.ceil(y_lo - 0.5), math.ceil(y_hi - 0.5)
                c0, c1 = math.ceil(x_lo - 0.5), math.ceil(x_hi - 0.5)
                sky[r0:r1, c0:c1] = out["sky_prob"][r0 - y0 : r1 - y0, c0 - x0 : c1 - x0].float()
    all_boxes = torch.cat(boxes)
    all_scores = torch.cat(scores)
    all_labels = torch.cat(labels)
    detector = unwrap_model(model)
    keep = batched_nms(all_boxes, all_scores, all_labels, detector.nms_thresh)[: detector.detections_per_img]
    result = {"boxes": all_boxes[keep], "scores": all_scores[keep], "labels": all_labels[keep]}
    if sky is not None:
        result["sky_prob"] = sky
    return result
