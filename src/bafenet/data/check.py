"""``bafenet data check``: validate every file of a dataset, collecting problems instead of stopping.

For a DenseSIRST devkit, per image (every file the reader uses, and its twin where both exist):

* the image, target masks (``BinaryMask`` and ``PaletteMask``), sky masks and point file
  exist and decode (a truncated PNG is caught by decoding it fully);
* the box file parses safely and its ``<size>``, the masks and the image agree in size;
* boxes are non-empty and inside the image;
* boxes agree with the target mask: every box holds at least one target pixel and every
  8-connected mask component touches at least one box. (Exact extents are not required:
  in the release 17 % of boxes differ from their component's extent where neighbouring
  targets touch, and a few are 1 px off; a box moved off its target fails both rules.)
* the two versions of a mask (binary / palette) agree pixel for pixel;
* there are as many points as boxes, and after matching each point lies in its box or at
  most 1 px outside it (one released point sits 1 px outside its box);
* split entries are image names (not paths), exist and are not repeated.

For a mask-only dataset: images and masks exist, decode and agree in size; split entries as above.
The unused RectLabel metadata files (``*/BinaryMask/<id>.xml``) are not read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from bafenet.data import is_devkit
from bafenet.data.components import mask_components
from bafenet.data.densesirst import (
    IMAGE_DIR,
    DevkitFiles,
    box_problems,
    is_image_name,
    match_points_to_boxes,
    read_point_file,
    read_split_file,
    resolve_split,
    split_entry_problems,
)
from bafenet.data.imageio import read_label_mask, read_raw
from bafenet.data.maskset import MaskDataset
from bafenet.data.maskset import resolve_split as resolve_mask_split
from bafenet.data.voc_xml import parse_voc_xml
from bafenet.errors import DataError

POINT_TOLERANCE_PX = 1
T = TypeVar("T")


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`: one line per problem, each starting with a file path."""

    problems: list[str] = field(default_factory=list)
    n_images: int = 0
    n_targets: int = 0


class _Problems(list):
    """A list of problem lines that can run a reader and keep its :class:`DataError`."""

    def attempt(self, read: Callable[..., T], *args: object) -> T | None:
        try:
            return read(*args)
        except DataError as exc:
            self.append(str(exc))
            return None
        except Exception as exc:  # e.g. Pillow's DecompressionBombError: report, go on
            self.append(f"{args[0]}: cannot read ({type(exc).__name__}: {exc})")
            return None


def check_dataset(root: Path, split: str | None) -> CheckReport:
    """Validate a dataset folder (devkit or mask-only), optionally one split. Never raises on bad files."""
    root = Path(root)
    try:
        if not root.is_dir():
            raise DataError(root, "dataset folder not found")
        if is_devkit(root):
            return _check_devkit(root, split)
        return _check_maskset(root, split)
    except DataError as exc:  # the dataset as a whole could not be opened
        return CheckReport(problems=[str(exc)])


# ---------------------------------------------------------------------------- shared
def _split_ids(
    root: Path,
    split: str | None,
    resolve: Callable[[Path, str], Path],
    all_ids: list[str],
    present: set[str],
    folder: Path,
    problems: _Problems,
) -> list[str]:
    """The ids to check: every image, or a split's entries (paths, repeated and missing ones reported)."""
    if split is None:
        return all_ids
    split_file = resolve(root, split)
    entries = read_split_file(split_file)
    if not entries:
        problems.append(f"{split_file}: split file lists no images")
    problems.extend(f"{split_file}: {text}" for text in split_entry_problems(entries))
    ids = []
    for image_id in dict.fromkeys(entries):  # each once, in file order
        if not is_image_name(image_id):
            continue  # reported above
        if image_id in present:
            ids.append(image_id)
        else:
            problems.append(f"{split_file}: lists {image_id!r}, which has no image in {folder}")
    return ids


def _progress(ids: list[str]) -> tqdm:
    return tqdm(ids, desc="check", unit="img", disable=None, leave=False)


# ---------------------------------------------------------------------------- devkit
def _check_devkit(root: Path, split: str | None) -> CheckReport:
    image_dir = root / IMAGE_DIR
    present = {name[:-4] for name in os.listdir(image_dir) if name.endswith(".png")}
    problems = _Problems()
    ids = _split_ids(root, split, resolve_split, sorted(present), present, image_dir, problems)
    n_targets = 0
    for image_id in _progress(ids):
        n_targets += _check_devkit_image(DevkitFiles.of(root, image_id), problems)
    return CheckReport(problems=list(problems), n_images=len(ids), n_targets=n_targets)


def _check_devkit_image(files: DevkitFiles, problems: _Problems) -> int:
    """Append the problems of one image; return its number of boxes (0 if unreadable)."""
    image = problems.attempt(read_raw, files.image)
    shape = None if image is None else image.shape[:2]
    annotation = problems.attempt(parse_voc_xml, files.boxes)
    boxes = None if annotation is None else annotation.boxes
    if annotation is not None and shape is not None:
        if annotation.width is not None and (annotation.height, annotation.width) != shape:
            problems.append(
                f"{files.boxes}: <size> {annotation.width}x{annotation.height} differs from "
                f"the image's {shape[1]}x{shape[0]}"
            )
        bad_boxes = box_problems(boxes, shape[1], shape[0])
        problems.extend(f"{files.boxes}: {text}" for text in bad_boxes)
        if bad_boxes:
            boxes = None  # no geometry checks with broken boxes
    target = _read_mask_pair(files.target_mask, files.target_palette, False, shape, problems)
    _read_mask_pair(files.sky_palette, files.sky_mask, True, shape, problems)
    if target is not None and boxes is not None:
        _check_boxes_against_mask(files, boxes, target, problems)
    pixels = problems.attempt(read_point_file, files.points)
    if pixels is not None and boxes is not None:
        _check_points(files, boxes, pixels, problems)
    return 0 if annotation is None else len(annotation.boxes)


def _read_mask_pair(
    primary: Path, twin: Path, primary_is_palette: bool, shape: tuple[int, int] | None, problems: _Problems
) -> np.ndarray | None:
    """Decode a mask and its twin (binary / palette) where present; report size and content mismatches."""
    masks: list[tuple[Path, np.ndarray]] = []
    for path, palette in ((primary, primary_is_palette), (twin, not primary_is_palette)):
        if not path.is_file():
            continue
        mask = problems.attempt(read_label_mask, path, palette)
        if mask is None:
            continue
        if shape is not None and mask.shape != shape:
            problems.append(
                f"{path}: size {mask.shape[1]}x{mask.shape[0]} differs from the image's {shape[1]}x{shape[0]}"
            )
            continue
        masks.append((path, mask))
    if not primary.is_file() and not twin.is_file():
        problems.append(f"{primary}: file not found (nor {twin.name} in {twin.parent})")
    if len(masks) == 2 and not np.array_equal(masks[0][1], masks[1][1]):
        differ = int(np.count_nonzero(masks[0][1] != masks[1][1]))
        problems.append(f"{masks[1][0]}: differs from {masks[0][0].name} in {differ} pixel(s)")
    return masks[0][1] if masks else None


def _check_boxes_against_mask(
    files: DevkitFiles, boxes: np.ndarray, target: np.ndarray, problems: _Problems
) -> None:
    """Every box holds a target pixel; every mask component touches a box."""
    covered = np.zeros(target.shape, dtype=bool)
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        rows = slice(int(np.floor(y1)), int(np.ceil(y2)))
        cols = slice(int(np.floor(x1)), int(np.ceil(x2)))
        covered[rows, cols] = True
        if not target[rows, cols].any():
            problems.append(
                f"{files.boxes}: box {index} ({x1:g} {y1:g} {x2:g} {y2:g}) holds no target pixel of the mask"
            )
    component_boxes, _, labels = mask_components(target)
    touched = np.zeros(len(component_boxes) + 1, dtype=bool)
    touched[labels[covered]] = True
    for index in np.flatnonzero(~touched[1:]):
        x1, y1, x2, y2 = component_boxes[index]
        problems.append(
            f"{files.target_mask}: target pixels at x {x1:g}..{x2 - 1:g}, y {y1:g}..{y2 - 1:g} are in no box "
            f"of {files.boxes.name}"
        )


def _check_points(files: DevkitFiles, boxes: np.ndarray, pixels: np.ndarray, problems: _Problems) -> None:
    """As many points as boxes; after matching, each point in its box (1 px tolerance)."""
    if len(pixels) != len(boxes):
        problems.append(f"{files.points}: {len(pixels)} points but {len(boxes)} boxes in {files.boxes.name}")
        return
    matched = pixels[match_points_to_boxes(pixels, boxes)]
    tol = POINT_TOLERANCE_PX
    for index, ((x, y), (x1, y1, x2, y2)) in enumerate(zip(matched, boxes, strict=True)):
        if not (x1 - tol <= x < x2 + tol and y1 - tol <= y < y2 + tol):
            problems.append(
                f"{files.points}: point ({x:g}, {y:g}) is more than {tol} px outside its box "
                f"(box {index}: {x1:g} {y1:g} {x2:g} {y2:g})"
            )


# ---------------------------------------------------------------------------- mask-only
def _check_maskset(root: Path, split: str | None) -> CheckReport:
    dataset = MaskDataset(root)  # every image: folders and mask suffix
    problems = _Problems()
    present = set(dataset.ids)
    ids = _split_ids(root, split, resolve_mask_split, dataset.ids, present, dataset.image_dir, problems)
    n_targets = 0
    for image_id in _progress(ids):
        image = problems.attempt(read_raw, dataset.image_path(image_id))
        mask_path = problems.attempt(dataset.mask_path, image_id)
        mask = None if mask_path is None else problems.attempt(read_label_mask, mask_path)
        if image is None or mask is None:
            continue
        if mask.shape != image.shape[:2]:
            problems.append(
                f"{mask_path}: size {mask.shape[1]}x{mask.shape[0]} differs from the image's "
                f"{image.shape[1]}x{image.shape[0]}"
            )
            continue
        n_targets += len(mask_components(mask)[0])
    return CheckReport(problems=list(problems), n_images=len(ids), n_targets=n_targets)
