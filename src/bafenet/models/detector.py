"""The meta-architecture: backbone -> FPN -> head; losses in training, detections in eval.

Input contract::

    images:  Tensor[B, 1, H, W] float32, grey levels 0..255, zero-padded to a common size
    targets: list of B dicts (training only) with
             "boxes":    Tensor[N, 4] float32, x1 y1 x2 y2 half-open pixel edges (N may be 0)
             "sky_mask": Tensor[H, W] uint8, 1 sky / 0 not sky / 255 ignore (sky models only)
             "labels":   optional Tensor[N] int64 class indices (default: all 0, "target")
             with ``sky_context`` also "context_image" Tensor[1, h_c, w_c], "context_sky"
             Tensor[h_c, w_c] uint8 and "crop_box" Tensor[4] (see bafenet.models.context)

Grey input is handled once, here, as the official recipe: the grey plane is replicated to
three channels and the caffe per-channel means (102.9801, 115.9465, 122.7717) are subtracted,
with no scaling by a standard deviation.

Output in eval mode, one dict per image::

    "boxes":    Tensor[K, 4] x1 y1 x2 y2 (original-image coordinates if ``original_sizes`` given)
    "scores":   Tensor[K]    sigmoid(class) * sigmoid(centerness)
    "labels":   Tensor[K]    int64 class indices (0 = "target")
    "sky_prob": Tensor[h, w] sky probability at input resolution (sky models only)

``image_sizes`` (per image ``(h, w)`` of the un-padded image inside the batch) clips boxes
to the image and crops ``sky_prob`` to it; ``original_sizes`` (per image ``(h0, w0)`` of the
file before resizing) maps boxes back by the factors ``w0 / w`` and ``h0 / h`` (before NMS,
as the official post-processing). Both are optional; the default is the padded batch size.

Post-processing (reference §1.9): per level, locations with class probability > 0.05, the
top 1,000 of them; boxes decoded and clipped; score = class prob x centerness prob (no square
root); boxes with zero width or height dropped; NMS at IoU 0.5; at most 100 per image.
With ``sky_gate_thr`` set (a sky model, off by default), the detections returned are then
filtered: those whose sky probability at the box centre is below the threshold are dropped
(exactly what filtering the returned boxes with the returned ``sky_prob`` would do).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from bafenet.models.context import ContextBatch, context_from_targets, resample_context, whole_image_context
from bafenet.models.head import FCOSHead, HeadOutputs
from bafenet.models.losses import detection_losses, sky_loss
from bafenet.models.targets import LocationGrid, assign_targets

CAFFE_MEAN = (102.9801, 115.9465, 122.7717)  # per channel (B, G, R); std 1


def sky_probability(logits: Tensor, stride: int, size: tuple[int, int]) -> Tensor:
    """Finest-level sky logits (B, 1, h, w) -> sky probability (B, H, W) at input resolution.

    The training target of cell ``(i, j)`` is the pixel ``(s i, s j)`` (top-left nearest
    sampling), so the logits are interpolated bilinearly with cell ``(i, j)`` placed exactly
    on that pixel, and the last row/column are extended to the image border.
    """
    height, width = size
    grid_h, grid_w = logits.shape[-2:]
    up = F.interpolate(
        logits.float(),
        size=((grid_h - 1) * stride + 1, (grid_w - 1) * stride + 1),
        mode="bilinear",
        align_corners=True,
    )
    pad_h, pad_w = max(height - up.shape[-2], 0), max(width - up.shape[-1], 0)
    if pad_h or pad_w:
        up = F.pad(up, (0, pad_w, 0, pad_h), mode="replicate")
    return up[:, 0, :height, :width].sigmoid()


def sky_at(sky_prob: Tensor, points: Tensor) -> Tensor:
    """Sky probability (H, W) at (K, 2) ``x y`` points: the value of the pixel containing each
    point (clamped into the image) -> (K,)."""
    height, width = sky_prob.shape
    cols = points[:, 0].floor().long().clamp(0, width - 1)
    rows = points[:, 1].floor().long().clamp(0, height - 1)
    return sky_prob[rows, cols]


class FCOSDetector(nn.Module):
    """FCOS-style single-stage detector with an optional sky branch (all zoo variants).

    Args:
        backbone: module mapping (B, 3, H, W) to ``[C2, C3, C4, C5]``.
        neck: module mapping the selected backbone maps to pyramid levels.
        head: :class:`~bafenet.models.head.FCOSHead`.
        strides: stride of each pyramid level (``(8, 16, 32)``).
        regress_ranges: ``(lo, hi)`` of each level for target assignment.
        first_level: index in ``[C2, C3, C4, C5]`` of the finest map fed to the neck (1 = C3).
        center_sampling: FCOS centre sampling (off: the official setting).
        center_radius: its radius in strides (1.5).
        score_thresh, pre_nms_top_n, nms_thresh, detections_per_img: post-processing (§1.9).
        context_size: long side of the whole-frame sky context (a head built with
            ``sky_context``); ``None`` without one.
        context_net: the whole-frame sky's own network (``(B, 3, h, w)`` normalised context
            -> ``[(B, 1, h / s, w / s)]`` logits at the finest stride ``s``), for a head built
            with ``sky_context`` and without its context predictor; ``None``: the head's.
        sky_gate_thr: drop returned detections whose sky probability at the box centre is
            below it (sky models only; ``None``: no gate).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: FCOSHead,
        strides: Sequence[int],
        regress_ranges: Sequence[tuple[float, float]],
        first_level: int = 1,
        center_sampling: bool = False,
        center_radius: float = 1.5,
        score_thresh: float = 0.05,
        pre_nms_top_n: int = 1000,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        context_size: int | None = None,
        sky_gate_thr: float | None = None,
        context_net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if len(strides) != len(regress_ranges):
            raise ValueError("one regress range per level is needed")
        if head.with_context != (context_size is not None):
            raise ValueError("context_size is needed by, and only by, a head built with sky_context")
        if context_size is not None and context_size < 32:
            raise ValueError(f"context_size must be >= 32, got {context_size}")
        if sky_gate_thr is not None and not head.with_sky:
            raise ValueError("the sky gate needs a sky branch")
        if context_net is not None and not head.with_context:
            raise ValueError("a context net needs a head built with sky_context")
        if head.with_context and (context_net is None) != (head.context_pred is not None):
            raise ValueError("the context sky comes from the head's predictor or a context net, one of them")
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.context_net = context_net
        self.strides = list(strides)
        self.regress_ranges = [tuple(map(float, r)) for r in regress_ranges]
        self.first_level = first_level
        self.center_sampling = center_sampling
        self.center_radius = center_radius
        self.score_thresh = score_thresh
        self.pre_nms_top_n = pre_nms_top_n
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.context_size = context_size
        self.sky_gate_thr = sky_gate_thr
        self.register_buffer("pixel_mean", torch.tensor(CAFFE_MEAN).view(1, 3, 1, 1), persistent=False)

    # ---------------------------------------------------------------- network
    def normalize(self, images: Tensor) -> Tensor:
        """(B, 1, H, W) grey 0..255 -> (B, 3, H, W) caffe-mean-subtracted input."""
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"images must be (B, 1, H, W) grey levels, got shape {tuple(images.shape)}")
        x = images.float().expand(-1, 3, -1, -1) - self.pixel_mean
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def channels_last(self) -> bool:
        """Whether the network runs in channels-last layout (follows the layout of the weights).

        The zoo builds models in channels-last layout: same results, measured faster on CPU
        (oneDNN); ``model.to(memory_format=torch.contiguous_format)`` switches back.
        """
        weight = next((p for p in self.backbone.parameters() if p.dim() == 4), None)
        return (
            weight is not None
            and weight.is_contiguous(memory_format=torch.channels_last)
            and not weight.is_contiguous()
        )

    def pyramid(self, images: Tensor) -> list[Tensor]:
        """(B, 1, H, W) grey batch -> pyramid levels (B, C, H_l, W_l), finest first."""
        features = self.backbone(self.normalize(images))
        return self.neck(features[self.first_level :])

    def head_outputs(
        self,
        images: Tensor,
        context: ContextBatch | None = None,
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> HeadOutputs:
        """Raw per-level head outputs for a (B, 1, H, W) batch.

        A ``sky_context`` model runs its backbone, FPN and sky tower on ``context`` too
        (default: each un-padded input image, ``image_sizes``, scaled to ``context_size``)
        and feeds the finest context level's sky logits, resampled onto every level, to the
        sky branch.
        """
        pyramid = self.pyramid(images)
        if not self.head.with_context:
            if context is not None:
                raise ValueError("this model has no sky context (sky_context=False)")
            return self.head(pyramid)
        if context is None:
            context = whole_image_context(images, self.context_size, image_sizes)
        context_logits = self.context_sky(context.images)
        priors = [
            resample_context(context_logits[0], context, tuple(x.shape[-2:]), stride, self.strides[0])
            for x, stride in zip(pyramid, self.strides, strict=True)
        ]
        return self.head(pyramid, priors)._replace(context_sky_logits=context_logits)

    def context_sky(self, context_images: Tensor) -> list[Tensor]:
        """(B, 1, h_c, w_c) grey context images -> sky logits per context level (B, 1, h_l, w_l),
        finest first (of stride ``strides[0]``): from the context net, else the model's own
        backbone, FPN and sky tower."""
        if self.context_net is not None:
            return self.context_net(self.normalize(context_images))
        return self.head.context_sky(self.pyramid(context_images))

    def forward(
        self,
        images: Tensor,
        targets: list[dict[str, Tensor]] | None = None,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        original_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training: dict of named losses (needs ``targets``). Eval: one detection dict per image."""
        if self.training and targets is None:
            raise ValueError("targets are required in training mode")
        if self.training:
            context = context_from_targets(targets, images) if self.head.with_context else None
            outputs = self.head_outputs(images, context)
            return self.losses(outputs, targets, context)
        outputs = self.head_outputs(images, image_sizes=image_sizes)
        # under autocast the head may return bf16 / fp16: decode and rank in float32
        outputs = HeadOutputs(*[None if part is None else [x.float() for x in part] for part in outputs])
        with torch.autocast(images.device.type, enabled=False):
            return self.postprocess(outputs, tuple(images.shape[-2:]), image_sizes, original_sizes)

    # ---------------------------------------------------------------- training
    def location_grid(self, outputs: HeadOutputs) -> LocationGrid:
        sizes = [tuple(x.shape[-2:]) for x in outputs.cls_logits]
        return LocationGrid(sizes, self.strides, self.regress_ranges, outputs.cls_logits[0].device)

    def losses(
        self, outputs: HeadOutputs, targets: list[dict[str, Tensor]], context: ContextBatch | None = None
    ) -> dict[str, Tensor]:
        """Assign targets and compute ``loss_cls``, ``loss_box``, ``loss_centerness`` (+ ``loss_sky``;
        + ``loss_sky_context`` on the whole-frame ``context`` of a sky-context model, the same
        sky loss on the context's sky map)."""
        batch = outputs.cls_logits[0].shape[0]
        if len(targets) != batch:
            raise ValueError(f"{len(targets)} targets for a batch of {batch} images")
        num_classes = self.head.num_classes
        grid = self.location_grid(outputs)
        assigned = [
            assign_targets(
                grid,
                t["boxes"],
                t.get("labels", torch.zeros(len(t["boxes"]), dtype=torch.int64)),
                num_classes,
                self.center_sampling,
                self.center_radius,
            )
            for t in targets
        ]
        labels = torch.cat([a[0] for a in assigned])  # (B * P,)
        box_targets = torch.cat([a[1] for a in assigned])  # (B * P, 4)
        losses = detection_losses(
            _flatten(outputs.cls_logits),
            _flatten(outputs.box_distances),
            _flatten(outputs.centerness_logits)[:, 0],
            labels,
            box_targets,
        )
        if outputs.sky_logits is not None:
            if any("sky_mask" not in t for t in targets):
                raise ValueError("a sky model needs a 'sky_mask' in every target")
            sky_masks = torch.stack([t["sky_mask"] for t in targets]).to(outputs.sky_logits[0].device)
            losses["loss_sky"] = sky_loss(outputs.sky_logits, sky_masks)
        if outputs.context_sky_logits is not None:
            if context is None or context.sky is None:
                raise ValueError("the context sky loss needs the context's sky map")
            losses["loss_sky_context"] = sky_loss(outputs.context_sky_logits, context.sky)
        return losses

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def postprocess(
        self,
        outputs: HeadOutputs,
        input_size: tuple[int, int],
        image_sizes: Sequence[tuple[int, int]] | None = None,
        original_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]:
        """Per-image detections (and sky map) from raw head outputs, see the module docstring."""
        batch = outputs.cls_logits[0].shape[0]
        image_sizes = list(image_sizes) if image_sizes is not None else [input_size] * batch
        if len(image_sizes) != batch or (original_sizes is not None and len(original_sizes) != batch):
            raise ValueError("image_sizes / original_sizes need one (h, w) per image")
        grid = self.location_grid(outputs)
        points = grid.points.split(grid.counts)  # per level (P_l, 2)
        sky = None
        if outputs.sky_logits is not None:
            sky = sky_probability(outputs.sky_logits[0], self.strides[0], input_size)  # (B, H, W)
        results = []
        if self.sky_gate_thr is not None and sky is None:
            raise ValueError("the sky gate needs a sky branch")
        for i in range(batch):
            height, width = image_sizes[i]
            boxes, scores, labels = self._detect_one(outputs, points, i, height, width)
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # input pixels
            if original_sizes is not None:
                orig_h, orig_w = original_sizes[i]
                boxes = boxes * boxes.new_tensor([orig_w / width, orig_h / height] * 2)
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, scores, labels, centres = boxes[keep], scores[keep], labels[keep], centres[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            boxes, scores, labels, centres = boxes[keep], scores[keep], labels[keep], centres[keep]
            if self.sky_gate_thr is not None:
                keep = sky_at(sky[i, :height, :width], centres) >= self.sky_gate_thr
                boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            result = {"boxes": boxes, "scores": scores, "labels": labels}
            if sky is not None:
                result["sky_prob"] = sky[i, :height, :width]
            results.append(result)
        return results

    def _detect_one(
        self, outputs: HeadOutputs, points: Sequence[Tensor], index: int, height: int, width: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Candidates of image ``index`` over all levels: boxes (K, 4), scores (K,), labels (K,)."""
        all_boxes, all_scores, all_labels = [], [], []
        for cls, dist, ctr, level_points in zip(
            outputs.cls_logits, outputs.box_distances, outputs.centerness_logits, points, strict=True
        ):
            prob = cls[index].flatten(1).t().sigmoid()  # (P_l, C)
            candidates = (prob > self.score_thresh).nonzero()  # (M, 2): location, class
            cand_prob = prob[candidates[:, 0], candidates[:, 1]]
            if cand_prob.numel() > self.pre_nms_top_n:
                cand_prob, top = cand_prob.topk(self.pre_nms_top_n)
                candidates = candidates[top]
            loc, label = candidates[:, 0], candidates[:, 1]
            ltrb = dist[index].flatten(1).t()[loc].float()  # (K, 4)
            xy = level_points[loc]
            boxes = torch.cat([xy - ltrb[:, :2], xy + ltrb[:, 2:]], dim=1)
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
            all_boxes.append(boxes)
            all_scores.append(cand_prob * ctr[index, 0].flatten()[loc].float().sigmoid())
            all_labels.append(label)
        return torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)


def _flatten(per_level: list[Tensor]) -> Tensor:
    """Per level (B, K, H_l, W_l) -> (B * P, K), image-major, levels in order within each image."""
    batch, channels = per_level[0].shape[:2]
    flat = torch.cat([x.permute(0, 2, 3, 1).reshape(batch, -1, channels) for x in per_level], dim=1)
    return flat.reshape(-1, channels)
