"""Exponential moving average of the weights (``train.ema_decay``).

A short CPU run ends on weights that still move from step to step, and the metrics of its
final weights spread between seeds. The average over the last steps is smoother: the
trainer evaluates and saves it (the ``model`` entry of ``best.pt`` / ``last.pt``), keeping
the optimised weights for resuming only.

The average is :class:`torch.optim.swa_utils.AveragedModel` with the buffers averaged too
(BatchNorm statistics), and a decay that ramps up with the number ``n`` of updates:
``min(ema_decay, (1 + n) / (10 + n))``. The ramp makes the average cover about the last
tenth of the steps taken so far, whatever the length of the run, so the same setting fits a
budget of 2,000 steps and one of 20,000; ``ema_decay`` caps it for long runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ramped_decay(decay: float, updates: int) -> float:
    """The decay of the ``updates``-th update (0-based): ``min(decay, (1 + n) / (10 + n))``."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """``AveragedModel``'s ``multi_avg_fn``: floating tensors move towards the model's by
    ``1 - ramped_decay``; integer buffers (BatchNorm's batch counter) are copied."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():
            for average, value in zip(averaged, current, strict=True):
                average.copy_(value)
            return
        weight = 1.0 - ramped_decay(decay, int(num_averaged))
        for average, value in zip(averaged, current, strict=True):
            average.lerp_(value, weight)

    return update


def build_ema(model: nn.Module, decay: float) -> AveragedModel:
    """A moving average of ``model`` (a plain module, not DDP-wrapped); call
    ``update_parameters(model)`` after each optimiser step and evaluate ``.module``."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"train.ema_decay must lie between 0 and 1, got {decay}")
    return AveragedModel(model, multi_avg_fn=ema_update(decay), use_buffers=True)
