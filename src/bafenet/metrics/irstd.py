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
* Where false alarms happen: each prediction carries the annotated sky value at its box
  centre (:func:`sky_at_centers`: 1 sky, 0 not sky, 255 unknown), so the false alarms are
  also counted in the sky (``false_alarms_in_sky``), off the sky (``false_alarms_off_sky``)
  and where the sky is not annotated (``false_alarms_sky_unknown``);
  ``fa_off_sky_share`` = off-sky / (in-sky + off-sky) false alarms.
* False alarms at a fixed Pd (:meth:`TargetLevelEvaluator.fa_at_pd`) are read off the
  Pd-false-alarm curve by linear interpolation between its neighbouring points.

Everything is accumulated over the whole set, so nothing depends on the batch size or
on the order images are added. Because the matching is greedy by score, the matching at a
higher threshold is a prefix of the one at a lower threshold; :meth:`TargetLevelEvaluator.curve`
uses this to give the whole Pd-false-alarm curve from one matching per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bafenet.errors import BafenetError

SKY, NOT_SKY, SKY_UNKNOWN = 1, 0, 255  # the values of a sample's ``sky_mask``
FIXED_PD = (0.80, 0.85, 0.90)  # the Pd levels of :meth:`TargetLevelEvaluator.fa_at_pd`
FIXED_FA = (1.0, 2.0, 5.0)  # false alarms per Mpx of :meth:`TargetLevelEvaluator.pd_at_fa`


def box_centers(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) ``x1 y1 x2 y2`` boxes -> (N, 2) ``x y`` centres (pixel-edge coordinates)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def sky_at_centers(boxes: np.ndarray, sky_mask: np.ndarray | None) -> np.ndarray:
    """(N,) uint8 value of ``sky_mask`` (H, W) at each box centre: 1 sky, 0 not sky, 255 unknown.

    The centre ``(x, y)`` (pixel-edge coordinates, :func:`box_centers`) lies in pixel
    ``(floor(x), floor(y))``, clipped into the frame; boxes and mask share one frame. Values
    other than 0 and 1, and a missing mask, give 255.
    """
    centers = box_centers(boxes)
    if sky_mask is None:
        return np.full(len(centers), SKY_UNKNOWN, dtype=np.uint8)
    sky_mask = np.asarray(sky_mask)
    height, width = sky_mask.shape
    cols = np.clip(np.floor(centers[:, 0]), 0, width - 1).astype(np.int64)
    rows = np.clip(np.floor(centers[:, 1]), 0, height - 1).astype(np.int64)
    values = sky_mask[rows, cols]
    return np.where(np.isin(values, (SKY, NOT_SKY)), values, SKY_UNKNOWN).astype(np.uint8)


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
    return _greedy_match(pred_centers, pred_scores, gt_centers, max_distance_px)[0]


def targets_found(
    pred_centers: np.ndarray,
    pred_scores: np.ndarray,
    gt_centers: np.ndarray,
    max_distance_px: float = 3.0,
) -> np.ndarray:
    """The same matching as :func:`match_centroids`, seen from the targets: (M,) bool, True
    where a target was detected (indexed like ``gt_centers``)."""
    return _greedy_match(pred_centers, pred_scores, gt_centers, max_distance_px)[1]


def _greedy_match(
    pred_centers: np.ndarray, pred_scores: np.ndarray, gt_centers: np.ndarray, max_distance_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(prediction matched (N,), target taken (M,))`` of the greedy centroid matching."""
    pred_centers = np.asarray(pred_centers, dtype=np.float64).reshape(-1, 2)
    gt_centers = np.asarray(gt_centers, dtype=np.float64).reshape(-1, 2)
    matched = np.zeros(len(pred_centers), dtype=bool)
    gt_taken = np.zeros(len(gt_centers), dtype=bool)
    if len(pred_centers) == 0 or len(gt_centers) == 0:
        return matched, gt_taken
    distance = np.linalg.norm(pred_centers[:, None, :] - gt_centers[None, :, :], axis=2)  # (N, M)
    for i in np.argsort(-np.asarray(pred_scores, dtype=np.float64).reshape(-1), kind="stable"):
        candidates = np.where(gt_taken | (distance[i] >= max_distance_px), np.inf, distance[i])
        j = int(candidates.argmin())
        if np.isfinite(candidates[j]):
            gt_taken[j] = True
            matched[i] = True
    return matched, gt_taken


@dataclass
class _ImageRecord:
    scores: np.ndarray  # (N,) float64, descending (stable)
    matched: np.ndarray  # (N,) bool, same order
    sky: np.ndarray  # (N,) uint8 sky value at the prediction's centre (1 / 0 / 255), same order
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
        pred_sky: np.ndarray | None = None,
    ) -> None:
        """Add one image.

        Args:
            image_id: unique id of the image.
            pred_boxes: (N, 4) predicted boxes; pred_scores: (N,) their scores.
            gt_boxes: (M, 4) target boxes (their centres are the target centroids).
            image_size: ``(height, width)`` in pixels of the frame the boxes live in
                (used for ``fa_per_mpix``).
            gt_centers: optional (M, 2) ``x y`` target centroids used instead of box centres.
            pred_sky: optional (N,) annotated sky value at each prediction's centre
                (:func:`sky_at_centers`); None = unknown for all.
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
        if pred_sky is None:
            pred_sky = np.full(len(pred_scores), SKY_UNKNOWN, dtype=np.uint8)
        pred_sky = np.asarray(pred_sky, dtype=np.uint8).reshape(-1)
        if len(pred_sky) != len(pred_scores):
            raise ValueError(
                f"{image_id}: {len(pred_scores)} predictions but {len(pred_sky)} pred_sky values"
            )
        matched = match_centroids(box_centers(pred_boxes), pred_scores, gt_centers, self.max_distance_px)
        order = np.argsort(-pred_scores, kind="stable")
        self._images[image_id] = _ImageRecord(
            pred_scores[order], matched[order], pred_sky[order], len(gt_centers), height * width
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
        ``false_alarms_in_sky``, ``false_alarms_off_sky``, ``false_alarms_sky_unknown``
        (counts by the annotated sky value at the false alarm's centre), ``fa_off_sky_share``
        (off-sky / annotated false alarms; None when no false alarm is at an annotated place),
        ``num_images``, ``megapixels`` (evaluated area), ``score_threshold``,
        ``max_distance_px``. With no targets ``pd`` is NaN.
        """
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        num_images, num_targets, num_pixels = self._totals()
        detected = 0
        by_sky = dict.fromkeys((SKY, NOT_SKY, SKY_UNKNOWN), 0)
        for record in self._images.values():
            kept = record.scores >= threshold
            detected += int(record.matched[kept].sum())
            alarm_sky = record.sky[kept & ~record.matched]
            for value in by_sky:
                by_sky[value] += int((alarm_sky == value).sum())
        false_alarms = sum(by_sky.values())
        annotated = by_sky[SKY] + by_sky[NOT_SKY]
        return {
            "pd": detected / num_targets if num_targets else float("nan"),
            "detected": detected,
            "num_targets": num_targets,
            "false_alarms": false_alarms,
            "fa_per_image": false_alarms / num_images if num_images else float("nan"),
            "fa_per_mpix": false_alarms / (num_pixels / 1e6) if num_pixels else float("nan"),
            "false_alarms_in_sky": by_sky[SKY],
            "false_alarms_off_sky": by_sky[NOT_SKY],
            "false_alarms_sky_unknown": by_sky[SKY_UNKNOWN],
            "fa_off_sky_share": by_sky[NOT_SKY] / annotated if annotated else None,
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

    def fa_at_pd(self, pd_levels: tuple[float, ...] = FIXED_PD) -> dict[str, float | None]:
        """False alarms per megapixel at fixed Pd levels, interpolated on :meth:`curve`.

        The curve starts at (Pd 0, 0 false alarms), the threshold above every score. For a
        level p, take the first curve point with Pd >= p and the point before it, and
        interpolate the false alarms linearly in Pd between the two (exact when a point has
        Pd = p). Keys ``fa_per_mpix_at_pd_0.85`` etc.; None when the curve never reaches p
        (or the set has no target).
        """
        curve = self.curve()
        pd = np.concatenate([[0.0], curve["pd"]])
        fa = np.concatenate([[0.0], curve["fa_per_mpix"]])
        result: dict[str, float | None] = {}
        for level in pd_levels:
            reached = np.flatnonzero(pd >= level)  # NaN (no target) never reaches
            value = None
            if len(reached):
                k = int(reached[0])
                if k == 0:  # level <= 0
                    value = 0.0
                else:
                    t = (level - pd[k - 1]) / (pd[k] - pd[k - 1])
                    value = float(fa[k - 1] + t * (fa[k] - fa[k - 1]))
            result[f"fa_per_mpix_at_pd_{level:.2f}"] = value
        return result

    def pd_at_fa(self, fa_levels: tuple[float, ...] = FIXED_FA) -> dict[str, float | None]:
        """Pd at fixed false alarms per megapixel, interpolated on :meth:`curve` (the matched
        comparison seen from the other axis of :meth:`fa_at_pd`).

        The curve starts at (Pd 0, 0 false alarms). For a level f, take the last curve point
        with false alarms <= f and the point after it, and interpolate Pd linearly in false
        alarms between the two; past the curve's end, its final Pd (no threshold gives more).
        Keys ``pd_at_fa_per_mpix_1`` etc.; None when the set has no target.
        """
        if not self._totals()[1]:  # no target
            return {f"pd_at_fa_per_mpix_{level:g}": None for level in fa_levels}
        curve = self.curve()
        pd = np.concatenate([[0.0], curve["pd"]])
        fa = np.concatenate([[0.0], curve["fa_per_mpix"]])
        result: dict[str, float | None] = {}
        for level in fa_levels:
            k = int(np.flatnonzero(fa <= level)[-1])  # fa[0] = 0 <= any level
            value = float(pd[k])
            if k + 1 < len(fa):
                t = (level - fa[k]) / (fa[k + 1] - fa[k])
                value = float(pd[k] + t * (pd[k + 1] - pd[k]))
            result[f"pd_at_fa_per_mpix_{level:g}"] = value
        return result

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
