"""FCOS head with an optional sky-segmentation branch and cross-task module, shared over levels.

Per level (reference §1.4-1.6): classification, regression and (optionally) sky towers of
4 x [3x3 conv without bias + GroupNorm(32) + ReLU]; then, for BAFE-Net, the cross-task module
on the (sky, cls) pair; predictors are 3x3 convs with bias: class logits and centerness from
the classification feature, box distances ``exp(scale_l * conv)`` from the regression
feature (in input pixels), one sky logit from the sky feature. The regression branch never
sees the cross-task module.

Two switches beyond the official head (both off by default, then nothing is built):
``sky_context`` builds the context sky predictor (:mod:`bafenet.models.context`) and makes
the whole-frame context sky logit, resampled onto each level, the level's sky logit (no
high-resolution sky predictor: crops alone teach a local sky head biases that do not hold
on whole frames); with a cross-task module the high-resolution sky tower still runs, its
output plus the context logit through a learned 1x1 conv (1 -> C channels, no bias) being
the sky features of the exchange; ``sky_scoring`` adds the sky logit to the class logit,
``cls + w_l * sky + b_l`` per level (:class:`SkyScoring`).

Init as the official head: every ``nn.Conv2d`` of the head (towers, predictors, LSK,
refinement and selector convs) N(0, 0.01) with zero bias; the class bias is
``-log((1 - 0.01) / 0.01)``; norms weight 1, bias 0; the exchange MLP keeps PyTorch's
default ``nn.Linear`` init; per-level scales start at 1.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation


class HeadOutputs(NamedTuple):
    """Raw per-level head outputs, finest level first."""

    cls_logits: list[Tensor]  # (B, num_classes, H_l, W_l)
    box_distances: list[Tensor]  # (B, 4, H_l, W_l): left, top, right, bottom in input pixels
    centerness_logits: list[Tensor]  # (B, 1, H_l, W_l)
    sky_logits: list[Tensor] | None  # (B, 1, H_l, W_l), None without a sky branch
    context_sky_logits: list[Tensor] | None = None  # (B, 1, h_l, w_l) on the context (sky_context)


class Scale(nn.Module):
    """A learnable scalar multiplier (one per pyramid level)."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def conv_tower(channels: int, depth: int = 4, groups: int = 32) -> nn.Sequential:
    """``depth`` x [3x3 conv (no bias) + GroupNorm(groups) + ReLU], channels preserved."""
    norm = partial(nn.GroupNorm, groups)
    return nn.Sequential(
        *[Conv2dNormActivation(channels, channels, 3, norm_layer=norm) for _ in range(depth)]
    )


def _predictor(channels: int, outputs: int) -> nn.Conv2d:
    return nn.Conv2d(channels, outputs, 3, padding=1)


class SkyScoring(nn.Module):
    """Sky-conditioned class logits: ``cls + weight[l] * sky + bias[l]`` at every location of level l.

    ``weight`` and ``bias`` are learned with the detection loss and start at 0, so training
    starts from the plain detector. The sky logit is detached: the sky branch stays trained
    by the sky loss alone, and the scoring learns how much to trust it.
    """

    def __init__(self, num_levels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_levels))
        self.bias = nn.Parameter(torch.zeros(num_levels))

    def forward(self, cls_logits: Tensor, sky_logits: Tensor, level: int) -> Tensor:
        """(B, C, H, W) class logits and (B, 1, H, W) sky logits of one level -> (B, C, H, W)."""
        return cls_logits + self.weight[level] * sky_logits.detach() + self.bias[level]


class FCOSHead(nn.Module):
    """The shared head.

    Args:
        num_levels: number of pyramid levels (one learnable scale each).
        channels: feature channels (256).
        num_classes: detection classes (1: "target").
        with_sky: build the sky-segmentation tower and predictor.
        cross_task: module mapping ``(sky, cls)`` tower outputs to new ``(sky, cls)``
            features (BAFE-Net's :class:`~bafenet.models.exchange.CrossTaskExchange`);
            requires ``with_sky``.
        prior_prob: initial foreground probability of the class logits (0.01).
        tower_depth: conv blocks per tower (4, the official head).
        sky_context: build the context sky predictor; the resampled whole-frame context sky
            logit is the sky logit of every level and, with ``cross_task``, is added to the
            exchange's sky features (requires ``with_sky``).
        sky_scoring: sky-conditioned class logits, :class:`SkyScoring` (requires ``with_sky``).
        context_predictor: with ``sky_context``, build the context sky predictor on the shared
            sky tower (:meth:`context_sky`); False when the detector has a context network of
            its own (:class:`~bafenet.models.context_net.SkyContextNet`).
    """

    def __init__(
        self,
        num_levels: int,
        channels: int = 256,
        num_classes: int = 1,
        with_sky: bool = False,
        cross_task: nn.Module | None = None,
        prior_prob: float = 0.01,
        tower_depth: int = 4,
        sky_context: bool = False,
        sky_scoring: bool = False,
        context_predictor: bool = True,
    ) -> None:
        super().__init__()
        if cross_task is not None and not with_sky:
            raise ValueError("a cross-task module needs the sky branch (with_sky=True)")
        if (sky_context or sky_scoring) and not with_sky:
            raise ValueError("sky_context and sky_scoring need the sky branch (with_sky=True)")
        self.num_classes = num_classes
        # GroupNorm(32) as the official head; narrow heads: the largest group count <= 32 that divides
        groups = max(g for g in range(1, 33) if channels % g == 0)
        self.cls_tower = conv_tower(channels, tower_depth, groups)
        self.reg_tower = conv_tower(channels, tower_depth, groups)
        self.with_sky = with_sky
        # the high-resolution sky tower: for the sky predictor, the context predictor or the
        # exchange; not for a context-net model without exchange (its sky map is the context's)
        needs_tower = not sky_context or context_predictor or cross_task is not None
        self.sky_tower = conv_tower(channels, tower_depth, groups) if with_sky and needs_tower else None
        self.cross_task = cross_task
        self.cls_pred = _predictor(channels, num_classes)
        self.box_pred = _predictor(channels, 4)
        self.centerness_pred = _predictor(channels, 1)
        # with sky_context the sky map is the context's: no high-resolution sky predictor
        self.sky_pred = _predictor(channels, 1) if with_sky and not sky_context else None
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))
        # built only when switched on: off, the head has exactly the plain head's parameters
        self.sky_fuse = None
        self.context_pred = None
        self.with_context = sky_context
        if sky_context:
            if context_predictor:
                self.context_pred = _predictor(channels, 1)
            if cross_task is not None:  # context sky logit -> the sky features of the exchange
                self.sky_fuse = nn.Conv2d(1, channels, 1, bias=False)
        self.sky_scoring = SkyScoring(num_levels) if sky_scoring else None
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.constant_(self.cls_pred.bias, -math.log((1 - prior_prob) / prior_prob))

    def context_sky(self, features: list[Tensor]) -> list[Tensor]:
        """Context pyramid levels -> per level context sky logits (B, 1, h_l, w_l) (the shared
        sky tower, its own predictor)."""
        if self.context_pred is None:
            raise ValueError("this head has no context sky predictor (sky_context=False, or a context net)")
        return [self.context_pred(self.sky_tower(x)) for x in features]

    def forward(self, features: list[Tensor], sky_context: list[Tensor] | None = None) -> HeadOutputs:
        """Pyramid levels (B, C, H_l, W_l), finest first -> :class:`HeadOutputs`.

        ``sky_context``: per level (B, 1, H_l, W_l) context sky logits on the level's grid
        (needed by, and only by, a head built with ``sky_context``).
        """
        if len(features) != len(self.scales):
            raise ValueError(f"head built for {len(self.scales)} levels, got {len(features)}")
        if (sky_context is not None) != self.with_context:
            raise ValueError("context sky features are needed by, and only by, a sky_context head")
        cls_logits, box_distances, centerness, sky_logits = [], [], [], []
        for level, (x, scale) in enumerate(zip(features, self.scales, strict=True)):
            cls = self.cls_tower(x)
            reg = self.reg_tower(x)
            sky_logit = None
            if sky_context is not None:
                sky_logit = sky_context[level]
                if self.cross_task is not None:  # sky features + sky_fuse(context): one pass
                    sky = self.sky_tower(x)
                    weight = self.sky_fuse.weight.to(sky.dtype).view(1, -1, 1, 1)
                    sky = torch.addcmul(sky, sky_logit.to(sky.dtype), weight)
                    sky, cls = self.cross_task(sky, cls)
                sky_logits.append(sky_logit)
            elif self.sky_tower is not None:
                sky = self.sky_tower(x)
                if self.cross_task is not None:
                    sky, cls = self.cross_task(sky, cls)
                sky_logit = self.sky_pred(sky)
                sky_logits.append(sky_logit)
            cls_logit = self.cls_pred(cls)
            if self.sky_scoring is not None:
                cls_logit = self.sky_scoring(cls_logit, sky_logit, level)
            cls_logits.append(cls_logit)
            centerness.append(self.centerness_pred(cls))
            box_distances.append(scale(self.box_pred(reg)).float().exp())
        return HeadOutputs(cls_logits, box_distances, centerness, sky_logits if self.with_sky else None)
