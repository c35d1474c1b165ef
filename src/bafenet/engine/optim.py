"""Optimiser and learning-rate schedule of the training recipe (reference §2.2).

* Parameters are split into two groups: weights with ``weight_decay``, and norm-layer
  parameters plus every bias with no decay (the official ``norm_decay_mult=0``,
  ``bias_decay_mult=0``). Parameters with ``requires_grad=False`` are left out; a shared
  parameter appears once.
* ``dadapt_adam``: D-Adaptation Adam from the ``dadaptation`` package (lr is a multiplier
  of the adapted step size, 1.0 in the recipe), decoupled (AdamW-style) weight decay by
  default; ``adamw``: :class:`torch.optim.AdamW`; ``sgd``: SGD with momentum and L2 decay.
* The schedule is one per-iteration :class:`~torch.optim.lr_scheduler.LambdaLR`:
  ``warmup_factor`` for the first ``warmup_iters`` iterations (the official ConstantLR),
  times ``gamma ** (number of milestones <= epoch)`` where ``epoch = iteration //
  iters_per_epoch`` (the official MultiStepLR by epoch). Call ``scheduler.step()`` after
  every optimiser step. Its state dict (step count and base lrs) round-trips exactly;
  the schedule itself is rebuilt from the config.
* A budget, of wall-clock time (``max_time_minutes``) or of training images
  (``max_images``, the same on every machine), adds decays on top: :class:`TrainingBudget`
  multiplies the lr by ``gamma`` once per passed ``time_milestones`` fraction of the
  budget, for runs whose epoch count is not known in advance.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable

import dadaptation
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from bafenet.config import TrainConfig
from bafenet.engine import distributed as dist_utils

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: ``decay`` (conv/linear weights) and ``no_decay`` (norm params, biases).

    Trainable parameters only; each shared parameter once. Empty groups are dropped.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        is_norm = isinstance(module, NORM_LAYERS)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if is_norm or name == "bias" else decay).append(param)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.optimizer`` over :func:`param_groups` of ``model``."""
    groups = param_groups(model, cfg.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if cfg.optimizer == "dadapt_adam":
        return dadaptation.DAdaptAdam(
            groups, lr=cfg.lr, weight_decay=cfg.weight_decay, decouple=cfg.decoupled
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def lr_factor(iteration: int, cfg: TrainConfig, iters_per_epoch: int) -> float:
    """The multiplier of the base lr at 0-based ``iteration`` (warm-up x step decay)."""
    warmup = cfg.warmup_factor if iteration < cfg.warmup_iters else 1.0
    epoch = iteration // iters_per_epoch
    return warmup * cfg.gamma ** bisect.bisect_right(cfg.milestones, epoch)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, iters_per_epoch: int) -> LambdaLR:
    """Per-iteration schedule: constant warm-up, then multi-step decay by epoch."""
    if iters_per_epoch < 1:
        raise ValueError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}")

    def factor(iteration: int) -> float:  # a plain function: LambdaLR saves no state for it
        return lr_factor(iteration, cfg, iters_per_epoch)

    return LambdaLR(optimizer, factor)


def budget_lr_factor(used: float, cfg: TrainConfig) -> float:
    """The budget's lr multiplier once a share ``used`` of the budget has passed."""
    return cfg.gamma ** bisect.bisect_right(cfg.time_milestones, used)


class TrainingBudget:
    """The budget of a run and its lr decays: wall-clock time (``cfg.max_time_minutes``),
    training images (``cfg.max_images``), or both (the one used up first decides).

    The clock starts when the budget is created, ``spent_seconds`` in (the time a resumed
    run had already used); images are the run's total, which a resumed run restores. Call
    :meth:`step` right after every ``scheduler.step()``: it multiplies the lr that the epoch
    schedule has just set by :func:`budget_lr_factor`. The slowest rank's clock decides for
    every rank. Without a budget, :meth:`step` changes nothing and reports 0.
    """

    def __init__(
        self, cfg: TrainConfig, spent_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cfg = cfg
        self.seconds = None if cfg.max_time_minutes is None else 60.0 * cfg.max_time_minutes
        self.clock = clock
        self.start = clock() - spent_seconds

    def elapsed(self) -> float:
        """Seconds counted against the budget so far (this process's clock)."""
        return self.clock() - self.start

    def used(self, images_seen: int = 0) -> float:
        """Share of the budget used after ``images_seen`` training images (all ranks), the
        largest over the time and image budgets and over all ranks (0 without a budget)."""
        shares = [0.0]
        if self.cfg.max_images is not None:
            shares.append(images_seen / self.cfg.max_images)
        if self.seconds is not None:
            shares.append(dist_utils.max_over_ranks(self.elapsed() / self.seconds))
        return max(shares)

    def step(self, optimizer: torch.optim.Optimizer, images_seen: int = 0) -> float:
        """Apply the budget's decays to ``optimizer``'s lrs; return the share of the budget used."""
        used = self.used(images_seen)
        factor = budget_lr_factor(used, self.cfg)
        if factor != 1.0:
            for group in optimizer.param_groups:
                group["lr"] *= factor
        return used
