"""Config -> objects: the model and the training pipeline of a run (the evaluation geometry is
:class:`bafenet.engine.inference.EvalGeometry`)."""

from __future__ import annotations

from torch import nn

from bafenet.config import Config, ConfigError
from bafenet.data.pipeline import TrainPipeline, build_train_pipeline
from bafenet.models.context import DEFAULT_CONTEXT_SIZE
from bafenet.models.zoo import build_model

EVAL_POSTPROCESS = {
    "score_thresh": "score_thr",
    "pre_nms_top_n": "nms_pre",
    "nms_thresh": "nms_iou",
    "detections_per_img": "max_per_img",
}
"""The detector's post-processing arguments -> the ``eval.*`` keys that set them."""


def build_model_from_config(cfg: Config) -> nn.Module:
    """The zoo model named by ``cfg.model`` with its switches, post-processing from ``cfg.eval``
    (random or backbone-initialised weights; ``model.init_weights`` is loaded by the trainer).

    Raises:
        BafenetError: the model cannot be built with these switches (one line).
    """
    for key, eval_key in EVAL_POSTPROCESS.items():
        if key in cfg.model.kwargs:
            raise ConfigError(f"model.kwargs.{key}: post-processing is set by eval.{eval_key}")
    postprocess = {key: getattr(cfg.eval, eval_key) for key, eval_key in EVAL_POSTPROCESS.items()}
    # a fine-tuned model gets every weight from model.init_weights: no backbone download
    weights_backbone = None if cfg.model.init_weights else cfg.model.weights_backbone
    return build_model(cfg.model.name, weights_backbone=weights_backbone, **cfg.model.kwargs, **postprocess)


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
        background_crop_prob=geometry.background_crop_prob,
        flip_prob=cfg.data.flip_prob,
        bagcp=cfg.data.bagcp.mode if cfg.data.bagcp.enabled else None,
        bagcp_prob=cfg.data.bagcp.prob,
        context_size=sky_context_size(cfg),
    )
