"""Inference on image files and drawings of predictions."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bafenet.config import Config, apply_override, config_from_dict
from bafenet.data.sample import Sample
from bafenet.engine.checkpoint import load_checkpoint, load_weights
from bafenet.engine.evaluate import predict_samples
from bafenet.engine.setup import build_eval_transform, build_model_from_config
from bafenet.errors import BafenetError
from bafenet.viz import GREEN, RED, draw_boxes, gray_to_rgb

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def load_trained_model(
    weights: str | Path, device: torch.device, overrides: Iterable[str] = ()
) -> tuple[nn.Module, Config, dict[str, Any]]:
    """Model + config of a checkpoint (``torch.load(weights_only=True)``), in eval mode on ``device``."""
    ckpt = load_checkpoint(weights)
    raw = ckpt["config"]
    for override in overrides:
        apply_override(raw, override)
    cfg = config_from_dict(raw)
    cfg.model.weights_backbone = None  # the checkpoint holds every weight
    model = build_model_from_config(cfg)
    load_weights(model, ckpt)
    return model.to(device).eval(), cfg, ckpt


DEFAULT_SCORE_THR = 0.3


def operating_score_thr(ckpt: dict[str, Any]) -> tuple[float, str]:
    """The score threshold to keep detections at, and where it comes from.

    A released checkpoint states its ``operating_score_thr``; a training checkpoint holds the
    metrics of its last validation, whose ``best_f1_score_thr`` maximises F1 there. Otherwise
    :data:`DEFAULT_SCORE_THR`.
    """
    metadata = ckpt.get("metadata") or {}
    if metadata.get("operating_score_thr") is not None:
        return float(metadata["operating_score_thr"]), "the checkpoint's operating point"
    best = (metadata.get("metrics") or {}).get("best_f1_score_thr")
    if best is not None:
        return float(best), "F1-best on the checkpoint's last validation"
    return DEFAULT_SCORE_THR, "default"


def image_files(sources: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (non-recursively) in the given folders."""
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
    return files


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
