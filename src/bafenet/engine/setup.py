"""Config -> objects: the model and the train / eval pipelines of a run."""

from __future__ import annotations

from typing import Any

from torch import nn

from bafenet.config import Config, ConfigError
from bafenet.data.pipeline import TrainPipeline, build_eval_pipeline, build_train_pipeline
from bafenet.models.context import DEFAULT_CONTEXT_SIZE
from bafenet.models.zoo import build_model


def build_model_from_config(cfg: Config) -> nn.Module:
    """The zoo model named by ``cfg.model`` with its switches and the eval thresholds set."""
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


def build_eval_transform(cfg: Config) -> Any:
    """The eval pipeline: the official resize, or whole frames at ``eval.scale`` (default: the
    training scale) capped by ``eval.max_side``; the tiles protocol cuts the result later."""
    geometry = cfg.data.input
    if cfg.eval.protocol == "resize":
        return build_eval_pipeline(mode="resize", size=geometry.size, keep_ratio=geometry.keep_ratio)
    scale = cfg.eval.scale if cfg.eval.scale is not None else geometry.scale
    return build_eval_pipeline(mode="native", scale=scale, max_side=cfg.eval.max_side)
