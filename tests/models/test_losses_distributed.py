"""The FCOS losses in a 2-process gloo group: every process makes the same collectives."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bafenet.models.losses import detection_losses

GRADIENT_SIZE = 1000  # a stand-in for the gradient all-reduce that follows the forward pass


def _losses_then_gradient_reduce(rank: int, world_size: int, tmp: str) -> None:
    """Rank 0 has one positive location, rank 1 none; then both all-reduce a "gradient"."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{tmp}/group",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=60),  # a hang fails the test instead of blocking it
    )
    try:
        labels = torch.ones(4, dtype=torch.int64)  # one class: 1 = background
        box_targets = torch.zeros(4, 4)
        if rank == 0:
            labels[0] = 0
            box_targets[0] = torch.tensor([2.0, 2.0, 2.0, 2.0])  # centerness 1
        pred = torch.ones(4, 4)  # IoU 1/4 with (2, 2, 2, 2)
        losses = detection_losses(torch.zeros(4, 1), pred, torch.zeros(4), labels, box_targets)
        gradient = torch.ones(GRADIENT_SIZE)
        dist.all_reduce(gradient)
        result = {name: float(value) for name, value in losses.items()}
        result["gradient"] = gradient.tolist()
        Path(tmp, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_a_process_without_positives_joins_the_same_collectives(tmp_path: Path) -> None:
    # forked, so the processes start without importing torch again
    mp.start_processes(_losses_then_gradient_reduce, args=(2, str(tmp_path)), nprocs=2, start_method="fork")
    with_positive, without = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert with_positive["gradient"] == without["gradient"] == [2.0] * GRADIENT_SIZE
    # the centerness sum is averaged over both processes: (1 + 0) / 2
    assert math.isclose(with_positive["loss_box"], -math.log(0.25) / 0.5, rel_tol=1e-5)
    assert without["loss_box"] == without["loss_centerness"] == 0.0
