"""Target-level IRSTD metrics for box outputs: probability of detection and false alarms.

Definitions (reference §5.4; field convention of centroid matching):

* A ground-truth target's centroid is its box centre (or the point given with it); a
  prediction's centroid is its box centre.
* In each image, predictions with score >= the score threshold are visited by descending
  score (stable for ties); each one matches the **nearest still unmatched** target whose
  centroid lies at a Euclidean distance strictly below ``max_distance_px`` (3 px, the
  field's ``distance < 3``). A prediction matches at most one target and a target at
  most one prediction.
* ``pd`` = matched targets / all targets (a fraction in [0, 1]).
* False alarms = predictions that matched nothing: reported as a count
  (``false_alarms``), per image (``fa_per_image``) and per megapixel of evaluated image
  area (``fa_per_mpix``, i.e. per 10^6 pixels).

Everything is accumulated over the whole set, so nothing depends on the batch size or
on the order images are added. Because the matching is greedy by score, the matching at a
higher threshold is a prefix of the one at a lower threshold; :meth:`TargetLevelEvaluator.curve`
uses this to give the whole Pd-false-alarm curve from one matching per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bafenet.errors import BafenetError


def box_centers(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) ``x1 y1 x2 y2`` boxes -> (N, 2) ``x y`` centres (pixel-edge coordinates)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def match_centroids(
    pred_centers: np.ndarray,
    pred_scores: np.ndarray,
    gt_centers: np.ndarray,
    max_distance_px: float = 3.0,
) -> np.ndarray:
    """Greedy centroid matching in one image -> (N,) bool, True where a prediction matched.

    Indexed like the inputs. Predictions by descending score (stable); each takes the
    nearest unmatched target (lowest index on equal distances) at distance < ``max_distance_px``.
    """
    pred_centers = np.asarray(pred_centers, dtype=np.float64).reshape(-1, 2)
    gt_centers = np.asarray(gt_centers, dtype=np.float64).reshape(-1, 2)
    matched = np.zeros(len(pred_centers), dtype=bool)
    if len(pred_centers) == 0 or len(gt_centers) == 0:
        return matched
    distance = np.linalg.norm(pred_centers[:, None, :] - gt_centers[None, :, :], axis=2)  # (N, M)
    gt_taken = np.zeros(len(gt_centers), dtype=bool)
    for i in np.argsort(-np.asarray(pred_scores, dtype=np.float64).reshape(-1), kind="stable"):
        candidates = np.where(gt_taken | (distance[i] >= max_distance_px), np.inf, distance[i])
        j = int(candidates.argmin())
        if np.isfinite(candidates[j]):
            gt_taken[j] = True
            matched[i] = True
    return matched


@dataclass
class _ImageRecord:
    scores: np.ndarray  # (N,) float64, descending (stable)
    matched: np.ndarray  # (N,) bool, same order
    num_targets: int
    num_pixels: int


class TargetLevelEvaluator:
    """Accumulates Pd and false alarms over a set of images.

    Example::

        evaluator = TargetLevelEvaluator(max_distance_px=3.0, score_threshold=0.3)
        evaluator.add("img1", pred_boxes, pred_scores, gt_boxes, image_size=(512, 640))
        evaluator.compute()   # {"pd": ..., "fa_per_image": ..., "fa_per_mpix": ..., ...}
        evaluator.curve()     # Pd and false alarms at every distinct score threshold

    ``score_threshold`` is the default operating point of :meth:`compute`; predictions
    below it are ignored there (the curve uses all of them).
    """

    def __init__(self, max_distance_px: float = 3.0, score_threshold: float = 0.3) -> None:
        if max_distance_px <= 0:
            raise ValueError(f"max_distance_px must be > 0, got {max_distance_px}")
        self.max_distance_px = float(max_distance_px)
        self.score_threshold = float(score_threshold)
        self._images: dict[str, _ImageRecord] = {}

    def __len__(self) -> int:
        return len(self._images)

    def add(
        self,
        image_id: str,
        pred_boxes: np.ndarray,
        pred_scores: np.ndarray,
        gt_boxes: np.ndarray,
        image_size: tuple[int, int],
        gt_centers: np.ndarray | None = None,
    ) -> None:
        """Add one image.

        Args:
            image_id: unique id of the image.
            pred_boxes: (N, 4) predicted boxes; pred_scores: (N,) their scores.
            gt_boxes: (M, 4) target boxes (their centres are the target centroids).
            image_size: ``(height, width)`` in pixels of the frame the boxes live in
                (used for ``fa_per_mpix``).
            gt_centers: optional (M, 2) ``x y`` target centroids used instead of box centres.
        """
        image_id = str(image_id)
        if image_id in self._images:
            raise BafenetError(f"image id {image_id!r} added twice to the target-level evaluator")
        pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
        pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
        if len(pred_scores) != len(pred_boxes):
            raise ValueError(f"{image_id}: {len(pred_boxes)} pred_boxes but {len(pred_scores)} pred_scores")
        if not (np.isfinite(pred_scores).all() and np.isfinite(pred_boxes).all()):
            raise ValueError(f"{image_id}: predictions hold NaN or inf")
        if gt_centers is None:
            gt_centers = box_centers(gt_boxes)
        gt_centers = np.asarray(gt_centers, dtype=np.float64).reshape(-1, 2)
        height, width = (int(v) for v in image_size)
        if height <= 0 or width <= 0:
            raise ValueError(f"{image_id}: image_size must be positive (height, width), got {image_size}")
        matched = match_centroids(box_centers(pred_boxes), pred_scores, gt_centers, self.max_distance_px)
        order = np.argsort(-pred_scores, kind="stable")
        self._images[image_id] = _ImageRecord(
            pred_scores[order], matched[order], len(gt_centers), height * width
        )

    def merge(self, other: TargetLevelEvaluator) -> None:
        """Add every image of ``other`` (e.g. gathered from another rank)."""
        if other.max_distance_px != self.max_distance_px:
            raise ValueError("cannot merge evaluators with different matching distances")
        for image_id, record in other._images.items():
            if image_id in self._images:
                raise BafenetError(f"image id {image_id!r} present in both evaluators")
            self._images[image_id] = record

    def _totals(self) -> tuple[int, int, int]:
        records = self._images.values()
        return len(records), sum(r.num_targets for r in records), sum(r.num_pixels for r in records)

    def compute(self, score_threshold: float | None = None) -> dict[str, float | int]:
        """Pd and false alarms at one score threshold (default: the evaluator's).

        Keys: ``pd`` (fraction), ``detected``, ``num_targets``, ``false_alarms`` (count),
        ``fa_per_image`` (false alarms / image), ``fa_per_mpix`` (false alarms / 10^6 px),
        ``num_images``, ``megapixels`` (evaluated area), ``score_threshold``,
        ``max_distance_px``. With no targets ``pd`` is NaN.
        """
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        num_images, num_targets, num_pixels = self._totals()
        detected = false_alarms = 0
        for record in self._images.values():
            kept = record.scores >= threshold
            detected += int(record.matched[kept].sum())
            false_alarms += int((~record.matched[kept]).sum())
        return {
            "pd": detected / num_targets if num_targets else float("nan"),
            "detected": detected,
            "num_targets": num_targets,
            "false_alarms": false_alarms,
            "fa_per_image": false_alarms / num_images if num_images else float("nan"),
            "fa_per_mpix": false_alarms / (num_pixels / 1e6) if num_pixels else float("nan"),
            "num_images": num_images,
            "megapixels": num_pixels / 1e6,
            "score_threshold": threshold,
            "max_distance_px": self.max_distance_px,
        }

    def curve(self) -> dict[str, np.ndarray]:
        """The Pd-false-alarm curve over the score threshold.

        One point per distinct score ``s`` (descending): every prediction with score >= s
        is kept. Keys (each (K,)): ``score_threshold``, ``pd``, ``fa_per_image``,
        ``fa_per_mpix``, ``detected``, ``false_alarms``.
        """
        num_images, num_targets, num_pixels = self._totals()
        if not any(len(r.scores) for r in self._images.values()):  # no image or no prediction
            empty = np.zeros(0)
            return {k: empty for k in ("score_threshold", "pd", "fa_per_image", "fa_per_mpix")} | {
                "detected": np.zeros(0, dtype=np.int64),
                "false_alarms": np.zeros(0, dtype=np.int64),
            }
        scores = np.concatenate([r.scores for r in self._images.values()])
        matched = np.concatenate([r.matched for r in self._images.values()])
        order = np.argsort(-scores, kind="stable")
        scores, matched = scores[order], matched[order]
        detected = np.cumsum(matched, dtype=np.int64)
        false_alarms = np.cumsum(~matched, dtype=np.int64)
        # the last prediction of each group of equal scores closes that threshold's point
        last_of_group = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))
        detected, false_alarms = detected[last_of_group], false_alarms[last_of_group]
        return {
            "score_threshold": scores[last_of_group],
            "pd": detected / num_targets if num_targets else np.full(len(detected), np.nan),
            "fa_per_image": false_alarms / num_images,
            "fa_per_mpix": false_alarms / (num_pixels / 1e6),
            "detected": detected,
            "false_alarms": false_alarms,
        }

    def per_image(self, score_threshold: float | None = None) -> list[dict[str, str | int]]:
        """Per-image ``num_targets``, ``detected``, ``false_alarms`` at one threshold, by image id."""
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        rows: list[dict[str, str | int]] = []
        for image_id in sorted(self._images):
            record = self._images[image_id]
            kept = record.scores >= threshold
            rows.append(
                {
                    "image_id": image_id,
                    "num_targets": record.num_targets,
                    "detected": int(record.matched[kept].sum()),
                    "false_alarms": int((~record.matched[kept]).sum()),
                }
            )
        return rows
