"""Evaluation loop: predictions on a dataset, then VOC mAP, IRSTD Pd / false alarms and sky IoU.

Every image is predicted on its own input geometry and batched only with images of the
same padded shape, so the numbers do not depend on the batch size. Under ``torchrun``
each process predicts a shard of the images and the metric accumulators are merged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from bafenet.config import EvalConfig
from bafenet.data.collate import collate_samples
from bafenet.data.sample import Sample
from bafenet.engine.distributed import all_gather_objects, is_main_process, rank, world_size
from bafenet.engine.tiling import predict_tiled
from bafenet.metrics import DetectionEvaluator, SkyIoU, TargetLevelEvaluator


@dataclass
class Prediction:
    """Detections of one image in original-image coordinates."""

    image_id: str
    boxes: np.ndarray  # (K, 4) float32, x1 y1 x2 y2
    scores: np.ndarray  # (K,)
    gt_boxes: np.ndarray  # (N, 4) original coordinates
    image_size: tuple[int, int]  # original (H, W)
    gt_points: np.ndarray | None = None  # (N, 2) target centres when the labels give them


def _batches(
    dataset: Any, indices: list[int], transform: Callable[[Sample], Sample], batch_size: int
) -> Iterator[tuple[list[Sample], list[Sample]]]:
    """Yield (original samples, transformed samples) batches of equal transformed shape."""
    originals: list[Sample] = []
    transformed: list[Sample] = []
    for i in indices:
        sample = dataset[i]
        t = transform(sample)
        if transformed and (len(transformed) == batch_size or t.image.shape != transformed[0].image.shape):
            yield originals, transformed
            originals, transformed = [], []
        originals.append(sample)
        transformed.append(t)
    if transformed:
        yield originals, transformed


@torch.no_grad()
def predict_samples(
    model: nn.Module,
    originals: list[Sample],
    transformed: list[Sample],
    device: torch.device,
    cfg: EvalConfig | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Run the model on one batch; boxes come back in original-image coordinates.

    With ``cfg.amp`` the network runs under autocast (bf16 on CPU, fp16 on CUDA). With
    ``cfg.protocol == "tiles"`` each frame is predicted tile by tile
    (:func:`bafenet.engine.tiling.predict_tiled`); ``sky_prob`` stays in input coordinates.
    """
    amp = cfg is not None and cfg.amp
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    with torch.autocast(device.type, dtype=dtype, enabled=amp):
        if cfg is not None and cfg.protocol == "tiles":
            outputs = []
            for sample, t in zip(originals, transformed, strict=True):
                image = torch.from_numpy(t.image)[None]  # (1, H, W)
                out = predict_tiled(model, image, cfg.tile_size, cfg.tile_overlap, device)
                factors = [sample.width / t.width, sample.height / t.height] * 2
                out["boxes"] = out["boxes"] * out["boxes"].new_tensor(factors)
                outputs.append(out)
            return outputs
        images, _ = collate_samples(transformed)
        return model(
            images.to(device),
            original_sizes=[(s.height, s.width) for s in originals],
            image_sizes=[(t.height, t.width) for t in transformed],
        )


def evaluate(
    model: nn.Module,
    dataset: Any,
    transform: Callable[[Sample], Sample],
    cfg: EvalConfig,
    device: torch.device,
    progress: bool = True,
    keep_predictions: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate ``model`` on every image of ``dataset``.

    Args:
        transform: the eval pipeline (e.g. the official 512x512 resize).
        cfg: thresholds and the Pd operating point.
        keep_predictions: also return every image's detections (rank 0).

    Returns:
        ``(metrics, details)``: flat metrics (detection in both width conventions, Pd / false
        alarms, sky IoU) and details (per-image rows, PR and Pd-FA curves, predictions).
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
    for originals, transformed in _batches(dataset, indices, transform, cfg.batch_size):
        outputs = predict_samples(model, originals, transformed, device, cfg)
        for sample, t, out in zip(originals, transformed, outputs, strict=True):
            boxes = out["boxes"].float().cpu().numpy()
            scores = out["scores"].float().cpu().numpy()
            det.add(sample.image_id, boxes, scores, sample.boxes)
            irstd.add(
                sample.image_id,
                boxes,
                scores,
                sample.boxes,
                image_size=(sample.height, sample.width),
                gt_centers=sample.points if len(sample.points) == len(sample.boxes) else None,
            )
            if "sky_prob" in out:
                prob = out["sky_prob"].float().cpu().numpy()[: t.height, : t.width]
                sky.add((prob > 0.5).astype(np.uint8), t.sky_mask)
            if keep_predictions:
                points = sample.points if len(sample.points) == len(sample.boxes) else None
                predictions.append(
                    Prediction(
                        sample.image_id, boxes, scores, sample.boxes, (sample.height, sample.width), points
                    )
                )
        bar.update(len(originals))
    bar.close()
    model.train(was_training)

    det, irstd, sky, predictions = _merge_across_ranks(det, irstd, sky, predictions)
    metrics: dict[str, Any] = dict(det.compute())
    metrics.update({f"irstd_{k}": v for k, v in irstd.compute().items()})
    metrics.update(_irstd_at_best_f1(irstd, metrics["best_f1_score_thr"]))
    if sky.num_images:  # models with a sky branch
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


def _irstd_at_best_f1(irstd: TargetLevelEvaluator, score_thr: float | None) -> dict[str, float | None]:
    """Pd and false alarms at the F1-best score threshold (``None`` when there is none)."""
    if score_thr is None:
        return {"irstd_pd_at_best_f1": None, "irstd_fa_per_mpix_at_best_f1": None}
    at = irstd.compute(score_threshold=score_thr)
    return {"irstd_pd_at_best_f1": at["pd"], "irstd_fa_per_mpix_at_best_f1": at["fa_per_mpix"]}


def _merge_across_ranks(det, irstd, sky, predictions):  # noqa: ANN001, ANN202 - private helper
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


def frame_size_group(image_size: tuple[int, int], limit: int = 640) -> str:
    """``"small"`` for frames whose long side is at most ``limit`` pixels, else ``"large"``."""
    return "small" if max(image_size) <= limit else "large"


def metrics_by_frame_size(predictions: list[Prediction], cfg: EvalConfig) -> dict[str, dict[str, Any]]:
    """Detection and IRSTD metrics of the small and the large frames separately.

    Computed from kept predictions (``evaluate(..., keep_predictions=True)``), without running
    the model again; a group without images is left out.
    """
    groups: dict[str, dict[str, Any]] = {}
    for name in SIZE_GROUPS:
        members = [p for p in predictions if frame_size_group(p.image_size) == name]
        if not members:
            continue
        det = DetectionEvaluator(iou_threshold=cfg.iou_threshold)
        irstd = TargetLevelEvaluator(max_distance_px=cfg.pd_distance_px, score_threshold=cfg.pd_score_thr)
        for p in members:
            det.add(p.image_id, p.boxes, p.scores, p.gt_boxes)
            irstd.add(
                p.image_id, p.boxes, p.scores, p.gt_boxes, image_size=p.image_size, gt_centers=p.gt_points
            )
        det_metrics = det.compute()
        groups[name] = {
            **det_metrics,
            **{f"irstd_{k}": v for k, v in irstd.compute().items()},
            **_irstd_at_best_f1(irstd, det_metrics["best_f1_score_thr"]),
        }
    return groups
