"""Reader for the DenseSIRST devkit layout (``SIRSTdevkit/``).

Per image stem ``S`` (all paths relative to the devkit root)::

    PNGImages/S.png                      the infrared image
    SIRST/BBox/S.xml                     boxes (VOC-like, class "Target", 0-based half-open edges)
    SIRST/BinaryMask/S_pixels0.png       target mask 0/255   (fallback: SIRST/PaletteMask/S.png)
    SIRST/Point_label/S_pixels0.txt      one "x y" pixel index per target, in any order
    SkySeg/PaletteMask/S.png             sky mask, palette indices 0/1 (or SkySeg/BinaryMask/S_pixels0.png)
    Splits/<name>.txt                    one stem per line (no trailing newline), each once

Every file is decoded lazily, one sample at a time; ``cache=True`` keeps the decoded
arrays in memory (raw 8-bit image, bit-packed masks) for the next epoch. The point file's
order is not the box file's order, so points are matched to boxes (point ``i`` lies in
box ``i``). Any missing, unreadable or inconsistent file raises
:class:`~bafenet.errors.DataError` naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from bafenet.data.imageio import read_label_mask, read_raw, to_gray
from bafenet.data.sample import Sample, pixel_points_to_coords
from bafenet.data.voc_xml import parse_voc_xml
from bafenet.errors import DataError

IMAGE_DIR = "PNGImages"
# every folder of a complete devkit (the writers of synthetic devkits create these)
DEVKIT_FOLDERS = (
    IMAGE_DIR,
    "SIRST/BBox",
    "SIRST/BinaryMask",
    "SIRST/PaletteMask",
    "SIRST/Point_label",
    "SkySeg/BinaryMask",
    "SkySeg/PaletteMask",
    "Splits",
)
SPLIT_DIR = "Splits"
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass(frozen=True)
class DevkitFiles:
    """Where each annotation of one image lives (the files may not exist)."""

    image: Path
    boxes: Path
    target_mask: Path
    target_palette: Path
    points: Path
    sky_palette: Path
    sky_mask: Path

    @classmethod
    def of(cls, root: Path, image_id: str) -> DevkitFiles:
        return cls(
            image=root / IMAGE_DIR / f"{image_id}.png",
            boxes=root / "SIRST" / "BBox" / f"{image_id}.xml",
            target_mask=root / "SIRST" / "BinaryMask" / f"{image_id}_pixels0.png",
            target_palette=root / "SIRST" / "PaletteMask" / f"{image_id}.png",
            points=root / "SIRST" / "Point_label" / f"{image_id}_pixels0.txt",
            sky_palette=root / "SkySeg" / "PaletteMask" / f"{image_id}.png",
            sky_mask=root / "SkySeg" / "BinaryMask" / f"{image_id}_pixels0.png",
        )


# ---------------------------------------------------------------------------- splits
def available_splits(root: str | Path) -> list[str]:
    """Names of the split files in ``root/Splits`` (sorted, without ``.txt``)."""
    split_dir = Path(root) / SPLIT_DIR
    if not split_dir.is_dir():
        return []
    return sorted(path.stem for path in split_dir.glob("*.txt"))


def resolve_split(root: Path, split: str | Path) -> Path:
    """The split file for a split name (``train_v2``) or a path to a ``.txt`` file."""
    text = str(split)
    looks_like_path = text.endswith(".txt") or os.sep in text or "/" in text
    if looks_like_path:
        path = Path(split).expanduser()
        if path.is_file():
            return path
        if (root / path).is_file():
            return root / path
        raise DataError(path, "split file not found")
    path = root / SPLIT_DIR / f"{text}.txt"
    if path.is_file():
        return path
    names = available_splits(root)
    listing = ", ".join(names) if names else "none"
    raise DataError(
        root / SPLIT_DIR,
        f"unknown split {text!r}; available splits: {listing} (or give a path to a .txt file)",
    )


def read_split_file(path: Path) -> list[str]:
    """Image stems listed in a split file: one per line, blank lines skipped, extensions dropped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read split file ({exc})") from None
    stems = []
    for line in text.splitlines():
        entry = line.strip()
        if entry:
            stems.append(
                entry[: -len(Path(entry).suffix)] if entry.lower().endswith(IMAGE_SUFFIXES) else entry
            )
    return stems


def is_image_name(entry: str) -> bool:
    """True for a plain image name; False for a path (a folder, ``..``, absolute)."""
    return "/" not in entry and "\\" not in entry and entry not in (".", "..")


def split_entry_problems(ids: list[str]) -> list[str]:
    """One message per split entry that is a path instead of an image name or repeats an earlier one."""
    problems = []
    seen: set[str] = set()
    for image_id in ids:
        if not is_image_name(image_id):
            problems.append(f"{image_id!r} is a path; a split file lists image names only")
        elif image_id in seen:
            problems.append(f"{image_id!r} is listed more than once")
        seen.add(image_id)
    return problems


def read_split_ids(path: Path) -> list[str]:
    """The image names of a split file, each once.

    Raises:
        DataError: naming the file, for an empty list, an entry that is a path, or a repeated
            entry (the first problem; ``bafenet data check`` lists them all).
    """
    ids = read_split_file(path)
    if not ids:
        raise DataError(path, "split file lists no images")
    problems = split_entry_problems(ids)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s): run 'bafenet data check')" if problems[1:] else ""
        raise DataError(path, problems[0] + more)
    return ids


# ---------------------------------------------------------------------------- points
def read_point_file(path: Path) -> np.ndarray:
    """(N, 2) float64 integer pixel indices ``x y``, one line per target, in file order."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read ({exc})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        try:
            if len(fields) != 2:
                raise ValueError
            rows.append([float(fields[0]), float(fields[1])])
        except ValueError:
            raise DataError(path, f"line {number}: expected 'x y', got {line.strip()!r}") from None
    points = np.array(rows, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(points).all():
        raise DataError(path, "non-finite point coordinates")
    return points


def match_points_to_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Indices ``order`` such that ``points[order[i]]`` belongs to box ``i``.

    Points are pixel indices; boxes half-open edges, same count. A one-to-one assignment
    minimising first the distance from the pixel centre to the box (0 inside) and then the
    distance to the box centre, so a point one pixel outside its box still finds it.
    """
    centres = np.asarray(points, dtype=np.float64)[None, :, :] + 0.5  # (1, N, 2)
    boxes = np.asarray(boxes, dtype=np.float64)[:, None, :]  # (N, 1, 4)
    outside = np.maximum(np.maximum(boxes[..., :2] - centres, centres - boxes[..., 2:]), 0.0)
    box_centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    cost = 1000.0 * np.hypot(*outside.transpose(2, 0, 1)) + np.hypot(
        *(centres - box_centres).transpose(2, 0, 1)
    )
    box_index, point_index = linear_sum_assignment(cost)  # box_index is 0..N-1 in order
    return point_index[np.argsort(box_index)]


# ---------------------------------------------------------------------------- checks
def box_problems(boxes: np.ndarray, width: int, height: int) -> list[str]:
    """One message per box that is empty or not inside a ``width`` x ``height`` image."""
    problems = []
    for index, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        text = f"box {index} ({x1:g} {y1:g} {x2:g} {y2:g})"
        if not (x2 > x1 and y2 > y1):
            problems.append(f"{text} is empty")
        elif x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            problems.append(f"{text} is outside the {width}x{height} image")
    return problems


def require_shape(path: Path, array: np.ndarray, shape: tuple[int, int]) -> None:
    """Raise a :class:`DataError` if a mask's (H, W) differs from the image's."""
    if array.shape[:2] != shape:
        got = f"{array.shape[1]}x{array.shape[0]}"
        raise DataError(path, f"size {got} differs from the image's {shape[1]}x{shape[0]}")


def read_first_existing(primary: Path, fallback: Path, palette: bool) -> tuple[np.ndarray, Path]:
    """Read ``primary`` as a 0/1 mask, else ``fallback``; returns the mask and the file read.

    ``palette`` says whether ``primary`` is the palette-index file (then ``fallback`` is the
    0/255 one, and the other way round). When neither exists the error names ``primary``.
    """
    if primary.is_file():
        return read_label_mask(primary, palette=palette), primary
    if fallback.is_file():
        return read_label_mask(fallback, palette=not palette), fallback
    raise DataError(primary, f"file not found (nor {fallback.name} in {fallback.parent})")


# ---------------------------------------------------------------------------- dataset
class _Decoded(NamedTuple):
    image: np.ndarray  # as decoded: (H, W) or (H, W, C), uint8 / uint16 / ...
    boxes: np.ndarray  # (N, 4) float32
    target_mask: np.ndarray  # (H, W) uint8 0/1
    points: np.ndarray  # (N, 2) float32 pixel centres, point i in box i
    sky_mask: np.ndarray  # (H, W) uint8 0/1


class _Packed(NamedTuple):
    image: np.ndarray
    boxes: np.ndarray
    target_bits: np.ndarray
    points: np.ndarray
    sky_bits: np.ndarray

    @classmethod
    def pack(cls, decoded: _Decoded) -> _Packed:
        return cls(
            decoded.image,
            decoded.boxes,
            np.packbits(decoded.target_mask),
            decoded.points,
            np.packbits(decoded.sky_mask),
        )

    def unpack(self) -> _Decoded:
        shape = self.image.shape[:2]
        size = shape[0] * shape[1]
        return _Decoded(
            self.image,
            self.boxes.copy(),
            np.unpackbits(self.target_bits, count=size).reshape(shape),
            self.points.copy(),
            np.unpackbits(self.sky_bits, count=size).reshape(shape),
        )


def read_devkit_sample(files: DevkitFiles) -> _Decoded:
    """Decode and cross-check every annotation of one image; raise :class:`DataError` on a problem."""
    image = read_raw(files.image)
    shape = image.shape[:2]
    annotation = parse_voc_xml(files.boxes)
    if annotation.width is not None and (annotation.height, annotation.width) != shape:
        raise DataError(
            files.boxes,
            f"<size> {annotation.width}x{annotation.height} differs from the image's {shape[1]}x{shape[0]}",
        )
    problems = box_problems(annotation.boxes, shape[1], shape[0])
    if problems:
        raise DataError(files.boxes, "; ".join(problems))
    target_mask, target_path = read_first_existing(files.target_mask, files.target_palette, palette=False)
    require_shape(target_path, target_mask, shape)
    sky_mask, sky_path = read_first_existing(files.sky_palette, files.sky_mask, palette=True)
    require_shape(sky_path, sky_mask, shape)
    pixels = read_point_file(files.points)
    if len(pixels) != len(annotation.boxes):
        raise DataError(
            files.points, f"{len(pixels)} points but {len(annotation.boxes)} boxes in {files.boxes}"
        )
    points = pixel_points_to_coords(pixels[match_points_to_boxes(pixels, annotation.boxes)])
    return _Decoded(image, annotation.boxes, target_mask, points, sky_mask)


class DenseSIRST:
    """The DenseSIRST devkit as a sequence of :class:`~bafenet.data.sample.Sample`.

    Args:
        root: the devkit folder (holding ``PNGImages/``, ``SIRST/``, ``SkySeg/``, ``Splits/``).
        split: a split name (``train_v2``, ``val_v2``, ``test_v2``, ``trainval_v2``,
            ``mini_trainval``, ...), a path to a ``.txt`` list, or ``None`` for every image
            in ``PNGImages/``.
        cache: keep decoded arrays in memory after the first read (about 1.3 bytes per
            pixel: raw 8-bit image plus bit-packed masks).
    """

    def __init__(self, root: str | Path, split: str | Path | None = None, cache: bool = False) -> None:
        self.root = Path(root)
        self.split = None if split is None else str(split)
        image_dir = self.root / IMAGE_DIR
        if not image_dir.is_dir():
            raise DataError(self.root, f"not a DenseSIRST devkit (no {IMAGE_DIR}/ folder)")
        present = {name[:-4] for name in os.listdir(image_dir) if name.endswith(".png")}
        if split is None:
            self.split_file: Path | None = None
            self.ids = sorted(present)
            if not self.ids:
                raise DataError(image_dir, "no .png images")
        else:
            self.split_file = resolve_split(self.root, split)
            self.ids = read_split_ids(self.split_file)
            missing = [image_id for image_id in self.ids if image_id not in present]
            if missing:
                shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
                raise DataError(
                    self.split_file, f"{len(missing)} listed image(s) not in {IMAGE_DIR}/: {shown}"
                )
        self._cache: dict[str, _Packed] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        return self.load(self.ids[index])

    def __repr__(self) -> str:
        return f"DenseSIRST(root={str(self.root)!r}, split={self.split!r}, images={len(self)})"

    def files(self, image_id: str) -> DevkitFiles:
        """The annotation file paths of one image."""
        return DevkitFiles.of(self.root, image_id)

    def load(self, image_id: str) -> Sample:
        """Read one image and all its annotations as a :class:`Sample`."""
        files = self.files(image_id)
        if self._cache is None:
            decoded = read_devkit_sample(files)
        else:
            packed = self._cache.get(image_id)
            if packed is None:
                packed = self._cache[image_id] = _Packed.pack(read_devkit_sample(files))
            decoded = packed.unpack()
        return Sample(
            image=to_gray(decoded.image),
            boxes=decoded.boxes,
            target_mask=decoded.target_mask,
            points=decoded.points,
            sky_mask=decoded.sky_mask,
            image_id=image_id,
            path=files.image,
        )
