"""Inference on image files and drawings of predictions."""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bafenet.config import Config, ConfigError, apply_override, config_from_dict
from bafenet.data.sample import Sample
from bafenet.engine.checkpoint import load_checkpoint, load_weights
from bafenet.engine.evaluate import predict_samples
from bafenet.engine.setup import build_eval_transform, build_model_from_config
from bafenet.errors import BafenetError, DataError
from bafenet.viz import GREEN, RED, draw_boxes, gray_to_rgb

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def load_trained_model(
    weights: str | Path, device: torch.device, overrides: Iterable[str] = ()
) -> tuple[nn.Module, Config, dict[str, Any]]:
    """Model + config of a checkpoint, in eval mode on ``device``: how val, predict and the demo load one.

    The file is read weights-only and checked (:func:`load_checkpoint`); its stored config,
    updated by ``overrides`` (``key=value``), builds the model, which gets every weight from
    the file; the operating threshold it states (:func:`operating_score_thr`) is checked too.

    Raises:
        DataError / ConfigError: one line naming the file and the problem.
    """
    path = Path(weights)
    ckpt = load_checkpoint(path)
    overrides = list(overrides)
    raw = copy.deepcopy(ckpt["config"])
    try:
        for override in overrides:
            apply_override(raw, override)
        cfg = config_from_dict(raw)
    except ConfigError as exc:
        where = f"{path} + overrides {' '.join(overrides)}" if overrides else str(path)
        raise ConfigError(f"{where}: {exc}") from None
    try:
        operating_score_thr(ckpt)
    except BafenetError as exc:
        raise DataError(path, str(exc)) from None
    cfg.model.weights_backbone = None  # the checkpoint holds every weight
    model = build_model_from_config(cfg)
    load_weights(model, ckpt, path=path)
    return model.to(device).eval(), cfg, ckpt


DEFAULT_SCORE_THR = 0.3


def operating_score_thr(ckpt: dict[str, Any]) -> tuple[float, str]:
    """The score threshold to keep detections at, and where it comes from.

    A released checkpoint states its ``operating_score_thr``; a training checkpoint holds the
    metrics of its last validation, whose ``best_f1_score_thr`` maximises F1 there. Otherwise
    :data:`DEFAULT_SCORE_THR`.

    Raises:
        BafenetError: a stated threshold is not a number in [0, 1].
    """
    metadata = ckpt.get("metadata") or {}
    if metadata.get("operating_score_thr") is not None:
        stated = _score(metadata["operating_score_thr"], "metadata.operating_score_thr")
        return stated, "the checkpoint's operating point"
    metrics = metadata.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise BafenetError(f"checkpoint metadata.metrics is a {type(metrics).__name__}, not a mapping")
    if metrics.get("best_f1_score_thr") is not None:
        best = _score(metrics["best_f1_score_thr"], "metadata.metrics.best_f1_score_thr")
        return best, "F1-best on the checkpoint's last validation"
    return DEFAULT_SCORE_THR, "default"


def _score(value: Any, key: str) -> float:
    """``value`` as a score threshold in [0, 1], else :class:`BafenetError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise BafenetError(f"checkpoint {key} {value!r} is not a score threshold in [0, 1]")
    return float(value)


def image_files(sources: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (non-recursively) in the given folders.

    Raises:
        BafenetError: a source does not exist, there is no image, or two images share a
            name stem (their drawings would overwrite each other).
    """
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise BafenetError(f"{path}: no such image file or folder")
    if not files:
        raise BafenetError("no image files found in " + ", ".join(map(str, sources)))
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:
            raise BafenetError(
                f"{by_stem[path.stem]} and {path}: two images named {path.stem!r} would write the same "
                "drawing; predict them separately"
            )
        by_stem[path.stem] = path
    return files


def check_output_folder(out: str | Path) -> Path:
    """Refuse, before any work, an output place that is not a folder that can be written.

    ``out`` may exist (a folder) or not (it is created later, with its missing parents).

    Raises:
        DataError: naming ``out`` and why it cannot hold the results.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder; the output needs a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(out, f"cannot be created: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(out, f"cannot be written: no write permission in {existing}")
    return out


def publish_outputs(staging: Path, out: Path) -> None:
    """Move every file of folder ``staging`` into folder ``out`` (created if missing).

    Raises:
        DataError: naming ``out`` when it cannot be created or written.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(staging.iterdir()):
            shutil.move(path, out / path.name)
    except OSError as exc:
        raise DataError(out, f"cannot write the results ({exc.strerror or exc})") from None


def predict_sample(
    model: nn.Module, cfg: Config, sample: Sample, device: torch.device
) -> dict[str, np.ndarray]:
    """Detections of one sample in original-image coordinates (``boxes``, ``scores``)."""
    transformed = build_eval_transform(cfg)(sample)
    out = predict_samples(model, [sample], [transformed], device, cfg.eval)[0]
    return {"boxes": out["boxes"].float().cpu().numpy(), "scores": out["scores"].float().cpu().numpy()}


def draw_prediction(sample: Sample, boxes: np.ndarray, scores: np.ndarray, score_thr: float) -> np.ndarray:
    """RGB drawing: ground truth (if any) in green, detections above ``score_thr`` in red."""
    rgb = gray_to_rgb(sample.image)
    if sample.num_targets:
        rgb = draw_boxes(rgb, sample.boxes, GREEN)
    return draw_boxes(rgb, boxes[scores >= score_thr], RED)
