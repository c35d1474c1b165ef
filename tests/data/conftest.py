"""Tiny datasets written on the fly: a DenseSIRST devkit and a mask-only IRSTD set.

Each image has a few small targets (box = exact mask extent, 0-based half-open) and a sky
region; point files list the targets in *reverse* box order, as the release does, so the
reader's point matching is exercised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from bafenet.data.densesirst import DEVKIT_FOLDERS

TINY_SIZE = (48, 40)  # width, height
# image id -> target boxes (x1, y1, x2, y2), half-open pixel edges
TINY_TARGETS: dict[str, list[tuple[int, int, int, int]]] = {
    "Misc_1": [(5, 4, 8, 7), (10, 5, 14, 8), (30, 20, 33, 24)],
    "Misc_2": [(20, 10, 23, 13)],
    "iraytek-7": [(2, 30, 5, 33), (40, 2, 44, 5), (15, 15, 19, 19), (24, 15, 27, 18)],
}
TINY_SPLITS = {"train_v2": ["Misc_1", "iraytek-7"], "val_v2": ["Misc_2"]}


def tiny_target_mask(boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(H, W) uint8 0/1: every box filled, minus its top-left corner pixel (masks are not boxes)."""
    mask = np.zeros(TINY_SIZE[::-1], dtype=np.uint8)
    for x1, y1, x2, y2 in boxes:
        mask[y1:y2, x1:x2] = 1
        mask[y1, x1] = 0
    return mask


def tiny_points(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int]]:
    """floor(centroid) of each target's mask pixels, as integer pixel indices."""
    mask = tiny_target_mask(boxes)
    points = []
    for x1, y1, x2, y2 in boxes:
        ys, xs = np.nonzero(mask[y1:y2, x1:x2])
        points.append((int(np.floor(xs.mean())) + x1, int(np.floor(ys.mean())) + y1))
    return points


def voc_xml_text(image_id: str, width: int, height: int, boxes: list[tuple[float, ...]]) -> str:
    """A DenseSIRST-style box file."""
    objects = "".join(
        "  <object>\n    <name>Target</name>\n    <bndbox>\n"
        f"      <xmin>{x1}</xmin>\n      <ymin>{y1}</ymin>\n"
        f"      <xmax>{x2}</xmax>\n      <ymax>{y2}</ymax>\n"
        "    </bndbox>\n  </object>\n"
        for x1, y1, x2, y2 in boxes
    )
    return (
        f"<annotation>\n  <filename>{image_id}</filename>\n  <size>\n    <width>{width}</width>\n"
        f"    <height>{height}</height>\n    <depth>1</depth>\n  </size>\n{objects}</annotation>\n"
    )


def _palette_png(indices: np.ndarray, colour: tuple[int, int, int], path: Path) -> None:
    img = Image.fromarray(indices.astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0, *colour])
    img.save(path)


def write_tiny_devkit(root: Path) -> Path:
    """Write the tiny devkit under ``root`` and return it."""
    width, height = TINY_SIZE
    for folder in DEVKIT_FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sky = np.zeros((height, width), dtype=np.uint8)
    sky[: height * 3 // 4] = 1  # upper three quarters are sky
    for number, (image_id, boxes) in enumerate(TINY_TARGETS.items()):
        target = tiny_target_mask(boxes)
        image = rng.integers(20, 60, size=(height, width)).astype(np.uint8)
        image[target > 0] = 220
        if number == 2:  # one RGB image, as the release has
            Image.fromarray(np.stack([image] * 3, axis=2), mode="RGB").save(
                root / "PNGImages" / f"{image_id}.png"
            )
        else:
            Image.fromarray(image, mode="L").save(root / "PNGImages" / f"{image_id}.png")
        (root / "SIRST/BBox" / f"{image_id}.xml").write_text(voc_xml_text(image_id, width, height, boxes))
        Image.fromarray(target * 255, mode="L").save(root / "SIRST/BinaryMask" / f"{image_id}_pixels0.png")
        _palette_png(target, (128, 0, 0), root / "SIRST/PaletteMask" / f"{image_id}.png")
        lines = "\n".join(f"{x} {y}" for x, y in reversed(tiny_points(boxes)))
        (root / "SIRST/Point_label" / f"{image_id}_pixels0.txt").write_text(lines + "\n")
        Image.fromarray(sky * 255, mode="L").save(root / "SkySeg/BinaryMask" / f"{image_id}_pixels0.png")
        _palette_png(sky, (128, 0, 0), root / "SkySeg/PaletteMask" / f"{image_id}.png")
    splits = {**TINY_SPLITS, "trainval_v2": TINY_SPLITS["train_v2"] + TINY_SPLITS["val_v2"]}
    for name, ids in splits.items():
        (root / "Splits" / f"{name}.txt").write_text("\n".join(ids))  # no trailing newline
    return root


def write_tiny_maskset(
    root: Path, image_dir: str = "images", mask_dir: str = "masks", suffix: str = "_pixels0"
) -> Path:
    """Write a mask-only dataset (same scenes, no boxes/points/sky files) under ``root``."""
    (root / image_dir).mkdir(parents=True)
    (root / mask_dir).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for image_id, boxes in TINY_TARGETS.items():
        target = tiny_target_mask(boxes)
        image = rng.integers(20, 60, size=target.shape).astype(np.uint8)
        image[target > 0] = 220
        Image.fromarray(image, mode="L").save(root / image_dir / f"{image_id}.png")
        Image.fromarray(target * 255, mode="L").save(root / mask_dir / f"{image_id}{suffix}.png")
    return root


@pytest.fixture
def tiny_devkit(tmp_path: Path) -> Path:
    """A valid three-image DenseSIRST devkit (48x40 images) in a fresh folder."""
    return write_tiny_devkit(tmp_path / "tinykit")


@pytest.fixture
def tiny_maskset_factory(tmp_path: Path) -> Callable[..., Path]:
    """Make mask-only datasets: ``factory(name, image_dir=..., mask_dir=..., suffix=...)``."""

    def make(name: str = "maskset", **layout: str) -> Path:
        return write_tiny_maskset(tmp_path / name, **layout)

    return make


def truncate_file(path: Path, keep: float = 0.5) -> None:
    """Cut a file to a fraction of its bytes (a broken download)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><object><name>Target</name><bndbox><xmin>&lol9;</xmin></bndbox></object></annotation>
"""


@pytest.fixture
def tiny_data() -> SimpleNamespace:
    """The tiny datasets' contents and helpers, for tests that build or break files."""
    return SimpleNamespace(
        targets=TINY_TARGETS,
        splits=TINY_SPLITS,
        size=TINY_SIZE,
        target_mask=tiny_target_mask,
        points=tiny_points,
        voc_xml_text=voc_xml_text,
        truncate_file=truncate_file,
        billion_laughs=BILLION_LAUGHS,
        write_devkit=write_tiny_devkit,
    )
