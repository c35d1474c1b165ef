"""The one sample type used everywhere, and the box convention, in one place.

Conventions (all readers produce them, all transforms keep them):

* ``image``: (H, W) float32, grey levels on the 8-bit scale [0, 255]. See
  :func:`bafenet.data.imageio.to_gray` for how 8/16-bit grey and RGB(A) files are converted.
* ``boxes``: (N, 4) float32, ``x1 y1 x2 y2`` in **pixel-edge** coordinates, half-open:
  a box covering pixel columns ``i .. j`` (inclusive, 0-based) has ``x1 = i`` and
  ``x2 = j + 1``; width = ``x2 - x1`` with no "+1". DenseSIRST's VOC XML numbers are
  already 0-based half-open edges (``xmin .. xmax``), so they are used unchanged:
  ``<xmin>203</xmin><xmax>206</xmax>`` is a 3-px-wide box over columns 203, 204, 205.
* ``target_mask``: (H, W) uint8, 1 on target pixels, 0 elsewhere.
* ``points``: (N, 2) float32, ``x y`` in the same continuous coordinates; point ``i``
  belongs to box ``i``. A file's integer pixel index ``(x, y)`` becomes the pixel centre
  ``(x + 0.5, y + 0.5)``, so flips and resizes treat points exactly like box corners.
* ``sky_mask``: (H, W) uint8, 1 sky, 0 not sky, 255 unknown (ignored by losses/metrics).
* ``image_id``: the file stem; ``path``: the image file it came from (``None`` if made
  in memory).
* ``geometry``: how the sample's coordinates map back to the file's pixels
  (:class:`bafenet.data.transforms.Geometry`, set by the transforms; ``None`` = untouched).
* ``context``: optional low-resolution view of the whole frame a crop came from
  (:class:`bafenet.data.transforms.FrameContext`, for sky-context models; ``None`` = none).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SKY = 1
NOT_SKY = 0
UNKNOWN = 255


def voc_to_boxes(values: np.ndarray) -> np.ndarray:
    """Convert VOC ``xmin ymin xmax ymax`` numbers of DenseSIRST to sample boxes.

    The numbers are 0-based half-open pixel edges, so this is the identity (as float32);
    it exists so that the convention is stated and tested in one place. No "-1".
    """
    return np.asarray(values, dtype=np.float32).reshape(-1, 4)


def pixel_points_to_coords(values: np.ndarray) -> np.ndarray:
    """Integer pixel indices ``(x, y)`` -> continuous pixel-centre coordinates (+0.5)."""
    return np.asarray(values, dtype=np.float32).reshape(-1, 2) + 0.5


def box_sizes(boxes: np.ndarray) -> np.ndarray:
    """(N, 2) widths and heights of half-open boxes (no "+1")."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)


def _empty(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@dataclass
class Sample:
    """One annotated infrared image. See the module docstring for the conventions."""

    image: np.ndarray
    boxes: np.ndarray = field(default_factory=lambda: _empty((0, 4), np.float32))
    target_mask: np.ndarray | None = None
    points: np.ndarray = field(default_factory=lambda: _empty((0, 2), np.float32))
    sky_mask: np.ndarray | None = None
    image_id: str = ""
    path: Path | None = None
    geometry: Any = None  # bafenet.data.transforms.Geometry once transformed
    context: Any = None  # bafenet.data.transforms.FrameContext (sky-context training only)

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image, dtype=np.float32)
        if self.image.ndim != 2:
            raise ValueError(f"{self.image_id or 'sample'}: image must be (H, W), got {self.image.shape}")
        h, w = self.image.shape
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
        if self.target_mask is None:
            self.target_mask = _empty((h, w), np.uint8)
        if self.sky_mask is None:
            self.sky_mask = np.full((h, w), UNKNOWN, dtype=np.uint8)
        self.target_mask = np.asarray(self.target_mask, dtype=np.uint8)
        self.sky_mask = np.asarray(self.sky_mask, dtype=np.uint8)
        for name in ("target_mask", "sky_mask"):
            shape = getattr(self, name).shape
            if shape != (h, w):
                raise ValueError(f"{self.image_id or 'sample'}: {name} is {shape}, image is {(h, w)}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def num_targets(self) -> int:
        return int(self.boxes.shape[0])

    def replace(self, **changes: object) -> Sample:
        """A new sample with some fields replaced (arrays are not copied)."""
        return dataclasses.replace(self, **changes)

    def copy(self) -> Sample:
        """A deep copy of all arrays."""
        return Sample(
            image=self.image.copy(),
            boxes=self.boxes.copy(),
            target_mask=self.target_mask.copy(),
            points=self.points.copy(),
            sky_mask=self.sky_mask.copy(),
            image_id=self.image_id,
            path=self.path,
            geometry=self.geometry,
            context=self.context,
        )
