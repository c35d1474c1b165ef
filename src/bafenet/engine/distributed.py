"""Helpers for single-process and ``torchrun`` (multi-GPU / multi-node) runs."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def threads_beside_load(cores: int | None = None, load: float | None = None) -> int:
    """CPU threads for torch that leave alone the cores other processes keep busy.

    torch's intra-op threads wait for each other at every operator, so on an oversubscribed
    CPU one descheduled thread stalls all the others: as many threads as cores beside two busy
    processes ran the demo's training about 4x slower than one thread did. The 1-minute load
    average (``os.getloadavg``) counts the busy cores; the result is between 1 and torch's
    current thread count.
    """
    cores = cores or os.cpu_count() or 1
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(torch.get_num_threads(), cores - round(load)))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DDP / ``nn.DataParallel`` wrapper, else ``model`` itself."""
    return model.module if isinstance(model, (DistributedDataParallel, nn.DataParallel)) else model


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Only rank 0 writes files and prints progress."""
    return rank() == 0


def init_from_env(device: torch.device) -> bool:
    """Join the process group described by torchrun's environment, if any.

    Uses NCCL on CUDA and gloo on CPU. Returns True when running distributed.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or is_distributed():
        return is_distributed()
    if int(os.environ["WORLD_SIZE"]) <= 1:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)
    return True


def local_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present (the local rank's GPU under torchrun), else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(requested)


def all_gather_objects(obj: Any) -> list[Any]:
    """Gather one picklable object from every rank (a one-element list when not distributed)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_finite(finite: bool) -> bool:
    """True when ``finite`` holds on every rank (so all ranks skip a bad step together)."""
    if not is_distributed():
        return finite
    flag = torch.tensor([1.0 if finite else 0.0])
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def max_over_ranks(value: float) -> float:
    """The largest ``value`` of all ranks (so time-based decisions are taken together)."""
    if not is_distributed():
        return value
    flag = torch.tensor([float(value)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return float(flag.item())


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's object on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
