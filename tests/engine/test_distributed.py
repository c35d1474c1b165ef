"""CPU threads beside other processes."""

from __future__ import annotations

import torch

from bafenet.engine.distributed import threads_beside_load


def test_threads_leave_the_busy_cores_alone() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert threads_beside_load(cores=2, load=0.1) == 2  # an idle machine: every core
        assert threads_beside_load(cores=2, load=1.2) == 1  # one core busy elsewhere
        assert threads_beside_load(cores=2, load=4.0) == 1  # never fewer than one
        assert threads_beside_load(cores=16, load=0.0) == 2  # never more than torch would use
    finally:
        torch.set_num_threads(before)
