"""Box files next to masks: how their numbers relate to the masks' targets.

bafenet's boxes are 0-based half-open pixel edges (:mod:`bafenet.data.sample`): a target
over columns ``i..j`` has ``x1 = i, x2 = j + 1``. Box files in other conventions differ from
that by a fixed offset on the four numbers, e.g. SIRST-V2's ``annotations/bboxes`` hold the
mask extent **+1 on all four** (``xmin = i + 1, xmax = j + 2``). :class:`BoxAgreement`
measures the offset by pairing every box with the 8-connected mask component whose tight
box is nearest (within :data:`MATCH_PX` on each number) and counting the differences
``box - component box``. It also counts boxes drawn around several components (SIRST v1
has one box per image around all its targets).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

Offset = tuple[int, int, int, int]
ZERO: Offset = (0, 0, 0, 0)
MATCH_PX = 2
"""A box is paired with a component whose tight box differs by at most this on each number."""
MAJORITY = 0.5
"""An offset shared by more than this share of the paired boxes is the files' convention."""


def signed(offset: Offset) -> str:
    """``(1, 1, 1, 1)`` -> ``"+1 +1 +1 +1"``."""
    return " ".join(f"{value:+d}" for value in offset)


@dataclass
class BoxAgreement:
    """Box files compared with their masks, image by image (:meth:`add`)."""

    offsets: Counter[Offset] = field(default_factory=Counter)  # box - component box, paired boxes
    n_files: int = 0
    n_boxes: int = 0
    n_targets: int = 0  # mask components
    around_several: int = 0  # boxes holding two or more whole components
    files_around_several: int = 0  # files with such a box

    def add(self, boxes: np.ndarray, mask_boxes: np.ndarray) -> None:
        """Compare one file's boxes (N, 4) with its mask's component boxes (M, 4), both x1 y1 x2 y2."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        mask_boxes = np.asarray(mask_boxes, dtype=np.float64).reshape(-1, 4)
        self.n_files += 1
        self.n_boxes += len(boxes)
        self.n_targets += len(mask_boxes)
        around = 0
        for box in boxes:
            offset = nearest_offset(box, mask_boxes)
            if offset is not None:
                self.offsets[offset] += 1
            elif _holds(box, mask_boxes) >= 2:
                around += 1
        self.around_several += around
        self.files_around_several += around > 0

    @property
    def paired(self) -> int:
        return sum(self.offsets.values())

    def convention(self) -> Offset | None:
        """The offset of most paired boxes (more than :data:`MAJORITY` of them), else None."""
        if not self.offsets:
            return None
        offset, count = self.offsets.most_common(1)[0]
        return offset if count > MAJORITY * self.paired else None

    def describe_offset(self) -> str:
        """The most common offset in words: ``"+1 +1 +1 +1 in 40 of 40 paired boxes"``."""
        offset, count = self.offsets.most_common(1)[0]
        return f"{signed(offset)} in {count} of {self.paired} paired boxes"


def nearest_offset(box: np.ndarray, mask_boxes: np.ndarray) -> Offset | None:
    """``box - m`` (integers) for the component box ``m`` nearest to ``box``, if within :data:`MATCH_PX`."""
    if len(mask_boxes) == 0:
        return None
    differences = np.asarray(box, dtype=np.float64)[None, :] - mask_boxes
    worst = np.abs(differences).max(axis=1)
    best = int(np.lexsort((np.abs(differences).sum(axis=1), worst))[0])
    if worst[best] > MATCH_PX or not np.allclose(differences[best], np.round(differences[best])):
        return None
    x1, y1, x2, y2 = (int(round(value)) for value in differences[best])
    return (x1, y1, x2, y2)


def _holds(box: np.ndarray, mask_boxes: np.ndarray) -> int:
    """How many component boxes lie inside ``box`` grown by :data:`MATCH_PX` on each side."""
    x1, y1, x2, y2 = box
    m = MATCH_PX
    inside = (
        (mask_boxes[:, 0] >= x1 - m)
        & (mask_boxes[:, 1] >= y1 - m)
        & (mask_boxes[:, 2] <= x2 + m)
        & (mask_boxes[:, 3] <= y2 + m)
    )
    return int(inside.sum())
