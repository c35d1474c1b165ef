"""Reader for mask-only IRSTD datasets (SIRST v1, IRSTD-1k, NUDT-SIRST and alike).

These ship images, one binary target mask per image, and split lists, e.g.::

    images/Misc_1.png   masks/Misc_1_pixels0.png   idx_427/trainval.txt       (SIRST v1)
    IRSTD1k_Img/XDU0.png   IRSTD1k_Label/XDU0.png   trainval.txt, test.txt    (IRSTD-1k)
    images/000001.png   masks/000001.png   img_idx/train_NUDT-SIRST.txt       (NUDT-SIRST)

Folder names and the mask-name suffix are detected (or given). Boxes and points are
derived from the 8-connected components of the mask (tight boxes; point = the pixel
holding the component's centroid, +0.5); there is no sky annotation, so the sky mask is
255 (unknown) everywhere. Split names are the ``.txt`` files in the root or one folder
down, given as ``trainval``, ``img_idx/train_NUDT-SIRST`` or a prefix like ``train``
(for ``train_NUDT-SIRST.txt``), or a path to a ``.txt`` file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from bafenet.data.components import mask_components
from bafenet.data.densesirst import IMAGE_SUFFIXES, read_split_ids, require_shape
from bafenet.data.imageio import read_label_mask, read_raw, to_gray
from bafenet.data.sample import Sample
from bafenet.errors import DataError

IMAGE_DIR_NAMES = ("images", "image", "imgs", "img", "irstd1k_img", "pngimages")
MASK_DIR_NAMES = ("masks", "mask", "labels", "label", "irstd1k_label", "gt", "groundtruth")
MASK_SUFFIXES = ("", "_pixels0", "_mask", "_gt", "_label")
_NOT_SPLITS = ("readme", "license", "licence", "requirements")


def _find_dir(root: Path, names: tuple[str, ...], hints: tuple[str, ...], what: str, argument: str) -> Path:
    subdirs = {path.name.lower(): path for path in sorted(root.iterdir()) if path.is_dir()}
    for name in names:
        if name in subdirs:
            return subdirs[name]
    guesses = [path for name, path in subdirs.items() if any(hint in name for hint in hints)]
    if len(guesses) == 1:
        return guesses[0]
    looked = ", ".join(f"{name}/" for name in names)
    raise DataError(
        root, f"cannot tell which folder holds the {what} (looked for {looked}); pass {argument}="
    )


def _index_files(folder: Path) -> dict[str, Path]:
    """``stem -> path`` for the image files in a folder (first suffix in IMAGE_SUFFIXES wins)."""
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


def available_splits(root: str | Path) -> list[str]:
    """Split names of a mask-only dataset: ``.txt`` files in ``root`` and one folder down."""
    root = Path(root)
    if not root.is_dir():
        return []
    files = list(root.glob("*.txt")) + list(root.glob("*/*.txt"))
    names = {path.relative_to(root).with_suffix("").as_posix() for path in files}
    return sorted(name for name in names if not Path(name).name.lower().startswith(_NOT_SPLITS))


def resolve_split(root: Path, split: str | Path) -> Path:
    """The split file for a name (``trainval``, ``img_idx/train_NUDT-SIRST``, prefix ``train``) or path."""
    text = str(split)
    path = Path(split).expanduser()
    for candidate in (path, root / path, root / f"{text}.txt"):
        if candidate.suffix == ".txt" and candidate.is_file():
            return candidate
    names = available_splits(root)
    for matches in (
        [name for name in names if Path(name).name == text],
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
        image_dir, mask_dir: folder names under ``root`` (default: detected, e.g.
            ``images``/``masks`` or ``IRSTD1k_Img``/``IRSTD1k_Label``).
        mask_suffix: the mask name is ``<stem><mask_suffix>.<ext>`` (default: detected
            among ``""``, ``_pixels0``, ``_mask``, ``_gt``, ``_label``).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | Path | None = None,
        cache: bool = False,
        image_dir: str | None = None,
        mask_dir: str | None = None,
        mask_suffix: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = None if split is None else str(split)
        if not self.root.is_dir():
            raise DataError(self.root, "dataset folder not found")
        self.image_dir = (
            self.root / image_dir
            if image_dir
            else _find_dir(self.root, IMAGE_DIR_NAMES, ("img", "image"), "images", "image_dir")
        )
        self.mask_dir = (
            self.root / mask_dir
            if mask_dir
            else _find_dir(self.root, MASK_DIR_NAMES, ("mask", "label"), "masks", "mask_dir")
        )
        for folder in (self.image_dir, self.mask_dir):
            if not folder.is_dir():
                raise DataError(folder, "folder not found")
        self._images = _index_files(self.image_dir)
        self._masks = _index_files(self.mask_dir)
        if not self._images:
            raise DataError(self.image_dir, "no image files")
        if split is None:
            self.split_file: Path | None = None
            self.ids = sorted(self._images)
        else:
            self.split_file = resolve_split(self.root, split)
            self.ids = read_split_ids(self.split_file)
            missing = [image_id for image_id in self.ids if image_id not in self._images]
            if missing:
                shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
                raise DataError(
                    self.split_file, f"{len(missing)} listed image(s) not in {self.image_dir}: {shown}"
                )
        if mask_suffix is None:
            mask_suffix = _detect_suffix(self.ids, self._masks, self.mask_dir)
        self.mask_suffix = mask_suffix
        self._cache: dict[str, _Cached] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        return self.load(self.ids[index])

    def __repr__(self) -> str:
        return f"MaskDataset(root={str(self.root)!r}, split={self.split!r}, images={len(self)})"

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

    def _read(self, image_id: str) -> _Cached:
        image = read_raw(self.image_path(image_id))
        mask_path = self.mask_path(image_id)
        mask = read_label_mask(mask_path)
        require_shape(mask_path, mask, image.shape[:2])
        boxes, points, _ = mask_components(mask)
        return _Cached(image, np.packbits(mask), boxes, points)

    def load(self, image_id: str) -> Sample:
        """Read one image and its mask as a :class:`Sample` (boxes and points from the mask)."""
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
