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
      "train_model": {name: tensor},        # only with train.ema_decay: the optimised weights
    }                                       # ("model" is then their moving average)

It is written atomically (temporary file, then rename), so an interrupted save never
leaves a truncated checkpoint behind. RNG states are stored in the same safe form by
:func:`capture_rng_states` and put back by :func:`restore_rng_states`.
"""

from __future__ import annotations

import random
import re
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


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights and buffers of ``model`` (unwrapped), detached, on the CPU."""
    return {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}


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
    train_model: nn.Module | None = None,
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
        train_model: with ``train.ema_decay``, the optimised weights (``model`` is then their
            moving average), stored as ``train_model`` for ``--resume``.

    Raises:
        ValueError: if a value is not weights-only loadable (the message names it), or
            ``half`` is combined with training state.
    """
    if half and (optimizer is not None or scheduler is not None):
        raise ValueError("a half-precision export holds weights only; do not pass optimizer/scheduler")
    weights = cpu_state_dict(model)
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
    if train_model is not None:
        checkpoint["train_model"] = cpu_state_dict(train_model)
    check_weights_only_safe(checkpoint)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def read_weights_only(path: str | Path, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with one-line :class:`DataError` s naming the file.

    A file that holds Python objects other than tensors and plain values (a pickle that could
    run code when loaded) is refused and said to be so; it is never loaded in another way.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, unsafe pickle, ...
        raise DataError(path, _load_problem(exc, what)) from None


def _load_problem(exc: Exception, what: str) -> str:
    """Why ``torch.load(weights_only=True)`` failed, on one line, without torch's advice."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines or not lines[0].startswith("Weights only load failed"):
        return f"not a readable {what} ({lines[0] if lines else type(exc).__name__})"
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if found:
        return (
            f"not loaded: it holds Python objects ({found.group(1)}) that a weights-only load "
            "refuses (only tensors and plain values are accepted)"
        )
    details = [
        line.removeprefix("WeightsUnpickler error:").strip()
        for line in lines[1:]
        if "weights_only" not in line and "torch.load" not in line
    ]
    details = [line for line in details if line]
    return f"not a readable {what} ({details[0] if details else 'a weights-only load refused it'})"


def load_checkpoint(
    path: str | Path, expected_model: str | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights-only unpickling).

    Besides the format, this checks that the entries every reader uses are there with the
    right types (``model_name``, ``model``, ``config``, ``metadata``) and that every
    floating-point weight is finite.

    Raises:
        DataError: the file is missing, unreadable, corrupt, not a bafenet checkpoint, lacks
            an entry or holds NaN / infinite weights (the message names the file).
        BafenetError: ``expected_model`` is given and the checkpoint holds another model.
    """
    path = Path(path)
    checkpoint = read_weights_only(path, map_location=map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise DataError(path, "not a bafenet checkpoint (no 'format: bafenet-checkpoint' entry)")
    version = checkpoint.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise DataError(path, f"checkpoint format_version {version!r} is not an integer")
    if version > FORMAT_VERSION:
        raise DataError(
            path,
            f"checkpoint format {version} is newer than this bafenet understands ({FORMAT_VERSION}); "
            "upgrade bafenet",
        )
    _check_entries(path, checkpoint)
    if expected_model is not None and checkpoint["model_name"] != expected_model:
        raise BafenetError(f"checkpoint {path} holds {checkpoint['model_name']}, not {expected_model}")
    return checkpoint


_REQUIRED_ENTRIES = {"model_name": str, "model": dict, "config": dict}


def _check_entries(path: Path, checkpoint: dict[str, Any]) -> None:
    """Raise :class:`DataError` for a missing or mistyped entry, or a non-finite weight."""
    for entry, kind in _REQUIRED_ENTRIES.items():
        if entry not in checkpoint:
            raise DataError(path, f"checkpoint has no '{entry}' entry")
        found = type(checkpoint[entry])
        if not issubclass(found, kind):
            raise DataError(path, f"checkpoint entry '{entry}' is a {found.__name__}, not a {kind.__name__}")
    metadata = checkpoint.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise DataError(path, f"checkpoint entry 'metadata' is a {type(metadata).__name__}, not a dict")
    for name, value in checkpoint["model"].items():
        if not isinstance(value, torch.Tensor):
            raise DataError(path, f"weight {name!r} is a {type(value).__name__}, not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise DataError(path, f"weight {name!r} holds NaN or infinite values; the checkpoint is broken")


def load_weights(
    model: nn.Module, checkpoint: dict[str, Any], strict: bool = True, path: str | Path | None = None
) -> None:
    """Copy the checkpoint's weights into ``model`` (fp16 weights are cast to the model's dtypes).

    Args:
        path: the checkpoint's file, named in the error message.

    Raises:
        DataError: naming the file and the first missing, unexpected or wrongly shaped weights.
    """
    module = unwrap_model(model)
    weights = checkpoint["model"]
    expected = module.state_dict()
    problems = {
        "wrong shape": [
            f"{k} {list(weights[k].shape)} instead of {list(v.shape)}"
            for k, v in expected.items()
            if k in weights and weights[k].shape != v.shape
        ],
        "missing": [k for k in expected if k not in weights] if strict else [],
        "unexpected": [k for k in weights if k not in expected] if strict else [],
    }
    where = path if path is not None else "checkpoint"
    detail = "; ".join(
        f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for label, keys in problems.items()
        if keys
    )
    if detail:
        raise DataError(where, f"weights of {checkpoint.get('model_name')} do not fit the model ({detail})")
    try:
        module.load_state_dict(weights, strict=strict)
    except RuntimeError as exc:  # anything the checks above do not foresee
        last_line = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
        raise DataError(
            where, f"weights of {checkpoint.get('model_name')} do not fit the model ({last_line})"
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
