"""Targets from a binary mask: 8-connected components -> boxes, points, label image."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def mask_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a target mask into 8-connected components.

    Args:
        mask: (H, W) array; any non-zero pixel is a target pixel.

    Returns:
        ``boxes`` (N, 4) float32: tight half-open boxes ``x1 y1 x2 y2`` (pixel edges);
        ``points`` (N, 2) float32: ``floor(centroid) + 0.5``, the centre of the pixel that
        holds the component's centroid (how DenseSIRST's point labels were made);
        ``labels`` (H, W) int32: 0 background, ``i + 1`` for component ``i``.
        Components are in raster order of their first pixel.
    """
    labels, count = ndimage.label(np.asarray(mask) != 0, structure=EIGHT_CONNECTED)
    labels = labels.astype(np.int32, copy=False)
    if count == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0, 2), np.float32), labels
    slices = ndimage.find_objects(labels)
    boxes = np.array([[sx.start, sy.start, sx.stop, sy.stop] for sy, sx in slices], dtype=np.float32)
    points = np.empty((count, 2), dtype=np.float32)
    for index, (sy, sx) in enumerate(slices):
        ys, xs = np.nonzero(labels[sy, sx] == index + 1)  # within the component's box
        points[index] = (np.floor(xs.mean()) + sx.start + 0.5, np.floor(ys.mean()) + sy.start + 0.5)
    return boxes, points, labels
