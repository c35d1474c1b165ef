"""Checkpoint -> model -> detections: the one inference path of val, predict, demo, the
benchmarks and the Python API (:mod:`bafenet.api`).

* :func:`load_trained_model` reads a checkpoint (weights-only) into a model in eval mode
  with its config (:func:`checkpoint_config`: the stored config with the caller's overrides);
* :class:`EvalGeometry`, built from the config's ``eval`` section, is the one place that
  decides how a frame becomes network input (resize / native / tiles, the input-size
  checks, autocast) and how detections come back to the frame.

Coordinates: boxes are ``x1 y1 x2 y2`` pixel edges of the original frame (pixel ``p``
covers ``[p, p + 1)``); the sky map stays at network-input resolution.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from bafenet.config import MIN_INPUT_SIDE, Config, ConfigError, apply_override, config_from_dict
from bafenet.data.collate import collate_samples
from bafenet.data.imageio import megapixels
from bafenet.data.pipeline import build_eval_pipeline
from bafenet.data.sample import Sample
from bafenet.data.transforms import Compose
from bafenet.engine.checkpoint import load_checkpoint, load_weights
from bafenet.engine.distributed import unwrap_model
from bafenet.engine.setup import build_model_from_config
from bafenet.engine.tiling import predict_tiled
from bafenet.errors import BafenetError, DataError

BACKENDS = ("torch", "onnxruntime")
DEFAULT_SCORE_THR = 0.3


def load_trained_model(
    weights: str | Path,
    device: torch.device,
    overrides: Iterable[str] = (),
    backend: str = "torch",
) -> tuple[nn.Module, Config, dict[str, Any]]:
    """Model + config + checkpoint dict of a weights file, the model in eval mode on ``device``.

    The file is read weights-only and checked (:func:`load_checkpoint`); its stored config,
    updated by ``overrides`` (``key=value``), builds the model (post-processing thresholds
    from ``eval.*``), which gets every weight from the file; the operating threshold it
    states (:func:`operating_score_thr`) is checked too.

    ``backend="onnxruntime"`` runs an ONNX graph instead (:mod:`bafenet.engine.onnx_backend`,
    the ``export`` extra): the returned model is called like the PyTorch detector.

    Raises:
        DataError / ConfigError / BafenetError: one line naming the file and the problem.
    """
    if backend not in BACKENDS:
        raise BafenetError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        from bafenet.engine.onnx_backend import load_onnx_model

        return load_onnx_model(weights, device, overrides=list(overrides))
    path = Path(weights)
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, path, overrides)
    model = build_model_from_config(cfg)
    load_weights(model, ckpt, path=path)
    return model.to(device).eval(), cfg, ckpt


def checkpoint_config(ckpt: dict[str, Any], path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """The config a checkpoint-like dict stores (``ckpt["config"]``), updated by ``overrides``.

    The operating threshold it states (:func:`operating_score_thr`) is checked too, and
    ``model.weights_backbone`` / ``model.init_weights`` are cleared: the file holds every
    weight. ``path`` is the file named in errors (a ``.pt`` checkpoint or an exported ``.onnx``).

    Raises:
        ConfigError / DataError: one line naming the file (and the overrides) and the problem.
    """
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
    cfg.model.weights_backbone = None
    cfg.model.init_weights = None
    return cfg


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


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX, as oneDNN reports it).

    Without it, bf16 autocast is emulated: about 6x slower than float32 (an AVX2 AMD EPYC,
    ``fcos_hr`` at 2560 x 2048), where with it bf16 is about 1.7x faster.
    """
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The reduced precision ``eval.amp`` runs the network in on ``device``: fp16 on CUDA, bf16
    on a CPU with native bf16, else None (float32: emulated bf16 would only be slower)."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None


@dataclass(frozen=True)
class EvalGeometry:
    """How frames become network input and detections come back: one place for ``eval.protocol``.

    * ``resize``: the whole frame resized like training (the official 512 x 512);
    * ``native``: the whole frame at ``eval.scale`` (default: the training scale), its long
      side capped by ``eval.max_side``;
    * ``tiles``: the native input cut into overlapping ``tile_size`` tiles, detections merged
      (:func:`bafenet.engine.tiling.predict_tiled`).

    :meth:`transform` refuses, before resizing, a frame whose network input would have more
    than ``max_pixels`` pixels or a long side below :data:`bafenet.config.MIN_INPUT_SIDE`.
    :meth:`predict` runs the model (under autocast with ``amp``: :func:`autocast_dtype`).
    """

    protocol: Literal["resize", "native", "tiles"]
    pipeline: Compose  # resize steps only (each has ``output_shape``)
    max_pixels: int = 40_000_000
    tile_size: int = 1024
    tile_overlap: int = 64
    amp: bool = False

    @classmethod
    def from_config(cls, cfg: Config) -> EvalGeometry:
        """The geometry of ``cfg.eval`` (and of ``cfg.data.input`` for the resize size and default scale)."""
        train_input, ev = cfg.data.input, cfg.eval
        if ev.protocol == "resize":
            pipeline = build_eval_pipeline(
                mode="resize", size=train_input.size, keep_ratio=train_input.keep_ratio
            )
        else:
            scale = ev.scale if ev.scale is not None else train_input.scale
            pipeline = build_eval_pipeline(mode="native", scale=scale, max_side=ev.max_side)
        return cls(ev.protocol, pipeline, ev.max_pixels, ev.tile_size, ev.tile_overlap, ev.amp)

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of the network input (before tiling) of a ``height`` x ``width`` frame."""
        for step in self.pipeline.steps:
            height, width = step.output_shape(height, width)
        return height, width

    def check(self, sample: Sample) -> None:
        """Raise :class:`DataError` (naming the frame) if its network input is too large or too small."""
        h, w = sample.height, sample.width
        th, tw = self.input_shape(h, w)
        where = sample.path if sample.path is not None else (sample.image_id or "image")
        if th * tw > self.max_pixels:
            raise DataError(
                where,
                f"frame of {w}x{h} px would become a {tw}x{th} px network input ({megapixels(th * tw)}), "
                f"above the limit of {megapixels(self.max_pixels)} (eval.max_pixels); lower "
                "eval.scale or set eval.max_side",
            )
        if max(th, tw) < MIN_INPUT_SIDE:
            factor = max(th, tw) / max(h, w)
            raise DataError(
                where,
                f"frame of {w}x{h} px is too small: its network input would be {tw}x{th} px and the "
                f"detector needs at least {MIN_INPUT_SIDE} px on the long side (frames of at least "
                f"{math.ceil(MIN_INPUT_SIDE / factor)} px at this scale)",
            )

    def transform(self, sample: Sample) -> Sample:
        """The network-input sample of an original one (image, boxes, masks resized together)."""
        self.check(sample)
        return self.pipeline(sample)

    @torch.no_grad()
    def predict(
        self, model: nn.Module, originals: list[Sample], transformed: list[Sample], device: torch.device
    ) -> list[dict[str, Tensor]]:
        """Detections of a batch of frames (``transformed[i] = self.transform(originals[i])``).

        Returns one dict per frame: ``boxes`` (K, 4) in original-frame pixel edges,
        ``scores`` (K,), ``labels`` (K,), and ``sky_prob`` (h, w) at input resolution for a
        sky model. A DDP-wrapped model is run unwrapped (no collective per forward pass).
        """
        model = unwrap_model(model)
        dtype = autocast_dtype(device, self.amp)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if self.protocol == "tiles":
                return [
                    self._predict_tiled(model, s, t, device)
                    for s, t in zip(originals, transformed, strict=True)
                ]
            images, _ = collate_samples(transformed)
            return model(
                images.to(device),
                original_sizes=[(s.height, s.width) for s in originals],
                image_sizes=[(t.height, t.width) for t in transformed],
            )

    def _predict_tiled(
        self, model: nn.Module, original: Sample, transformed: Sample, device: torch.device
    ) -> dict[str, Tensor]:
        """One frame tile by tile; boxes scaled back to the original frame."""
        image = torch.from_numpy(transformed.image)[None]  # (1, H, W)
        out = predict_tiled(model, image, self.tile_size, self.tile_overlap, device)
        factors = [original.width / transformed.width, original.height / transformed.height] * 2
        out["boxes"] = out["boxes"] * out["boxes"].new_tensor(factors)
        return out
