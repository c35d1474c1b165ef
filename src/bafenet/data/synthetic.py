"""The built-in synthetic dataset: small infrared-like scenes in the DenseSIRST devkit layout.

Every image is a sky with cloud texture above a wavy horizon and cluttered ground below
it (ground with warm blobs that look like targets, so a detector must use the sky
context). Small Gaussian-shaped targets (1-7 px, mostly 3-5 px, mode 3x3) sit in dense
clusters inside the sky, with a low intensity ratio to their background but a peak
clearly above the noise. The scene kind follows the image index: of every 16 images,
5 are entirely sky, 1 has no sky at all (its targets then sit on the ground, like the few
real targets outside the sky) and 10 have a horizon.

Annotations are exact by construction: each target's mask is one 8-connected component
(an ellipse inside its box plus the box's middle row and column, so the box is its tight
extent), targets never touch (at least one background pixel between them), the point is
the floor of the mask centroid (always a mask pixel), and the XML boxes use the
half-open 0-based convention of :mod:`bafenet.data.sample`.

Files written (``S`` = ``synth_0000`` ...), as in the real release:

* ``PNGImages/S.png`` 8-bit grey; ``SIRST/BBox/S.xml`` VOC boxes, class ``Target``;
* ``SIRST/BinaryMask/S_pixels0.png`` 0/255; ``SIRST/PaletteMask/S.png`` palette 0/1;
* ``SIRST/Point_label/S_pixels0.txt`` one ``x y`` line per target (box order);
* ``SkySeg/BinaryMask/S_pixels0.png`` 0/255 (255 = sky); ``SkySeg/PaletteMask/S.png``
  palette indices 0 others / 1 sky;
* ``Splits/train.txt``, ``val.txt``, ``trainval.txt`` and the same lists under the real
  names ``train_v2.txt``, ``val_v2.txt``, ``trainval_v2.txt`` (so the default recipes run on
  it); the last quarter of the images (at least one) is ``val``. No trailing newline.

The same ``seed`` gives identical bytes (for the same numpy, scipy and Pillow versions);
image ``i`` does not depend on ``n``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from bafenet.data.densesirst import DEVKIT_FOLDERS
from bafenet.errors import BafenetError

# (width, height) choices: small and varied, landscape or square. Small like the SIRST-v1
# frames of DenseSIRST, so the official 512 x 512 resize enlarges targets 1.3-2.7x: about
# half of them then get a stride-8 FCOS point inside their box (0.38 with frames up to
# 512 x 384), which is what lets a short training reach a useful recall.
DEFAULT_SIZES: tuple[tuple[int, int], ...] = (
    (256, 192),
    (256, 256),
    (288, 224),
    (320, 240),
    (320, 256),
    (352, 288),
    (384, 256),
    (384, 288),
)
# Target side lengths 1..7 px and their probabilities (mode 3, mostly 3-5).
SIDE_PROBS: tuple[float, ...] = (0.02, 0.05, 0.40, 0.30, 0.14, 0.06, 0.03)
ALL_SKY_SLOTS = (2, 5, 9, 12, 15)  # image index % 16
NO_SKY_SLOT = 7
_TARGET_PALETTE = [0, 0, 0, 255, 0, 0]
_SKY_PALETTE = [0, 0, 0, 128, 0, 0]


@dataclass
class SyntheticScene:
    """One generated image with its annotations (arrays as written to disk)."""

    image: np.ndarray  # (H, W) uint8
    boxes: np.ndarray  # (N, 4) int64, x1 y1 x2 y2 half-open
    points: np.ndarray  # (N, 2) int64, x y pixel index
    target_mask: np.ndarray  # (H, W) uint8 {0, 1}
    sky_mask: np.ndarray  # (H, W) uint8 {0, 1}


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """(H, W) smooth noise with unit std and features about ``cell`` px wide (bicubic upsampling)."""
    h, w = shape
    low = rng.standard_normal((max(2, int(h / cell) + 2), max(2, int(w / cell) + 2))).astype(np.float32)
    field = np.asarray(Image.fromarray(low, mode="F").resize((w, h), Image.Resampling.BICUBIC))
    return (field - field.mean()) / (field.std() + 1e-6)


def _add_gaussian(image: np.ndarray, cx: float, cy: float, sx: float, sy: float, peak: float) -> None:
    """Add ``peak * exp(-dx^2 / 2sx^2 - dy^2 / 2sy^2)`` around (cx, cy) in place (a 4-sigma window)."""
    h, w = image.shape
    x1, x2 = max(0, int(cx - 4 * sx) - 1), min(w, int(cx + 4 * sx) + 2)
    y1, y2 = max(0, int(cy - 4 * sy) - 1), min(h, int(cy + 4 * sy) + 2)
    if x1 >= x2 or y1 >= y2:
        return
    dx = (np.arange(x1, x2) + 0.5 - cx) / sx  # pixel centres
    dy = (np.arange(y1, y2) + 0.5 - cy) / sy
    image[y1:y2, x1:x2] += peak * np.exp(-0.5 * dy[:, None] ** 2) * np.exp(-0.5 * dx[None, :] ** 2)


def _sky_layout(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """(H, W) uint8 sky mask: 1 above a wavy horizon with a few building-like steps."""
    if kind == "all_sky":
        return np.ones((h, w), np.uint8)
    if kind == "no_sky":
        return np.zeros((h, w), np.uint8)
    x = np.arange(w)
    horizon = h * rng.uniform(0.45, 0.8) + np.zeros(w)
    for _ in range(3):
        horizon += rng.uniform(2, h * 0.06) * np.sin(
            2 * np.pi * rng.uniform(0.5, 4) * x / w + rng.uniform(0, 6.3)
        )
    for _ in range(rng.integers(0, 4)):  # flat-topped "buildings"
        x0 = int(rng.integers(0, w - 20))
        width = int(rng.integers(10, max(11, w // 5)))
        horizon[x0 : x0 + width] -= rng.uniform(8, h * 0.15)
    horizon = np.clip(horizon, h * 0.25, h - 8)
    return (np.arange(h)[:, None] < horizon[None, :]).astype(np.uint8)


def _background(rng: np.random.Generator, sky: np.ndarray) -> np.ndarray:
    """(H, W) float32 grey background: cloudy sky, cluttered ground, sensor noise."""
    h, w = sky.shape
    rows = np.linspace(0.0, 1.0, h)[:, None]
    sky_top = rng.uniform(55, 115)
    sky_img = sky_top + rng.uniform(5, 40) * rows  # brighter towards the horizon
    clouds = _smooth_noise(rng, (h, w), rng.uniform(24, 64))
    sky_img = sky_img + rng.uniform(0, 35) * np.clip(clouds - rng.uniform(-0.5, 1.0), 0, None)
    sky_img = sky_img + rng.uniform(0.5, 2.0) * _smooth_noise(rng, (h, w), 6)  # fine cloud structure

    ground = rng.uniform(70, 170) + rng.uniform(8, 22) * _smooth_noise(rng, (h, w), rng.uniform(4, 10))
    ground = ground + rng.uniform(5, 15) * _smooth_noise(rng, (h, w), 40)
    ground_rows = np.flatnonzero((sky == 0).any(axis=1))
    if ground_rows.size:  # warm blobs on the ground: target-like clutter
        for _ in range(int(rng.integers(4, 14))):
            cy, cx = rng.uniform(ground_rows[0], h), rng.uniform(0, w)
            s = rng.uniform(0.8, 4.0)
            _add_gaussian(ground, cx, cy, s, s, rng.uniform(30, 120))
    blend = ndimage.gaussian_filter(sky.astype(np.float32), 1.0)  # soft horizon edge
    image = blend * sky_img + (1 - blend) * ground
    image = image + rng.normal(0.0, rng.uniform(1.2, 2.5), size=(h, w))
    return image.astype(np.float32)


def _target_footprint(w: int, h: int) -> np.ndarray:
    """(h, w) bool target shape: the inscribed ellipse plus the middle row and column."""
    ys = (np.arange(h) + 0.5 - h / 2) / (h / 2)
    xs = (np.arange(w) + 0.5 - w / 2) / (w / 2)
    shape = ys[:, None] ** 2 + xs[None, :] ** 2 <= 1.0
    shape[(h - 1) // 2 : h // 2 + 1, :] = True
    shape[:, (w - 1) // 2 : w // 2 + 1] = True
    return shape


def _place_targets(rng: np.random.Generator, region: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes (x1, y1, x2, y2) in dense clusters, inside ``region`` and never touching."""
    h, w = region.shape
    # Cluster centres need room: a chessboard distance of >= 10 px to the region's edge.
    inner = ndimage.distance_transform_cdt(np.pad(region, 1), metric="chessboard")[1:-1, 1:-1]
    candidates = np.flatnonzero(inner >= 10)
    if candidates.size == 0:
        candidates = np.flatnonzero(inner >= 3)
    free = region.astype(bool).copy()  # pixels a new box may use
    free[:3, :] = free[-3:, :] = False
    free[:, :3] = free[:, -3:] = False
    boxes: list[tuple[int, int, int, int]] = []
    n_clusters = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    sides = np.arange(1, 8)
    for cluster in range(n_clusters + 20):  # extra clusters only while none was placed
        if candidates.size == 0 or (cluster >= n_clusters and boxes):
            break
        cy, cx = divmod(int(rng.choice(candidates)), w)
        spread = rng.uniform(4, 10)
        wanted = int(rng.integers(2, 10))
        placed = 0
        for _attempt in range(wanted * 15):
            if placed == wanted:
                break
            bw = int(rng.choice(sides, p=SIDE_PROBS))
            # square, or one side 1 px longer/shorter (never below 3 px from a 3 px side)
            step = 1 if bw <= 3 else int(rng.choice([-1, 1]))
            bh = bw if rng.random() < 0.6 else min(bw + step, 7)
            x1 = int(round(cx + rng.normal(0, spread) - bw / 2))
            y1 = int(round(cy + rng.normal(0, spread) - bh / 2))
            if x1 < 0 or y1 < 0 or x1 + bw > w or y1 + bh > h or not free[y1 : y1 + bh, x1 : x1 + bw].all():
                continue
            boxes.append((x1, y1, x1 + bw, y1 + bh))
            gap = 1 + int(rng.integers(0, 3))  # >= 1 background pixel between targets
            free[max(0, y1 - gap) : y1 + bh + gap, max(0, x1 - gap) : x1 + bw + gap] = False
            placed += 1
    return boxes


def make_scene(
    rng: np.random.Generator, index: int, sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
) -> SyntheticScene:
    """Generate image ``index`` (its kind, all-sky / no-sky / horizon, follows the index)."""
    w, h = sizes[int(rng.integers(0, len(sizes)))]
    slot = index % 16
    kind = "all_sky" if slot in ALL_SKY_SLOTS else "no_sky" if slot == NO_SKY_SLOT else "horizon"
    sky = _sky_layout(rng, kind, h, w)
    image = _background(rng, sky)
    region = sky if sky.any() else np.ones_like(sky)
    boxes = _place_targets(rng, region)

    target_mask = np.zeros((h, w), np.uint8)
    points = []
    for x1, y1, x2, y2 in boxes:
        bw, bh = x2 - x1, y2 - y1
        shape = _target_footprint(bw, bh)
        target_mask[y1:y2, x1:x2][shape] = 1
        ys, xs = np.nonzero(shape)
        points.append((x1 + int(np.floor(xs.mean())), y1 + int(np.floor(ys.mean()))))
        # Gaussian intensity profile: about half the peak on the box's edge pixels.
        sx, sy = max(bw, 1.5) / 3.5, max(bh, 1.5) / 3.5
        _add_gaussian(image, (x1 + x2) / 2, (y1 + y2) / 2, sx, sy, rng.uniform(35, 100))
    return SyntheticScene(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        boxes=np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
        points=np.asarray(points, dtype=np.int64).reshape(-1, 2),
        target_mask=target_mask,
        sky_mask=sky,
    )


def _voc_xml(image_id: str, width: int, height: int, boxes: np.ndarray) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = image_id
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 1)):
        ET.SubElement(size, tag).text = str(value)
    for box in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = "Target"
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            ET.SubElement(bndbox, tag).text = str(int(value))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _palette_png(indices: np.ndarray, palette: list[int], path: Path) -> None:
    img = Image.fromarray(indices.astype(np.uint8), mode="P")
    img.putpalette(palette)
    img.save(path)


def _write_scene(devkit: Path, image_id: str, scene: SyntheticScene) -> None:
    h, w = scene.image.shape
    Image.fromarray(scene.image, mode="L").save(devkit / "PNGImages" / f"{image_id}.png")
    (devkit / "SIRST" / "BBox" / f"{image_id}.xml").write_text(_voc_xml(image_id, w, h, scene.boxes))
    Image.fromarray(scene.target_mask * 255, mode="L").save(
        devkit / "SIRST" / "BinaryMask" / f"{image_id}_pixels0.png"
    )
    _palette_png(scene.target_mask, _TARGET_PALETTE, devkit / "SIRST" / "PaletteMask" / f"{image_id}.png")
    lines = "".join(f"{x} {y}\n" for x, y in scene.points)
    (devkit / "SIRST" / "Point_label" / f"{image_id}_pixels0.txt").write_text(lines)
    Image.fromarray(scene.sky_mask * 255, mode="L").save(
        devkit / "SkySeg" / "BinaryMask" / f"{image_id}_pixels0.png"
    )
    _palette_png(scene.sky_mask, _SKY_PALETTE, devkit / "SkySeg" / "PaletteMask" / f"{image_id}.png")


def write_synthetic_devkit(
    out: Path, n: int, seed: int, sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
) -> Path:
    """Write ``n`` synthetic images with all annotations as a DenseSIRST devkit at ``out``.

    Args:
        out: the devkit folder to create; it must not exist or be an empty folder.
        n: number of images (>= 1).
        seed: random seed; the same seed gives identical files.
        sizes: ``(width, height)`` choices for the images.

    Returns:
        ``out``. The folder is written elsewhere first and renamed into place, so it is
        either complete or absent.

    Raises:
        BafenetError: when ``n < 1`` or ``out`` exists and is not an empty folder.
    """
    out = Path(out)
    if n < 1:
        raise BafenetError(f"--n must be at least 1, got {n}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BafenetError(f"{out}: already exists and is not empty; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private
        for folder in DEVKIT_FOLDERS:
            (tmp / folder).mkdir(parents=True)
        width = max(4, len(str(n - 1)))
        ids = [f"synth_{i:0{width}d}" for i in range(n)]
        for i, image_id in enumerate(ids):
            rng = np.random.default_rng([seed, i])
            _write_scene(tmp, image_id, make_scene(rng, i, sizes))
        n_val = max(1, n // 4) if n > 1 else 0
        splits = {"train": ids[: n - n_val] or ids, "val": ids[n - n_val :] or ids, "trainval": ids}
        for name, names in splits.items():
            for stem in (name, f"{name}_v2"):
                (tmp / "Splits" / f"{stem}.txt").write_text("\n".join(names))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
