"""Config -> objects: the model and the train / eval pipelines of a run."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import nn

from bafenet.config import MIN_INPUT_SIDE, Config, ConfigError
from bafenet.data.imageio import megapixels
from bafenet.data.pipeline import TrainPipeline, build_eval_pipeline, build_train_pipeline
from bafenet.data.sample import Sample
from bafenet.data.transforms import Compose
from bafenet.errors import DataError
from bafenet.models.context import DEFAULT_CONTEXT_SIZE
from bafenet.models.zoo import build_model


def build_model_from_config(cfg: Config) -> nn.Module:
    """The zoo model named by ``cfg.model`` with its switches and the eval thresholds set.

    Raises:
        BafenetError: the model cannot be built with these switches (one line).
    """
    model = build_model(cfg.model.name, weights_backbone=cfg.model.weights_backbone, **cfg.model.kwargs)
    model.score_thresh = cfg.eval.score_thr
    model.nms_thresh = cfg.eval.nms_iou
    model.detections_per_img = cfg.eval.max_per_img
    model.pre_nms_top_n = cfg.eval.nms_pre
    return model


def sky_context_size(cfg: Config) -> int | None:
    """Long side of the whole-frame context the training samples carry: ``data.sky_context_size``,
    by default the model's ``context_size`` when ``model.kwargs.sky_context`` is on."""
    kwargs = cfg.model.kwargs
    model_size = kwargs.get("context_size", DEFAULT_CONTEXT_SIZE) if kwargs.get("sky_context") else None
    data_size = cfg.data.sky_context_size
    if model_size is not None and data_size is not None and data_size != model_size:
        raise ConfigError(
            f"data.sky_context_size ({data_size}) differs from the model's context_size ({model_size})"
        )
    return data_size if data_size is not None else model_size


def build_train_transform(cfg: Config) -> TrainPipeline:
    """The training pipeline of ``cfg.data`` (geometry, flip, BAG-CP)."""
    geometry = cfg.data.input
    return build_train_pipeline(
        mode=geometry.mode,
        size=geometry.size,
        keep_ratio=geometry.keep_ratio,
        scale=geometry.scale,
        crop_size=geometry.crop_size,
        flip_prob=cfg.data.flip_prob,
        bagcp=cfg.data.bagcp.mode if cfg.data.bagcp.enabled else None,
        bagcp_prob=cfg.data.bagcp.prob,
        context_size=sky_context_size(cfg),
    )


@dataclass(frozen=True)
class EvalTransform:
    """The eval pipeline, behind a check of the network input made before anything is resized.

    A frame is refused with a :class:`DataError` naming its file when its network input
    would have more than ``max_pixels`` pixels (``eval.max_pixels``), or a long side shorter
    than :data:`bafenet.config.MIN_INPUT_SIDE` (the detector needs more than one location
    at its coarsest stride).
    """

    pipeline: Compose  # resize steps only (each has ``output_shape``)
    max_pixels: int

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of the network input of a ``height`` x ``width`` frame."""
        for step in self.pipeline.steps:
            height, width = step.output_shape(height, width)
        return height, width

    def check(self, sample: Sample) -> None:
        """Raise :class:`DataError` if the sample's network input would be too large or too small."""
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

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        self.check(sample)
        return self.pipeline(sample, rng)


def build_eval_transform(cfg: Config) -> EvalTransform:
    """The eval pipeline: the official resize, or whole frames at ``eval.scale`` (default: the
    training scale) capped by ``eval.max_side``; the tiles protocol cuts the result later.
    Frames whose network input breaks ``eval.max_pixels`` or the minimum size are refused."""
    geometry = cfg.data.input
    if cfg.eval.protocol == "resize":
        pipeline = build_eval_pipeline(mode="resize", size=geometry.size, keep_ratio=geometry.keep_ratio)
    else:
        scale = cfg.eval.scale if cfg.eval.scale is not None else geometry.scale
        pipeline = build_eval_pipeline(mode="native", scale=scale, max_side=cfg.eval.max_side)
    return EvalTransform(pipeline, cfg.eval.max_pixels)
