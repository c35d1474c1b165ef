"""Sky-segmentation metrics accumulated over a whole set (not a mean of per-image values).

Pixels labelled 255 (unknown) are ignored. For each class c in {not sky = 0, sky = 1}:
IoU_c = (pixels predicted c and labelled c) / (pixels predicted c or labelled c), with
both counts summed over all images before dividing. ``mean_iou`` is the mean of the two
class IoUs; ``pixel_accuracy`` = correctly classified / labelled pixels. A class that
never occurs in predictions or labels has IoU NaN and is left out of the mean.
"""

from __future__ import annotations

import numpy as np

IGNORE = 255
CLASS_NAMES = ("not_sky", "sky")  # index = label value


class SkyIoU:
    """Dataset-level IoU of a binary sky segmentation.

    Example::

        metric = SkyIoU()
        metric.add(pred_sky, sky_mask)   # (H, W) 0/1 prediction, (H, W) 0/1/255 labels
        metric.compute()                 # {"sky_iou": ..., "not_sky_iou": ..., ...}
    """

    def __init__(self, ignore_index: int = IGNORE) -> None:
        self.ignore_index = ignore_index
        self.confusion = np.zeros((2, 2), dtype=np.int64)  # [label, prediction] pixel counts
        self.num_images = 0

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one image: ``pred`` (H, W) with values 0/1 (or bool), ``target`` (H, W) 0/1/ignore."""
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from label shape {target.shape}")
        pred = pred.astype(np.int64)
        target = target.astype(np.int64)
        valid = target != self.ignore_index
        if not np.isin(target[valid], (0, 1)).all():
            raise ValueError(f"labels must be 0, 1 or {self.ignore_index}, got {np.unique(target).tolist()}")
        if not np.isin(pred, (0, 1)).all():
            raise ValueError(f"predictions must be 0 or 1, got {np.unique(pred).tolist()}")
        counts = np.bincount(target[valid] * 2 + pred[valid], minlength=4)
        self.confusion += counts.reshape(2, 2)
        self.num_images += 1

    def merge(self, other: SkyIoU) -> None:
        """Add the counts of ``other`` (e.g. gathered from another rank)."""
        self.confusion += other.confusion
        self.num_images += other.num_images

    def compute(self) -> dict[str, float | int]:
        """``sky_iou``, ``not_sky_iou``, ``mean_iou``, ``pixel_accuracy`` (fractions) and counts."""
        intersection = np.diag(self.confusion).astype(np.float64)  # (2,)
        union = self.confusion.sum(axis=0) + self.confusion.sum(axis=1) - intersection
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, intersection / union, np.nan)
        labelled = int(self.confusion.sum())
        present = iou[~np.isnan(iou)]
        return {
            "sky_iou": float(iou[1]),
            "not_sky_iou": float(iou[0]),
            "mean_iou": float(present.mean()) if present.size else float("nan"),
            "pixel_accuracy": float(intersection.sum() / labelled) if labelled else float("nan"),
            "labelled_pixels": labelled,
            "num_images": self.num_images,
        }
