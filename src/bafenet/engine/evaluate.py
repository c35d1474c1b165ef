"""Evaluation loop: predictions on a dataset, then VOC mAP, IRSTD Pd / false alarms and sky IoU.

Predicted boxes come back in original-image coordinates, the frame of each original
sample's boxes and ``sky_mask``; the annotated sky value at each prediction's centre is
looked up there, so false alarms are counted in the sky, off the sky and where the sky is
unknown (:mod:`bafenet.metrics.irstd`). The model's own sky map is scored at input
resolution against the transformed sample's ``sky_mask``.

Every image is predicted on its own input geometry and batched only with images of the
same padded shape, so the numbers do not depend on the batch size. Under ``torchrun``
each process predicts a shard of the images and the metric accumulators are merged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from bafenet.config import Config, EvalConfig
from bafenet.data.sample import Sample
from bafenet.engine.distributed import all_gather_objects, is_main_process, rank, world_size
from bafenet.engine.inference import EvalGeometry
from bafenet.metrics import DetectionEvaluator, SkyIoU, TargetLevelEvaluator
from bafenet.metrics.irstd import sky_at_centers
from bafenet.models.detector import sky_at


@dataclass
class Prediction:
    """Detections of one image in original-image coordinates."""

    image_id: str
    boxes: np.ndarray  # (K, 4) float32, x1 y1 x2 y2
    scores: np.ndarray  # (K,)
    gt_boxes: np.ndarray  # (N, 4) original coordinates
    image_size: tuple[int, int]  # original (H, W)
    gt_points: np.ndarray | None = None  # (N, 2) target centres when the labels give them
    pred_sky: np.ndarray | None = None  # (K,) annotated sky at each box centre: 1 / 0 / 255 unknown
    model_sky_prob: np.ndarray | None = None  # (K,) the model's own sky probability there (sky models)


def equal_shape_batches(
    dataset: Any, indices: Iterable[int], geometry: EvalGeometry, batch_size: int
) -> Iterator[tuple[list[Sample], list[Sample]]]:
    """Yield (original samples, transformed samples) of ``dataset[i]`` for ``i`` in ``indices``, in
    order, in batches of at most ``batch_size`` with one network-input shape (padding never
    changes a frame's result)."""
    originals: list[Sample] = []
    transformed: list[Sample] = []
    for i in indices:
        sample = dataset[i]
        t = geometry.transform(sample)
        if transformed and (len(transformed) == batch_size or t.image.shape != transformed[0].image.shape):
            yield originals, transformed
            originals, transformed = [], []
        originals.append(sample)
        transformed.append(t)
    if transformed:
        yield originals, transformed


def evaluate(
    model: nn.Module,
    dataset: Any,
    geometry: EvalGeometry,
    cfg: EvalConfig,
    device: torch.device,
    progress: bool = True,
    keep_predictions: bool = False,
    stated_score_thr: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate ``model`` on every image of ``dataset``.

    Args:
        geometry: how frames are fed to the model (``EvalGeometry.from_config(cfg)``).
        cfg: batch size, matching thresholds and the Pd operating point.
        keep_predictions: also return every image's detections (rank 0).
        stated_score_thr: the operating threshold the checkpoint states (its release
            metadata, or the F1-best of its last validation); Pd and false alarms are
            also reported there (``*_at_stated``).

    Returns:
        ``(metrics, details)``: flat metrics (detection in both width conventions, Pd / false
        alarms with their sky split and at fixed Pd, sky IoU) and details (per-image rows, PR
        and Pd-FA curves, predictions).
    """
    was_training = model.training
    model.eval()
    det = DetectionEvaluator(iou_threshold=cfg.iou_threshold)
    irstd = TargetLevelEvaluator(max_distance_px=cfg.pd_distance_px, score_threshold=cfg.pd_score_thr)
    sky = SkyIoU()
    predictions: list[Prediction] = []
    indices = list(range(rank(), len(dataset), world_size()))
    bar = tqdm(
        total=len(indices), desc="val", unit="img", disable=not (progress and is_main_process()), leave=False
    )
    for originals, transformed in equal_shape_batches(dataset, indices, geometry, cfg.batch_size):
        outputs = geometry.predict(model, originals, transformed, device)
        for sample, t, out in zip(originals, transformed, outputs, strict=True):
            prediction = _add_image(sample, t, out, det, irstd, sky)
            if keep_predictions:
                predictions.append(prediction)
        bar.update(len(originals))
    bar.close()
    model.train(was_training)

    det, irstd, sky, predictions = _merge_across_ranks(det, irstd, sky, predictions)
    metrics: dict[str, Any] = dict(det.compute())
    metrics.update(irstd_metrics(irstd, metrics["best_f1_score_thr"], stated_score_thr))
    if sky.num_images and sky.confusion.sum():  # a sky map and sky annotation
        for key, value in sky.compute().items():
            metrics[key if key.startswith(("sky_", "not_sky_")) else f"sky_{key}"] = value
    details = {
        "per_image": det.per_image(),
        "pr_curve": det.pr_curve("legacy"),
        "pr_curve_strict": det.pr_curve("strict"),
        "pd_fa_curve": irstd.curve(),
        "predictions": predictions,
    }
    return metrics, details


def _add_image(
    sample: Sample,
    transformed: Sample,
    out: dict[str, torch.Tensor],
    det: DetectionEvaluator,
    irstd: TargetLevelEvaluator,
    sky: SkyIoU,
) -> Prediction:
    """Add one image's detections (``out["boxes"]``: original-image coordinates) and, for sky
    models, its sky map (``out["sky_prob"]``: input resolution, padded) to the accumulators."""
    boxes = out["boxes"].float().cpu().numpy()
    scores = out["scores"].float().cpu().numpy()
    size = (sample.height, sample.width)
    points = sample.points if len(sample.points) == len(sample.boxes) else None
    pred_sky = sky_at_centers(boxes, sample.sky_mask)  # boxes and sky_mask: original frame
    det.add(sample.image_id, boxes, scores, sample.boxes)
    irstd.add(
        sample.image_id, boxes, scores, sample.boxes, image_size=size, gt_centers=points, pred_sky=pred_sky
    )
    model_sky_prob = None
    if "sky_prob" in out:
        prob = out["sky_prob"].float().cpu()[: transformed.height, : transformed.width]
        sky.add((prob.numpy() > 0.5).astype(np.uint8), transformed.sky_mask)
        model_sky_prob = model_sky_at_centers(boxes, prob, size)
    return Prediction(sample.image_id, boxes, scores, sample.boxes, size, points, pred_sky, model_sky_prob)


def evaluate_with_config(
    model: nn.Module,
    dataset: Any,
    cfg: Config,
    device: torch.device,
    progress: bool = True,
    keep_predictions: bool = False,
    stated_score_thr: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`evaluate` with the evaluation settings of ``cfg`` (a trained model's config):
    the geometry of ``EvalGeometry.from_config(cfg)`` and the matching of ``cfg.eval``."""
    return evaluate(
        model,
        dataset,
        EvalGeometry.from_config(cfg),
        cfg.eval,
        device,
        progress=progress,
        keep_predictions=keep_predictions,
        stated_score_thr=stated_score_thr,
    )


def model_sky_at_centers(
    boxes: np.ndarray, sky_prob: torch.Tensor, original_size: tuple[int, int]
) -> np.ndarray:
    """The model's sky probability at each box centre, read as its sky gate reads it.

    ``boxes`` (K, 4) are in original-image coordinates (``original_size`` = (H0, W0)),
    ``sky_prob`` (h, w) at input resolution; each centre is mapped to input pixels and the
    value of the pixel containing it is taken (:func:`bafenet.models.detector.sky_at`) -> (K,).
    """
    height, width = sky_prob.shape
    centres = torch.from_numpy((boxes[:, :2] + boxes[:, 2:]) / 2).float()
    centres *= torch.tensor([width / original_size[1], height / original_size[0]])
    return sky_at(sky_prob, centres).numpy()


OPERATING_POINT_KEYS = {
    "score_thr": "best_f1_score_thr",
    "f1": "best_f1",
    "precision": "best_f1_precision",
    "recall": "best_f1_recall",
    "pd": "irstd_pd_at_best_f1",
    "fa_per_mpix": "irstd_fa_per_mpix_at_best_f1",
}
"""The F1-best operating point's fields: short name -> key in :func:`evaluate`'s metrics."""


def operating_point(metrics: dict[str, Any]) -> dict[str, float] | None:
    """The F1-best operating point of a metrics dict (short names), or None when it lacks one."""
    if metrics.get("best_f1_score_thr") is None:
        return None
    return {name: metrics[key] for name, key in OPERATING_POINT_KEYS.items() if metrics.get(key) is not None}


AT_THRESHOLD_KEYS = (
    "pd",
    "false_alarms",
    "fa_per_mpix",
    "false_alarms_in_sky",
    "false_alarms_off_sky",
    "false_alarms_sky_unknown",
    "fa_off_sky_share",
)
"""The IRSTD fields reported at the F1-best and at the stated score threshold."""


def irstd_metrics(
    irstd: TargetLevelEvaluator, best_f1_score_thr: float | None, stated_score_thr: float | None = None
) -> dict[str, Any]:
    """Every ``irstd_*`` metric: at the Pd threshold, at fixed Pd, at fixed false alarms, at the
    F1-best and stated thresholds.

    ``irstd_<field>_at_best_f1`` are None when there is no F1-best threshold; the
    ``stated_score_thr`` and ``irstd_<field>_at_stated`` keys exist only when a stated
    threshold is given.
    """
    metrics = {f"irstd_{k}": v for k, v in irstd.compute().items()}
    metrics.update({f"irstd_{k}": v for k, v in irstd.fa_at_pd().items()})
    metrics.update({f"irstd_{k}": v for k, v in irstd.pd_at_fa().items()})
    metrics.update(_irstd_at(irstd, best_f1_score_thr, "best_f1"))
    if stated_score_thr is not None:
        metrics["stated_score_thr"] = float(stated_score_thr)
        metrics.update(_irstd_at(irstd, float(stated_score_thr), "stated"))
    return metrics


def _irstd_at(irstd: TargetLevelEvaluator, score_thr: float | None, name: str) -> dict[str, Any]:
    """``irstd_<field>_at_<name>`` for :data:`AT_THRESHOLD_KEYS` (all None without a threshold)."""
    at = irstd.compute(score_threshold=score_thr) if score_thr is not None else {}
    return {f"irstd_{key}_at_{name}": at.get(key) for key in AT_THRESHOLD_KEYS}


def _merge_across_ranks(det, irstd, sky, predictions):
    if world_size() == 1:
        return det, irstd, sky, predictions
    gathered = all_gather_objects((det, irstd, sky, predictions))
    det, irstd, sky, predictions = gathered[0]
    predictions = list(predictions)
    for other_det, other_irstd, other_sky, other_pred in gathered[1:]:
        det.merge(other_det)
        irstd.merge(other_irstd)
        sky.merge(other_sky)
        predictions.extend(other_pred)
    return det, irstd, sky, predictions


SIZE_GROUPS = {"small": "long side <= 640 px", "large": "long side > 640 px"}
MIN_GROUP_TARGETS = 20
"""A group of images (frame size, sky / non-sky) with fewer targets is marked: its numbers are noise."""
FEW_TARGETS_KEY = f"fewer_than_{MIN_GROUP_TARGETS}_targets"
"""The flag each group's metrics carry (``metrics.json``: ``by_frame_size.<group>``)."""


def group_counts(metrics: dict[str, Any]) -> str:
    """How many images and targets a group's numbers stand on, in words, marking a small group:
    ``"12 images, 140 targets"``, ``"1 image, 1 target (fewer than 20 targets)"``."""
    images, targets = int(metrics["num_images"]), int(metrics["num_gt"])
    text = f"{images} image{'s' * (images != 1)}, {targets} target{'s' * (targets != 1)}"
    return text + (f" (fewer than {MIN_GROUP_TARGETS} targets)" if targets < MIN_GROUP_TARGETS else "")


def frame_size_group(image_size: tuple[int, int], limit: int = 640) -> str:
    """``"small"`` for frames whose long side is at most ``limit`` pixels, else ``"large"``."""
    return "small" if max(image_size) <= limit else "large"


def prediction_metrics(
    predictions: list[Prediction], cfg: EvalConfig, stated_score_thr: float | None = None
) -> dict[str, Any]:
    """Detection and IRSTD metrics of kept predictions, without running the model again.

    No sky IoU: that needs the sky maps, which predictions do not keep.
    """
    det = DetectionEvaluator(iou_threshold=cfg.iou_threshold)
    irstd = TargetLevelEvaluator(max_distance_px=cfg.pd_distance_px, score_threshold=cfg.pd_score_thr)
    for p in predictions:
        det.add(p.image_id, p.boxes, p.scores, p.gt_boxes)
        irstd.add(
            p.image_id,
            p.boxes,
            p.scores,
            p.gt_boxes,
            image_size=p.image_size,
            gt_centers=p.gt_points,
            pred_sky=p.pred_sky,
        )
    det_metrics = det.compute()
    return {**det_metrics, **irstd_metrics(irstd, det_metrics["best_f1_score_thr"], stated_score_thr)}


def metrics_by_frame_size(
    predictions: list[Prediction], cfg: EvalConfig, stated_score_thr: float | None = None
) -> dict[str, dict[str, Any]]:
    """:func:`prediction_metrics` of the small and the large frames separately.

    Computed from kept predictions (``evaluate(..., keep_predictions=True)``); a group without
    images is left out. Each group states its ``num_images`` and ``num_gt`` (targets), and
    :data:`FEW_TARGETS_KEY` is true below :data:`MIN_GROUP_TARGETS` targets.
    """
    groups: dict[str, dict[str, Any]] = {}
    for name in SIZE_GROUPS:
        members = [p for p in predictions if frame_size_group(p.image_size) == name]
        if members:
            groups[name] = prediction_metrics(members, cfg, stated_score_thr)
            groups[name][FEW_TARGETS_KEY] = groups[name]["num_gt"] < MIN_GROUP_TARGETS
    return groups
