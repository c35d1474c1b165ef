"""Small replicas of the published mask-set layouts, written file by file as released.

Every replica holds the same four 48x40 frames (:data:`FRAMES`). Targets are filled boxes
minus their top-left pixel, so each mask component's tight extent is its box. Box files are
written in each release's own convention, measured on the real files:

* SIRST-V2 ``annotations/bboxes``: the mask extent **+1 on all four numbers** (for a target
  over columns ``i..j``: ``xmin = i + 1``, ``xmax = j + 2``), checked against the real
  release (``Misc_1``: mask columns 70..71 and rows 74..75, box ``71 75 73 77``); target-free
  frames hold an ``<object>`` without ``<bndbox>``.
* SIRST v1 ``masks/*.xml``: one box per image around all its targets (here ``xmin = i + 1``,
  ``xmax = j + 1``, the most common variant of the real files).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REAL_SIRST_V1 = Path(
    os.environ.get(
        "BAFENET_TEST_SIRST_V1", Path(__file__).resolve().parents[3] / "shared" / "data" / "SIRST-v1"
    )
)

SIZE = (48, 40)  # width, height
# image id -> target boxes (x1, y1, x2, y2), 0-based half-open pixel edges
FRAMES: dict[str, list[tuple[int, int, int, int]]] = {
    "Misc_1": [(5, 4, 8, 7), (30, 20, 33, 24)],
    "Misc_2": [(20, 10, 23, 13)],
    "Misc_3": [(10, 25, 14, 28), (40, 2, 44, 5), (15, 15, 19, 19)],
    "iraytek-1": [],  # target-free (a SIRST-V2 background frame)
}
SPLITS = {"train": ["Misc_1", "iraytek-1"], "val": ["Misc_2"], "test": ["Misc_3"]}
BAD_FRAME = "Misc_3"  # SIRST v1 replica: its mask has another size than its image, like Misc_111


def target_mask(boxes: list[tuple[int, int, int, int]], size: tuple[int, int] = SIZE) -> np.ndarray:
    """(H, W) uint8 0/1: every box filled, minus its top-left pixel."""
    mask = np.zeros(size[::-1], dtype=np.uint8)
    for x1, y1, x2, y2 in boxes:
        mask[y1:y2, x1:x2] = 1
        mask[y1, x1] = 0
    return mask


def _image(image_id: str) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, image_id)))
    image = rng.integers(20, 60, size=SIZE[::-1]).astype(np.uint8)
    image[target_mask(FRAMES[image_id]) > 0] = 220
    return image


def _png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode="L").save(path)


def _voc(image_id: str, boxes: list[tuple[int, int, int, int]]) -> str:
    """A box file as the SIRST releases write it; no boxes: one <object> without <bndbox>."""
    objects = [
        "  <object>\n    <name>Target</name>\n    <bndbox>\n"
        f"      <xmin>{x1}</xmin>\n      <ymin>{y1}</ymin>\n"
        f"      <xmax>{x2}</xmax>\n      <ymax>{y2}</ymax>\n"
        "    </bndbox>\n  </object>\n"
        for x1, y1, x2, y2 in boxes
    ] or ["  <object>\n    <name>Target</name>\n    <pixels>\n      <id>0</id>\n    </pixels>\n  </object>\n"]
    width, height = SIZE
    return (
        f"<annotation>\n  <filename>{image_id}</filename>\n  <size>\n    <width>{width}</width>\n"
        f"    <height>{height}</height>\n    <depth>1</depth>\n  </size>\n{''.join(objects)}</annotation>\n"
    )


def _splits(folder: Path, names: dict[str, str]) -> None:
    """``names``: split key of SPLITS -> file name; also trainval."""
    folder.mkdir(parents=True, exist_ok=True)
    lists = {**SPLITS, "trainval": SPLITS["train"] + SPLITS["val"]}
    for key, name in names.items():
        (folder / name).write_text("\n".join(lists[key]))


def write_sirst_v2(root: Path, mixed: bool = True) -> Path:
    """SIRST-V2 as released: ``mixed/`` (optional), ``images/{targets,backgrounds}/``,
    ``annotations/masks/*_pixels0.png``, ``annotations/bboxes/*.xml`` (+1 convention), ``splits/``."""
    for image_id, boxes in FRAMES.items():
        image = _image(image_id)
        if mixed:
            _png(image, root / "mixed" / f"{image_id}.png")
        _png(image, root / "images" / ("targets" if boxes else "backgrounds") / f"{image_id}.png")
        _png(target_mask(boxes) * 255, root / "annotations" / "masks" / f"{image_id}_pixels0.png")
        plus_one = [(x1 + 1, y1 + 1, x2 + 1, y2 + 1) for x1, y1, x2, y2 in boxes]
        (root / "annotations" / "bboxes").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / "bboxes" / f"{image_id}.xml").write_text(_voc(image_id, plus_one))
    names = ("train", "val", "test", "trainval")
    _splits(root / "splits", {key: f"{key}_full.txt" for key in names})
    return root


def write_sirst_v1(root: Path) -> Path:
    """SIRST v1 as released: ``images/``, ``masks/`` (``*_pixels0.png`` and one-box ``*.xml``),
    ``idx_427/`` and ``idx_320/``; the mask of :data:`BAD_FRAME` is larger than its image."""
    for image_id, boxes in FRAMES.items():
        if not boxes:
            continue  # SIRST v1 has no target-free frame
        _png(_image(image_id), root / "images" / f"{image_id}.png")
        size = (60, 50) if image_id == BAD_FRAME else SIZE
        _png(target_mask(boxes, size) * 255, root / "masks" / f"{image_id}_pixels0.png")
        array = np.array(boxes)
        around = [(array[:, 0].min() + 1, array[:, 1].min() + 1, array[:, 2].max(), array[:, 3].max())]
        (root / "masks" / f"{image_id}.xml").write_text(_voc(image_id, around))
    lists = {"train": ["Misc_1"], "val": ["Misc_2"], "trainval": ["Misc_1", "Misc_2"], "test": [BAD_FRAME]}
    for folder in ("idx_427", "idx_320"):
        (root / folder).mkdir(parents=True)
        for name, ids in lists.items():
            (root / folder / f"{name}.txt").write_text("\n".join(ids))
    return root


def write_nudt_sirst(root: Path, split_dir: str = "50_50") -> Path:
    """NUDT-SIRST: ``images/000001.png``, ``masks/000001.png``, ``50_50/`` (or ``img_idx/``)."""
    numbers = {image_id: f"{index:06d}" for index, image_id in enumerate(FRAMES, start=1)}
    for image_id, boxes in FRAMES.items():
        _png(_image(image_id), root / "images" / f"{numbers[image_id]}.png")
        _png(target_mask(boxes) * 255, root / "masks" / f"{numbers[image_id]}.png")
    (root / split_dir).mkdir(parents=True)
    suffix = "_NUDT-SIRST" if split_dir == "img_idx" else ""
    (root / split_dir / f"train{suffix}.txt").write_text("000001\n000002\n000004\n")
    (root / split_dir / f"test{suffix}.txt").write_text("000003\n")
    return root


def write_irstd1k(root: Path) -> Path:
    """IRSTD-1k: ``IRSTD1k_Img/XDU0.png``, ``IRSTD1k_Label/XDU0.png``, ``trainval.txt``, ``test.txt``."""
    for index, (image_id, boxes) in enumerate(FRAMES.items()):
        _png(_image(image_id), root / "IRSTD1k_Img" / f"XDU{index}.png")
        _png(target_mask(boxes) * 255, root / "IRSTD1k_Label" / f"XDU{index}.png")
    (root / "trainval.txt").write_text("XDU0\nXDU1\nXDU3")
    (root / "test.txt").write_text("XDU2")
    return root


def real_sirst_v1() -> Path:
    """The real SIRST v1 release as published, or skip the test when it is not on this machine."""
    if not (REAL_SIRST_V1 / "idx_427").is_dir():
        pytest.skip(f"SIRST v1 not found at {REAL_SIRST_V1} (set BAFENET_TEST_SIRST_V1)")
    return REAL_SIRST_V1
