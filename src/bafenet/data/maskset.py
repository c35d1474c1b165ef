"""Reader for mask-only IRSTD datasets (SIRST-V2, SIRST v1, NUDT-SIRST, IRSTD-1k and alike).

These ship images, one binary target mask per image, and split lists, e.g.::

    mixed/Misc_1.png  annotations/masks/Misc_1_pixels0.png  splits/trainval_full.txt  (SIRST-V2)
    images/Misc_1.png   masks/Misc_1_pixels0.png   idx_427/trainval.txt       (SIRST v1)
    IRSTD1k_Img/XDU0.png   IRSTD1k_Label/XDU0.png   trainval.txt, test.txt    (IRSTD-1k)
    images/000001.png   masks/000001.png   img_idx/train_NUDT-SIRST.txt       (NUDT-SIRST)

Where the folders are is decided by :func:`bafenet.data.layouts.detect_layout` (or given).
Boxes and points are derived from the 8-connected components of the mask (tight boxes;
point = the pixel holding the component's centroid, +0.5). With ``boxes="files"`` the
layout's VOC box files are read instead (SIRST-V2's ``annotations/bboxes``), converted by the
offset measured against the masks at opening (SIRST-V2: -1 on all four numbers); points are
then the pixel holding each box's centre. There is no sky annotation, so the sky mask is 255
(unknown) everywhere. Split names are the ``.txt`` files of the layout's split folders, given
relative to the root (``idx_427/trainval``, ``splits/trainval_full``), by file name when that
is unique (``trainval_full``), by a prefix like ``train`` (for ``train_NUDT-SIRST.txt``), or
as a path to a ``.txt`` file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from bafenet.data.boxfiles import ZERO, BoxAgreement, Offset, signed
from bafenet.data.components import mask_components
from bafenet.data.densesirst import IMAGE_SUFFIXES, box_problems, read_split_ids, require_shape
from bafenet.data.imageio import read_label_mask, read_raw, to_gray
from bafenet.data.layouts import Layout, detect_layout
from bafenet.data.sample import Sample
from bafenet.data.voc_xml import parse_voc_xml
from bafenet.errors import DataError

MASK_SUFFIXES = ("", "_pixels0", "_mask", "_gt", "_label")
BOX_SOURCES = ("masks", "files")
OFFSET_PAIRED_BOXES = 20  # boxes-from-files: stop measuring the offset once this many boxes are paired
OFFSET_MAX_FILES = 200  # ... or after this many box files
NO_BOX_FILES = "layout {!r} has no box files; take the boxes from the masks (data.boxes=masks)"
_NOT_SPLITS = ("readme", "license", "licence", "requirements")


def index_image_files(folders: tuple[Path, ...]) -> dict[str, Path]:
    """``stem -> path`` of the image files in ``folders``: the first folder holding a stem wins,
    and within a folder the first suffix in IMAGE_SUFFIXES."""
    index: dict[str, Path] = {}
    for folder in reversed(folders):  # earlier folders overwrite later ones
        index.update(_index_folder(folder))
    return index


def _index_folder(folder: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in folder.iterdir():
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES or not path.is_file():
            continue
        current = index.get(path.stem)
        if current is None or IMAGE_SUFFIXES.index(suffix) < IMAGE_SUFFIXES.index(current.suffix.lower()):
            index[path.stem] = path
    return index


def _detect_suffix(image_stems: list[str], masks: dict[str, Path], mask_dir: Path) -> str:
    counts = [sum(f"{stem}{suffix}" in masks for stem in image_stems) for suffix in MASK_SUFFIXES]
    best = int(np.argmax(counts))
    if counts[best] == 0:
        tried = ", ".join(repr(suffix) for suffix in MASK_SUFFIXES)
        raise DataError(
            mask_dir, f"no mask name matches an image name (tried suffixes {tried}); pass mask_suffix="
        )
    return MASK_SUFFIXES[best]


def split_names(layout: Layout) -> list[str]:
    """Split names of a layout: its split folders' ``.txt`` files, relative to the root, no ``.txt``."""
    files = [path for folder in layout.split_dirs if folder.is_dir() for path in folder.glob("*.txt")]
    names = {path.relative_to(layout.root).with_suffix("").as_posix() for path in files}
    return sorted(name for name in names if not Path(name).name.lower().startswith(_NOT_SPLITS))


def available_splits(root: str | Path) -> list[str]:
    """Split names of a mask-only dataset folder (none when no layout fits it)."""
    try:
        return split_names(detect_layout(root))
    except DataError:
        return []


def resolve_split(layout: Layout, split: str | Path) -> Path:
    """The split file for a name (``idx_427/trainval``, ``trainval_full``, prefix ``train``) or a path."""
    root = layout.root
    text = str(split)
    path = Path(split).expanduser()
    for candidate in (path, root / path, root / f"{text}.txt"):
        if candidate.suffix == ".txt" and candidate.is_file():
            return candidate
    names = split_names(layout)
    for matches in (
        [name for name in names if name == text or Path(name).name == text],
        [name for name in names if Path(name).name.startswith(f"{text}_")],
    ):
        if len(matches) == 1:
            return root / f"{matches[0]}.txt"
        if len(matches) > 1:
            raise DataError(root, f"split {text!r} is ambiguous: {', '.join(matches)}; give one of these")
    listing = ", ".join(names) if names else "none"
    raise DataError(
        root, f"unknown split {text!r}; available splits: {listing} (or give a path to a .txt file)"
    )


class _Cached(NamedTuple):
    image: np.ndarray  # as decoded
    mask_bits: np.ndarray  # bit-packed (H * W,) target mask
    boxes: np.ndarray  # (N, 4) float32
    points: np.ndarray  # (N, 2) float32


class MaskDataset:
    """A mask-only IRSTD dataset as a sequence of :class:`~bafenet.data.sample.Sample`.

    Args:
        root: the dataset folder.
        split: a split name or path (see the module doc), or ``None`` for every image.
        cache: keep the decoded image, packed mask, boxes and points in memory.
        image_dir, mask_dir: the image and mask folders, absolute or relative to ``root``
            (layout ``folders``); default: the layout's.
        mask_suffix: the mask name is ``<stem><mask_suffix>.<ext>`` (default: detected
            among ``""``, ``_pixels0``, ``_mask``, ``_gt``, ``_label``).
        layout: a :class:`Layout`, a layout name, or None to detect it.
        boxes: ``"masks"`` (boxes of the mask components) or ``"files"`` (the layout's box
            files, converted by the offset measured against the masks).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | Path | None = None,
        cache: bool = False,
        image_dir: str | Path | None = None,
        mask_dir: str | Path | None = None,
        mask_suffix: str | None = None,
        *,
        layout: Layout | str | None = None,
        boxes: Literal["masks", "files"] = "masks",
    ) -> None:
        self.root = Path(root)
        self.split = None if split is None else str(split)
        if not isinstance(layout, Layout):
            layout = detect_layout(self.root, layout, image_dir, mask_dir)
        self.layout = layout
        self.image_dirs = layout.image_dirs
        self.mask_dir = layout.mask_dir
        for folder in (*self.image_dirs, self.mask_dir):
            if not folder.is_dir():
                raise DataError(folder, "folder not found")
        self._images = index_image_files(self.image_dirs)
        self._masks = _index_folder(self.mask_dir)
        if not self._images:
            raise DataError(self.image_dir, "no image files")
        if split is None:
            self.split_file: Path | None = None
            self.ids = sorted(self._images)
        else:
            self.split_file = resolve_split(layout, split)
            self.ids = read_split_ids(self.split_file)
            missing = [image_id for image_id in self.ids if image_id not in self._images]
            if missing:
                shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
                folders = ", ".join(str(folder) for folder in self.image_dirs)
                raise DataError(self.split_file, f"{len(missing)} listed image(s) not in {folders}: {shown}")
        if mask_suffix is None:
            mask_suffix = layout.mask_suffix
        if mask_suffix is None:
            mask_suffix = _detect_suffix(self.ids, self._masks, self.mask_dir)
        self.mask_suffix = mask_suffix
        if boxes not in BOX_SOURCES:
            raise DataError(self.root, f"boxes must be one of {', '.join(BOX_SOURCES)}, got {boxes!r}")
        self.boxes = boxes
        self.box_offset: Offset = ZERO if boxes == "masks" else self._measure_box_offset()
        self._cache: dict[str, _Cached] | None = {} if cache else None

    @property
    def image_dir(self) -> Path:
        """The (first) image folder."""
        return self.image_dirs[0]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        return self.load(self.ids[index])

    def __repr__(self) -> str:
        return (
            f"MaskDataset(root={str(self.root)!r}, split={self.split!r}, layout={self.layout.name!r}, "
            f"images={len(self)})"
        )

    def image_path(self, image_id: str) -> Path:
        """The image file of ``image_id``."""
        path = self._images.get(image_id)
        if path is None:
            raise DataError(self.image_dir / f"{image_id}.png", "file not found")
        return path

    def mask_path(self, image_id: str) -> Path:
        """The mask file of ``image_id``."""
        name = f"{image_id}{self.mask_suffix}"
        path = self._masks.get(name)
        if path is None:
            raise DataError(self.mask_dir / f"{name}.png", f"file not found (the mask of image {image_id!r})")
        return path

    def box_path(self, image_id: str) -> Path:
        """The box file of ``image_id`` (layouts with box files only)."""
        path = self.layout.box_file(image_id)
        if path is None:
            raise DataError(self.root, NO_BOX_FILES.format(self.layout.name))
        return path

    def read_mask(self, image_id: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The (H, W) 0/1 target mask of ``image_id``, checked against the image's ``shape``."""
        mask_path = self.mask_path(image_id)
        mask = read_label_mask(mask_path)
        if shape is not None:
            require_shape(mask_path, mask, shape)
        return mask

    def read_box_file(self, image_id: str) -> np.ndarray:
        """(N, 4) float32 boxes of the box file as written (objects without a box skipped)."""
        return parse_voc_xml(self.box_path(image_id), skip_objects_without_box=True).boxes

    def _measure_box_offset(self) -> Offset:
        """The offset of the box files against the masks, over the first images (sorted names)."""
        box_dir = self.layout.box_dir
        if box_dir is None:
            raise DataError(self.root, NO_BOX_FILES.format(self.layout.name))
        agreement = BoxAgreement()
        for image_id in sorted(self._images)[:OFFSET_MAX_FILES]:
            if not self.box_path(image_id).is_file() or f"{image_id}{self.mask_suffix}" not in self._masks:
                continue
            agreement.add(self.read_box_file(image_id), mask_components(self.read_mask(image_id))[0])
            if agreement.paired >= OFFSET_PAIRED_BOXES:
                break
        if agreement.around_several:
            raise DataError(
                box_dir,
                f"{agreement.files_around_several} box file(s) hold a box around several mask targets; "
                "take the boxes from the masks (data.boxes=masks)",
            )
        offset = agreement.convention()
        if offset is None:
            found = agreement.describe_offset() if agreement.offsets else "no box is near a mask target"
            raise DataError(
                box_dir,
                f"the box files follow no single offset from their masks (most often {found}); "
                "take the boxes from the masks (data.boxes=masks)",
            )
        return offset

    def _boxes_from_file(self, image_id: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes of the box file in bafenet's convention, and the centre pixel of each as its point."""
        path = self.box_path(image_id)
        boxes = self.read_box_file(image_id) - np.float32(self.box_offset)
        problems = box_problems(boxes, shape[1], shape[0])
        if problems:
            raise DataError(path, "; ".join(problems) + f" (offset {signed(self.box_offset)} subtracted)")
        points = np.floor((boxes[:, :2] + boxes[:, 2:]) / 2) + 0.5
        return boxes.astype(np.float32), points.astype(np.float32)

    def _read(self, image_id: str) -> _Cached:
        image = read_raw(self.image_path(image_id))
        mask = self.read_mask(image_id, image.shape[:2])
        if self.boxes == "files":
            boxes, points = self._boxes_from_file(image_id, image.shape[:2])
        else:
            boxes, points, _ = mask_components(mask)
        return _Cached(image, np.packbits(mask), boxes, points)

    def load(self, image_id: str) -> Sample:
        """Read one image and its mask as a :class:`Sample`."""
        if self._cache is None:
            record = self._read(image_id)
        else:
            record = self._cache.get(image_id)
            if record is None:
                record = self._cache[image_id] = self._read(image_id)
        shape = record.image.shape[:2]
        mask = np.unpackbits(record.mask_bits, count=shape[0] * shape[1]).reshape(shape)
        return Sample(
            image=to_gray(record.image),
            boxes=record.boxes.copy(),
            target_mask=mask,
            points=record.points.copy(),
            image_id=image_id,
            path=self.image_path(image_id),
        )
