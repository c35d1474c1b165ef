"""Checkpoints that load with ``torch.load(..., weights_only=True)``.

A checkpoint is a dict of plain types only (tensors, dicts, lists, tuples, str, int,
float, bool, None)::

    {
      "format": "bafenet-checkpoint", "format_version": 1,
      "model_name": "bafenet_r18",          # the zoo name the weights belong to
      "model": {param/buffer name: tensor},  # fp16 for a half export
      "weights_dtype": "float32" | "float16",
      "config": {...},                      # config_to_dict(cfg)
      "epoch": 3, "metadata": {...},
      "optimizer": {...} | None, "scheduler": {...} | None, "rng_states": {...} | None,
    }

It is written atomically (temporary file, then rename), so an interrupted save never
leaves a truncated checkpoint behind. RNG states are stored in the same safe form by
:func:`capture_rng_states` and put back by :func:`restore_rng_states`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bafenet.errors import BafenetError, DataError
from bafenet.fileio import atomic_path

FORMAT = "bafenet-checkpoint"
FORMAT_VERSION = 1
_SAFE_SCALARS = (str, int, float, bool, type(None))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / torch.compile wrappers."""
    model = getattr(model, "module", model)  # DDP / DataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    model_name: str,
    config: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    epoch: int = 0,
    metadata: dict[str, Any] | None = None,
    rng_states: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write a checkpoint of ``model`` to ``path`` atomically and return ``path``.

    Args:
        model: the network (DDP- or compile-wrapped modules are unwrapped).
        model_name: its model-zoo name, checked again by :func:`load_checkpoint`.
        config: the resolved run config as plain dicts (``config_to_dict(cfg)``).
        optimizer, scheduler: saved through their ``state_dict()`` for ``--resume``.
        epoch: number of completed epochs.
        metadata: any extra plain values (metrics, step counter, git hash, ...).
        rng_states: from :func:`capture_rng_states`.
        half: store floating-point weights as float16 (a small file for release; it
            loads into a float32 model). Not combinable with optimizer/scheduler state.

    Raises:
        ValueError: if a value is not weights-only loadable (the message names it), or
            ``half`` is combined with training state.
    """
    if half and (optimizer is not None or scheduler is not None):
        raise ValueError("a half-precision export holds weights only; do not pass optimizer/scheduler")
    weights = {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    checkpoint = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": str(model_name),
        "model": weights,
        "weights_dtype": "float16" if half else "float32",
        "config": config,
        "epoch": int(epoch),
        "metadata": metadata or {},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng_states": rng_states,
    }
    check_weights_only_safe(checkpoint)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def load_checkpoint(
    path: str | Path, expected_model: str | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights-only unpickling).

    Raises:
        DataError: the file is missing, unreadable, corrupt or not a bafenet checkpoint.
        BafenetError: ``expected_model`` is given and the checkpoint holds another model.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint file not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, unsafe pickle, ...
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(path, f"not a readable checkpoint ({first_line})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise DataError(path, "not a bafenet checkpoint (no 'format: bafenet-checkpoint' entry)")
    if checkpoint.get("format_version", 0) > FORMAT_VERSION:
        raise DataError(
            path,
            f"checkpoint format {checkpoint['format_version']} is newer than this bafenet "
            f"understands ({FORMAT_VERSION}); upgrade bafenet",
        )
    if expected_model is not None and checkpoint["model_name"] != expected_model:
        raise BafenetError(f"checkpoint {path} holds {checkpoint['model_name']}, not {expected_model}")
    return checkpoint


def load_weights(model: nn.Module, checkpoint: dict[str, Any], strict: bool = True) -> None:
    """Copy the checkpoint's weights into ``model`` (fp16 weights are cast to the model's dtypes).

    Raises:
        BafenetError: naming missing / unexpected keys or shape mismatches.
    """
    try:
        unwrap_model(model).load_state_dict(checkpoint["model"], strict=strict)
    except RuntimeError as exc:
        raise BafenetError(
            f"checkpoint weights of {checkpoint.get('model_name')} do not fit the model: {exc}"
        ) from None


def check_weights_only_safe(obj: Any, where: str = "checkpoint") -> None:
    """Raise ValueError naming the first value ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(obj, (torch.Tensor, *_SAFE_SCALARS)):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise ValueError(f"{where}: key {key!r} is a {type(key).__name__}, not str or int")
            check_weights_only_safe(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            check_weights_only_safe(value, f"{where}[{index}]")
        return
    raise ValueError(
        f"{where} is a {type(obj).__name__}, which torch.load(weights_only=True) refuses; "
        "convert it to a tensor, list or plain number/string"
    )


def capture_rng_states() -> dict[str, Any]:
    """The global RNG states (Python ``random``, NumPy, torch CPU, torch CUDA) as safe types."""
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "python": [version, list(state), gauss],
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back states from :func:`capture_rng_states` (CUDA only when it is there)."""
    version, state, gauss = states["python"]
    random.setstate((int(version), tuple(int(v) for v in state), gauss))
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"].cpu())
    cuda_states = states.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
