"""VOC average precision at one IoU threshold, as the official evaluation computes it.

The protocol (reference §5.1), for one class:

1. Per image, predictions are visited by descending score. Each takes the ground-truth
   box of highest IoU with it; if that IoU is at least the threshold and the box is not
   yet matched, the prediction is a true positive (TP) and the box becomes matched;
   otherwise (box already matched, or IoU below the threshold) it is a false positive (FP).
2. All images' predictions are ranked together by descending score; cumulative TP and FP
   give recall = TP / #GT and precision = TP / (TP + FP), both guarded by float32 eps.
3. ``mAP07`` (11-point AP): mean over t in {0, 0.1, ..., 1} of the highest precision at
   recall >= t (0 when no point reaches t). ``mAP12`` (area AP): the area under the
   precision envelope (running maximum from the right) with sentinel points
   (recall 0, precision 0) and (recall 1, precision 0). ``recall``: the recall at the end
   of the ranked list, i.e. with every prediction kept.

Two width conventions are computed side by side:

* **legacy** (the default, comparable with the published numbers): every width, height,
  area and intersection uses ``x2 - x1 + 1``;
* **strict** (``strict_*`` keys): ``x2 - x1``, matching the half-open boxes of
  :mod:`bafenet.data.sample`.

A 3x3 box against a copy moved 1 px in x has IoU 12/20 = 0.60 (legacy) but 6/12 = 0.50
(strict); see ``docs/metrics.md``.

Tie-breaking (results never depend on the order images are added nor on batching): within
an image, equal scores keep the order the predictions were given in (stable sort); across
images, predictions are ranked by descending score with ties broken by image id (string
order) and then by their rank inside the image. When all scores are distinct this is
exactly the official ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bafenet.errors import BafenetError

EPS = float(np.finfo(np.float32).eps)  # the official guard for recall and precision
UNION_EPS = 1e-6  # the official guard for an empty union in the IoU

CONVENTIONS = ("legacy", "strict")


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, legacy: bool) -> np.ndarray:
    """IoU of every box in ``boxes_a`` (N, 4) with every box in ``boxes_b`` (M, 4) -> (N, M).

    Boxes are ``x1 y1 x2 y2``. ``legacy=True`` adds 1 to every width and height (the
    official ``use_legacy_coordinate``); ``legacy=False`` uses ``x2 - x1``. Computed in
    float32 like the official evaluation so that IoUs at the threshold compare the same way.
    """
    a = np.asarray(boxes_a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float32).reshape(-1, 4)
    extra = np.float32(1.0 if legacy else 0.0)
    area_a = (a[:, 2] - a[:, 0] + extra) * (a[:, 3] - a[:, 1] + extra)  # (N,)
    area_b = (b[:, 2] - b[:, 0] + extra) * (b[:, 3] - b[:, 1] + extra)  # (M,)
    left = np.maximum(a[:, None, 0], b[None, :, 0])  # (N, M)
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    overlap = np.maximum(right - left + extra, 0) * np.maximum(bottom - top + extra, 0)
    union = np.maximum(area_a[:, None] + area_b[None, :] - overlap, np.float32(UNION_EPS))
    return (overlap / union).astype(np.float32)


def match_image(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    gt_boxes: np.ndarray,
    iou_threshold: float = 0.5,
    legacy: bool = True,
) -> np.ndarray:
    """Greedy VOC matching in one image -> (N,) bool, True where the prediction is a TP.

    The result is indexed like the inputs (not sorted). Predictions are visited by
    descending score (stable for ties); each takes the GT of highest IoU (the first one on
    ties); TP if that IoU >= ``iou_threshold`` and the GT is still unmatched, else FP.
    """
    pred_boxes = np.asarray(pred_boxes, dtype=np.float32).reshape(-1, 4)
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
    is_tp = np.zeros(len(pred_boxes), dtype=bool)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return is_tp
    ious = box_iou(pred_boxes, gt_boxes, legacy)  # (N, M)
    best_gt = ious.argmax(axis=1)  # (N,)
    best_iou = ious[np.arange(len(pred_boxes)), best_gt]
    gt_matched = np.zeros(len(gt_boxes), dtype=bool)
    for i in np.argsort(-pred_scores, kind="stable"):
        if best_iou[i] >= iou_threshold and not gt_matched[best_gt[i]]:
            gt_matched[best_gt[i]] = True
            is_tp[i] = True
    return is_tp


def precision_recall(is_tp_ranked: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each prediction of a ranked list (both (K,) float64)."""
    tp = np.cumsum(is_tp_ranked, dtype=np.float64)
    fp = np.cumsum(~np.asarray(is_tp_ranked, dtype=bool), dtype=np.float64)
    recall = tp / max(num_gt, EPS)
    precision = tp / np.maximum(tp + fp, EPS)
    return recall, precision


def best_f1_point(scores: np.ndarray, is_tp_ranked: np.ndarray, num_gt: int) -> dict[str, float | None]:
    """The score threshold that maximises F1 over a ranked list (scores descending).

    A threshold ``s`` keeps every prediction with score >= s, so only the last prediction of
    each group of equal scores is a candidate. Returns ``score_thr``, ``f1``, ``precision``,
    ``recall`` (threshold ``None`` and zeros when nothing is predicted or nothing is to be found).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if not len(scores) or not num_gt:
        return {"score_thr": None, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    recall, precision = precision_recall(is_tp_ranked, num_gt)
    last_of_group = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))
    r, p = recall[last_of_group], precision[last_of_group]
    f1 = np.where(r + p > 0, 2 * p * r / np.maximum(p + r, EPS), 0.0)
    best = int(np.argmax(f1))  # the first (highest threshold) of equal maxima
    return {
        "score_thr": float(scores[last_of_group[best]]),
        "f1": float(f1[best]),
        "precision": float(p[best]),
        "recall": float(r[best]),
    }


def ap_11_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """11-point AP (``mAP07``): mean of the best precision at recall >= 0, 0.1, ..., 1.

    The thresholds are ``np.arange(0, 1 + 1e-3, 0.1)`` exactly as in the official code
    (so 0.3, 0.6 and 0.7 are the float64 values just above them).
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    total = 0.0
    for threshold in np.arange(0, 1 + 1e-3, 0.1):
        reached = precision[recall >= threshold]
        total += float(reached.max()) if reached.size else 0.0
    return total / 11.0


def ap_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area AP (``mAP12``): area under the precision envelope, with sentinel points."""
    recall_ext = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    precision_ext = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    envelope = np.maximum.accumulate(precision_ext[::-1])[::-1]  # running max from the right
    changes = np.flatnonzero(recall_ext[1:] != recall_ext[:-1])
    return float(np.sum((recall_ext[changes + 1] - recall_ext[changes]) * envelope[changes + 1]))


@dataclass
class _ImageRecord:
    """What one image contributes: its predictions in matching order and their TP flags."""

    scores: np.ndarray  # (N,) float64, descending (stable)
    is_tp: dict[str, np.ndarray]  # convention -> (N,) bool, same order as scores
    num_gt: int


class DetectionEvaluator:
    """Accumulates one class's detections image by image; computes VOC AP at the end.

    Example::

        evaluator = DetectionEvaluator(iou_threshold=0.5)
        for image_id, pred_boxes, pred_scores, gt_boxes in results:
            evaluator.add(image_id, pred_boxes, pred_scores, gt_boxes)
        metrics = evaluator.compute()  # {"mAP07": ..., "strict_mAP07": ..., ...}

    Boxes are in one coordinate frame per image (the original image for the official
    protocol). Matching happens in :meth:`add`, so the evaluator keeps only scores and
    TP flags. Evaluators of different processes combine with :meth:`merge`.
    """

    def __init__(self, iou_threshold: float = 0.5) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = float(iou_threshold)
        self._images: dict[str, _ImageRecord] = {}

    def __len__(self) -> int:
        return len(self._images)

    def add(
        self,
        image_id: str,
        pred_boxes: np.ndarray,
        pred_scores: np.ndarray,
        gt_boxes: np.ndarray,
    ) -> None:
        """Add one image: predictions (N, 4) + scores (N,) and ground truth (M, 4).

        Raises:
            BafenetError: if ``image_id`` was already added (ids must be unique).
            ValueError: on malformed arrays (wrong shape, non-finite values).
        """
        image_id = str(image_id)
        if image_id in self._images:
            raise BafenetError(f"image id {image_id!r} added twice to the detection evaluator")
        pred_boxes = _as_boxes(pred_boxes, f"{image_id}: pred_boxes")
        gt_boxes = _as_boxes(gt_boxes, f"{image_id}: gt_boxes")
        pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
        if len(pred_scores) != len(pred_boxes):
            raise ValueError(f"{image_id}: {len(pred_boxes)} pred_boxes but {len(pred_scores)} pred_scores")
        if not np.isfinite(pred_scores).all():
            raise ValueError(f"{image_id}: pred_scores hold NaN or inf")
        order = np.argsort(-pred_scores, kind="stable")
        is_tp = {
            name: match_image(pred_boxes, pred_scores, gt_boxes, self.iou_threshold, name == "legacy")[order]
            for name in CONVENTIONS
        }
        self._images[image_id] = _ImageRecord(pred_scores[order], is_tp, len(gt_boxes))

    def merge(self, other: DetectionEvaluator) -> None:
        """Add every image of ``other`` (e.g. gathered from another rank)."""
        if other.iou_threshold != self.iou_threshold:
            raise ValueError("cannot merge evaluators with different IoU thresholds")
        for image_id, record in other._images.items():
            if image_id in self._images:
                raise BafenetError(f"image id {image_id!r} present in both evaluators")
            self._images[image_id] = record

    def _ranked(self, convention: str) -> tuple[np.ndarray, np.ndarray]:
        """All predictions ranked (scores (K,), TP flags (K,)) with the documented tie-break."""
        ids = sorted(self._images)
        if not ids:
            return np.zeros(0), np.zeros(0, dtype=bool)
        scores = np.concatenate([self._images[i].scores for i in ids])
        is_tp = np.concatenate([self._images[i].is_tp[convention] for i in ids])
        order = np.argsort(-scores, kind="stable")
        return scores[order], is_tp[order]

    @property
    def num_gt(self) -> int:
        return sum(r.num_gt for r in self._images.values())

    def pr_curve(self, convention: str = "legacy") -> dict[str, np.ndarray]:
        """The ranked list as curves: ``score``, ``recall``, ``precision`` (each (K,))."""
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        scores, is_tp = self._ranked(convention)
        recall, precision = precision_recall(is_tp, self.num_gt)
        return {"score": scores, "recall": recall, "precision": precision}

    def compute(self) -> dict[str, float | int]:
        """Scalar metrics for both conventions.

        Keys: ``mAP07``, ``mAP12``, ``recall``, ``precision`` (at the end of the ranked
        list), ``tp``, ``fp``, then the same with a ``strict_`` prefix; the operating point
        that maximises F1 (legacy widths): ``best_f1``, ``best_f1_score_thr``,
        ``best_f1_precision``, ``best_f1_recall``; and ``num_images``, ``num_gt``,
        ``num_pred``, ``iou_threshold``. All AP / recall / precision values are
        fractions in [0, 1]. With no ground truth at all every AP is 0.
        """
        num_gt = self.num_gt
        out: dict[str, float | int] = {}
        for name in CONVENTIONS:
            prefix = "" if name == "legacy" else "strict_"
            _, is_tp = self._ranked(name)
            recall, precision = precision_recall(is_tp, num_gt)
            tp = int(is_tp.sum())
            out[f"{prefix}mAP07"] = ap_11_point(recall, precision) if num_gt else 0.0
            out[f"{prefix}mAP12"] = ap_area(recall, precision) if num_gt else 0.0
            out[f"{prefix}recall"] = float(recall[-1]) if len(recall) else 0.0
            out[f"{prefix}precision"] = float(precision[-1]) if len(precision) else 0.0
            out[f"{prefix}tp"] = tp
            out[f"{prefix}fp"] = int(len(is_tp) - tp)
        scores, is_tp = self._ranked("legacy")
        for key, value in best_f1_point(scores, is_tp, num_gt).items():
            out[f"best_f1_{key}" if key != "f1" else "best_f1"] = value
        out["num_images"] = len(self._images)
        out["num_gt"] = num_gt
        out["num_pred"] = sum(len(r.scores) for r in self._images.values())
        out["iou_threshold"] = self.iou_threshold
        return out

    def per_image(self) -> list[dict[str, str | int]]:
        """Per-image counts over all given predictions, sorted by image id.

        Each row: ``image_id``, ``num_gt``, ``num_pred``, ``tp``, ``fp``, ``fn`` (legacy
        widths) and ``strict_tp``, ``strict_fp``, ``strict_fn``.
        """
        rows: list[dict[str, str | int]] = []
        for image_id in sorted(self._images):
            record = self._images[image_id]
            row: dict[str, str | int] = {
                "image_id": image_id,
                "num_gt": record.num_gt,
                "num_pred": len(record.scores),
            }
            for name in CONVENTIONS:
                prefix = "" if name == "legacy" else "strict_"
                tp = int(record.is_tp[name].sum())
                row[f"{prefix}tp"] = tp
                row[f"{prefix}fp"] = len(record.scores) - tp
                row[f"{prefix}fn"] = record.num_gt - tp
            rows.append(row)
        return rows


def _as_boxes(boxes: np.ndarray, what: str) -> np.ndarray:
    """(N, 4) float32 boxes, or a ValueError naming ``what``."""
    array = np.asarray(boxes, dtype=np.float32)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{what} must have shape (N, 4), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} hold NaN or inf")
    return array
