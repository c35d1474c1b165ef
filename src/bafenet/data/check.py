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
* split entries are image names (not paths), exist and are not repeated;
* the box files as a whole follow bafenet's convention (0-based half-open pixel edges): the
  most common difference between a box and its mask component, when most boxes share it,
  must be zero (:mod:`bafenet.data.boxfiles`), and no box may hold several components.

For a mask-only dataset (any layout of :mod:`bafenet.data.layouts`): images and masks exist,
decode and agree in size; split entries as above. Where the layout has box files (SIRST-V2,
SIRST v1), they are parsed and compared with the masks: a convention other than bafenet's
is a problem line naming the offset found (SIRST-V2: +1 on all four numbers); boxes around
several targets (SIRST v1) and box numbers without one convention are notes, since boxes
come from the masks. Notes also name the layout read and the unusable samples (those that
``bafenet train`` and ``val`` refuse, or leave out with ``--skip-invalid``).
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

from bafenet.data.boxfiles import ZERO, BoxAgreement, signed
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
from bafenet.data.layouts import Layout, detect_layout
from bafenet.data.maskset import MaskDataset
from bafenet.data.maskset import resolve_split as resolve_mask_split
from bafenet.data.screen import SKIP_HINT
from bafenet.data.voc_xml import parse_voc_xml
from bafenet.errors import DataError

POINT_TOLERANCE_PX = 1
T = TypeVar("T")


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`: one line per problem, each starting with a file path,
    and notes (facts worth knowing that are not problems)."""

    problems: list[str] = field(default_factory=list)
    n_images: int = 0
    n_targets: int = 0
    notes: list[str] = field(default_factory=list)


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


def check_dataset(
    root: Path,
    split: str | None,
    *,
    layout: str | None = None,
    images: str | Path | None = None,
    masks: str | Path | None = None,
) -> CheckReport:
    """Validate a dataset folder (devkit or mask-only), optionally one split. Never raises on bad files.

    ``layout``, ``images``, ``masks``: as for :func:`bafenet.data.open_dataset`.
    """
    root = Path(root)
    try:
        found = detect_layout(root, layout, images, masks)
        if found.is_devkit:
            return _check_devkit(root, split)
        return _check_maskset(found, split)
    except DataError as exc:  # the dataset as a whole could not be opened
        return CheckReport(problems=[str(exc)])


# ---------------------------------------------------------------------------- shared
def _split_ids(
    split: str | None,
    resolve: Callable[[str], Path],
    all_ids: list[str],
    present: set[str],
    folder: str,
    problems: _Problems,
) -> list[str]:
    """The ids to check: every image, or a split's entries (paths, repeated and missing ones reported)."""
    if split is None:
        return all_ids
    split_file = resolve(split)
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
    ids = _split_ids(
        split, lambda name: resolve_split(root, name), sorted(present), present, str(image_dir), problems
    )
    n_targets = 0
    agreement = BoxAgreement()
    for image_id in _progress(ids):
        n_targets += _check_devkit_image(DevkitFiles.of(root, image_id), problems, agreement)
    box_dir = root / "SIRST" / "BBox"
    offset = agreement.convention()
    if offset is not None and offset != ZERO:
        problems.append(
            f"{box_dir}: {_offset_words(agreement)}; the devkit reader uses the numbers as they are, "
            "so every box misses its target by that much: subtract the offset from the files"
        )
    if agreement.around_several:
        problems.append(f"{box_dir}: {_around_words(agreement)}; a devkit needs one box per target")
    return CheckReport(problems=list(problems), n_images=len(ids), n_targets=n_targets)


def _offset_words(agreement: BoxAgreement) -> str:
    offset, count = agreement.offsets.most_common(1)[0]
    return (
        f"box numbers (x1 y1 x2 y2) are the mask extent {signed(offset)} in {count} of the "
        f"{agreement.paired} boxes paired with a mask target, not 0-based half-open pixel edges"
    )


def _around_words(agreement: BoxAgreement) -> str:
    counts = f"{agreement.n_boxes} boxes for {agreement.n_targets} mask targets"
    if agreement.n_boxes == agreement.n_files:
        return (
            f"every box file holds one box ({counts}): in {agreement.files_around_several} of "
            f"{agreement.n_files} it surrounds several targets"
        )
    return (
        f"{agreement.files_around_several} of {agreement.n_files} box files hold a box around "
        f"several targets ({counts})"
    )


def _check_devkit_image(files: DevkitFiles, problems: _Problems, agreement: BoxAgreement) -> int:
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
        component_boxes, _, labels = mask_components(target)
        _check_boxes_against_mask(files, boxes, target, component_boxes, labels, problems)
        agreement.add(boxes, component_boxes)
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
    files: DevkitFiles,
    boxes: np.ndarray,
    target: np.ndarray,
    component_boxes: np.ndarray,
    labels: np.ndarray,
    problems: _Problems,
) -> None:
    """Every box holds a target pixel; every mask component (``labels``, boxes) touches a box."""
    covered = np.zeros(target.shape, dtype=bool)
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        rows = slice(int(np.floor(y1)), int(np.ceil(y2)))
        cols = slice(int(np.floor(x1)), int(np.ceil(x2)))
        covered[rows, cols] = True
        if not target[rows, cols].any():
            problems.append(
                f"{files.boxes}: box {index} ({x1:g} {y1:g} {x2:g} {y2:g}) holds no target pixel of the mask"
            )
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
def _check_maskset(layout: Layout, split: str | None) -> CheckReport:
    dataset = MaskDataset(layout.root, layout=layout)  # every image: folders and mask suffix
    problems = _Problems()
    present = set(dataset.ids)
    folders = ", ".join(str(folder) for folder in dataset.image_dirs)
    ids = _split_ids(
        split, lambda name: resolve_mask_split(layout, name), dataset.ids, present, folders, problems
    )
    n_targets = 0
    unusable: list[str] = []
    agreement = BoxAgreement()
    no_box_file: list[str] = []
    for image_id in _progress(ids):
        image = problems.attempt(read_raw, dataset.image_path(image_id))
        mask_path = problems.attempt(dataset.mask_path, image_id)
        mask = None if mask_path is None else problems.attempt(read_label_mask, mask_path)
        component_boxes = None if mask is None else mask_components(mask)[0]
        box_file = layout.box_file(image_id)
        if box_file is not None and not box_file.is_file():
            no_box_file.append(image_id)
        elif box_file is not None:
            annotation = problems.attempt(_read_box_file, box_file)
            if annotation is not None and component_boxes is not None:
                agreement.add(annotation, component_boxes)  # both in the mask's frame
        if image is None or mask is None:
            unusable.append(image_id)  # reported by problems.attempt
        elif mask.shape != image.shape[:2]:
            unusable.append(image_id)
            problems.append(
                f"{mask_path}: size {mask.shape[1]}x{mask.shape[0]} differs from the image's "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        else:
            n_targets += len(component_boxes)
    notes = [_layout_words(dataset)]
    if layout.box_dir is not None:
        box_lines, box_notes = _box_file_lines(layout.box_dir, agreement, no_box_file)
        problems.extend(box_lines)
        notes += box_notes
    if unusable:
        notes.append(
            f"{len(unusable)} unusable sample(s): {', '.join(unusable)} (bafenet train and val stop "
            f"at them; {SKIP_HINT})"
        )
    return CheckReport(problems=list(problems), n_images=len(ids), n_targets=n_targets, notes=notes)


def _read_box_file(path: Path) -> np.ndarray:
    return parse_voc_xml(path, skip_objects_without_box=True).boxes


def _layout_words(dataset: MaskDataset) -> str:
    """The layout read, in one line."""
    layout = dataset.layout
    root = layout.root

    def rel(path: Path) -> str:
        return f"{path.relative_to(root)}/" if path.is_relative_to(root) else f"{path}/"

    images = ", ".join(rel(folder) for folder in layout.image_dirs)
    with_lists = [folder for folder in layout.split_dirs if folder.is_dir() and any(folder.glob("*.txt"))]
    splits = ", ".join(rel(folder) for folder in with_lists) or "none"
    boxes = f", box files {rel(layout.box_dir)}*.xml" if layout.box_dir is not None else ""
    return (
        f"{root}: read as layout {layout.name}: images {images}, masks {rel(layout.mask_dir)}"
        f"<name>{dataset.mask_suffix}.png{boxes}, split lists in {splits}"
    )


def _box_file_lines(
    box_dir: Path, agreement: BoxAgreement, no_box_file: list[str]
) -> tuple[list[str], list[str]]:
    """Problem lines and notes about a mask set's box files (which bafenet does not use by default)."""
    problems, notes = [], []
    offset = agreement.convention()
    from_masks = "bafenet takes the boxes from the masks"
    if offset is not None and offset != ZERO:
        problems.append(
            f"{box_dir}: {_offset_words(agreement)}; {from_masks} (with data.boxes=files it subtracts "
            f"{signed(offset)})"
        )
    elif offset is None and agreement.paired:
        notes.append(
            f"{box_dir}: the box numbers follow no single convention against the masks (most often "
            f"{agreement.describe_offset()}); {from_masks}"
        )
    if agreement.around_several:
        notes.append(f"{box_dir}: {_around_words(agreement)}; {from_masks}, one per target")
    if no_box_file:
        notes.append(f"{box_dir}: no box file for {len(no_box_file)} image(s), e.g. {no_box_file[0]}")
    return problems, notes
