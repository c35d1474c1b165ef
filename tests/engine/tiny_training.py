"""What the training tests share: a tiny recipe and the environment of a training subprocess."""

from __future__ import annotations

import os

# A small network on the built-in synthetic data: each epoch takes a fraction of a second.
TINY_RECIPE = [
    "fcos_r50",
    "model.name=fcos_r18",
    "model.weights_backbone=null",
    "model.kwargs.channels=32",
    "model.kwargs.tower_depth=1",
    "model.kwargs.backbone_width=16",
    "data.train_split=train",
    "data.val_split=val",
    "eval.split=val",
    "data.input.size=64",
    "data.workers=0",
    "train.device=cpu",
    "train.optimizer=adamw",
    "train.lr=0.0005",
    "train.warmup_iters=2",
    "train.milestones=[2]",
]


def train_env() -> dict[str, str]:
    """The environment of a ``python -m bafenet train`` subprocess: one thread, fixed hashing."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONHASHSEED"] = "0"
    return env
