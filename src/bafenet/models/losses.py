"""The four training losses of BAFE-Net (reference §1.8), all weight 1.

* ``loss_cls``: sigmoid focal loss (alpha 0.25, gamma 2) summed over every location and
  class of every level, divided by max(#positives, 1).
* ``loss_box``: ``-log(max(IoU, 1e-6))`` of the predicted vs target box on positives,
  weighted by the centerness target, divided by the sum of centerness targets (min 1e-6).
* ``loss_centerness``: BCE-with-logits on positives against
  ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``, divided by #positives.
* ``loss_sky``: per level, the sky map resized to the level with ``F.interpolate(nearest)``
  (the *top-left* pixel of each cell, as the official code), BCE-with-logits on the sky
  logit, pixels labelled 255 weighted 0, mean over **all** locations of all levels
  (ignored ones included; no normalisation by the number of labelled pixels).

With several processes, #positives and the centerness sum are averaged over processes
first, as the official (mmdet) head does. With no positive location, ``loss_box`` and
``loss_centerness`` are zeros that keep the graph.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

SKY_IGNORE = 255


def _mean_over_processes(value: Tensor) -> Tensor:
    """Average a scalar over the processes of an initialised process group (identity otherwise)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def centerness_targets(distances: Tensor) -> Tensor:
    """(N, 4) ``l t r b`` -> (N,) FCOS centerness ``sqrt(lr_ratio * tb_ratio)``."""
    left_right = distances[:, [0, 2]]
    top_bottom = distances[:, [1, 3]]
    ratio = (left_right.amin(dim=1) / left_right.amax(dim=1)) * (
        top_bottom.amin(dim=1) / top_bottom.amax(dim=1)
    )
    return ratio.clamp(min=0).sqrt()


def aligned_iou(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of boxes given as distances ``l t r b`` from the same location: (N, 4) x 2 -> (N,)."""
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    overlap_w = (torch.minimum(pred[:, 0], target[:, 0]) + torch.minimum(pred[:, 2], target[:, 2])).clamp(
        min=0
    )
    overlap_h = (torch.minimum(pred[:, 1], target[:, 1]) + torch.minimum(pred[:, 3], target[:, 3])).clamp(
        min=0
    )
    overlap = overlap_w * overlap_h
    union = (pred_area + target_area - overlap).clamp(min=eps)
    return overlap / union


def detection_losses(
    cls_logits: Tensor,
    box_distances: Tensor,
    centerness_logits: Tensor,
    labels: Tensor,
    box_targets: Tensor,
) -> dict[str, Tensor]:
    """FCOS losses over all locations of a batch.

    Args:
        cls_logits: (P, C) class logits.
        box_distances: (P, 4) predicted ``l t r b`` (positive, input pixels).
        centerness_logits: (P,) centerness logits.
        labels: (P,) int64, ``C`` for background.
        box_targets: (P, 4) target ``l t r b`` (used on positives only).

    Returns:
        ``{"loss_cls", "loss_box", "loss_centerness"}`` scalars.
    """
    num_classes = cls_logits.shape[1]
    cls_logits = cls_logits.float()
    positive = labels < num_classes  # (P,)
    num_pos = _mean_over_processes(positive.sum().to(cls_logits)).clamp(min=1.0)
    one_hot = F.one_hot(labels, num_classes + 1)[:, :num_classes].to(cls_logits)  # background -> zeros
    loss_cls = sigmoid_focal_loss(cls_logits, one_hot, alpha=0.25, gamma=2.0, reduction="sum") / num_pos

    pos_pred = box_distances[positive].float()  # (N+, 4)
    pos_centerness = centerness_logits[positive].float()  # (N+,)
    pos_targets = box_targets[positive].float()
    centerness = centerness_targets(pos_targets)  # (N+,)
    # every process joins this reduction, positives or not: a process that skipped it would
    # pair its next collective (the gradient all-reduce) with another process's reduction
    centerness_sum = _mean_over_processes(centerness.sum().detach()).clamp(min=1e-6)
    if pos_pred.shape[0] == 0:
        zero = pos_pred.sum() + pos_centerness.sum()
        return {"loss_cls": loss_cls, "loss_box": zero, "loss_centerness": zero.clone()}
    iou_loss = -aligned_iou(pos_pred, pos_targets).clamp(min=1e-6).log()
    loss_box = (iou_loss * centerness).sum() / centerness_sum
    loss_centerness = (
        F.binary_cross_entropy_with_logits(pos_centerness, centerness, reduction="sum") / num_pos
    )
    return {"loss_cls": loss_cls, "loss_box": loss_box, "loss_centerness": loss_centerness}


def sky_targets(sky_masks: Tensor, sizes: list[tuple[int, int]]) -> list[Tensor]:
    """(B, H, W) uint8 sky maps -> per level (B, h_l, w_l) maps by nearest (top-left) sampling."""
    masks = sky_masks[:, None].float()  # (B, 1, H, W)
    return [F.interpolate(masks, size=size, mode="nearest")[:, 0] for size in sizes]


def sky_loss(sky_logits: list[Tensor], sky_masks: Tensor) -> Tensor:
    """Mean BCE of the sky logits of every level against the resized sky map (255 ignored).

    Args:
        sky_logits: per level (B, 1, h_l, w_l).
        sky_masks: (B, H, W) uint8, 1 sky, 0 not sky, 255 ignore.
    """
    sizes = [tuple(logits.shape[-2:]) for logits in sky_logits]
    total = sky_logits[0].new_zeros((), dtype=torch.float32)
    count = 0
    for logits, target in zip(sky_logits, sky_targets(sky_masks, sizes), strict=True):
        weight = (target != SKY_IGNORE).float()
        total = total + F.binary_cross_entropy_with_logits(
            logits[:, 0].float(), (target == 1).float(), weight=weight, reduction="sum"
        )
        count += target.numel()
    return total / count
