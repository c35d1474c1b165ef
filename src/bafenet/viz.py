"""Drawing helpers: grey images to RGB, boxes, mask outlines, panels, PNG files.

All functions work on (H, W, 3) uint8 RGB arrays and return new arrays. Boxes are drawn
one pixel *outside* their half-open extent, so a 3x3 target stays visible inside its frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from bafenet.fileio import atomic_path

GREEN = (0, 220, 0)
RED = (255, 40, 40)
CYAN = (0, 200, 255)
YELLOW = (255, 220, 0)
Color = tuple[int, int, int]


def gray_to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) grey levels in [0, 255] -> (H, W, 3) uint8."""
    grey = np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of ``mask`` that touch a pixel outside it (8-connectivity)."""
    inside = np.asarray(mask, dtype=bool)
    return inside & ~ndimage.binary_erosion(inside, structure=np.ones((3, 3), bool), border_value=1)


def paint(rgb: np.ndarray, where: np.ndarray, color: Color, alpha: float = 1.0) -> np.ndarray:
    """Blend ``color`` into ``rgb`` where the (H, W) bool ``where`` is set."""
    out = rgb.copy()
    blended = (1 - alpha) * out[where].astype(np.float32) + alpha * np.asarray(color, np.float32)
    out[where] = blended.round().astype(np.uint8)
    return out


def draw_boxes(rgb: np.ndarray, boxes: np.ndarray, color: Color, scale: float = 1.0) -> np.ndarray:
    """Draw (N, 4) x1 y1 x2 y2 boxes (in image pixels, drawn at ``scale``) as 1-px frames around them."""
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale:
        draw.rectangle(
            [int(np.floor(x1)) - 1, int(np.floor(y1)) - 1, int(np.ceil(x2)), int(np.ceil(y2))], outline=color
        )
    return np.asarray(img).copy()


def upscale(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor (keeps pixels crisp)."""
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def panel_row(panels: Sequence[np.ndarray], titles: Sequence[str] | None = None, gap: int = 6) -> np.ndarray:
    """Place RGB panels side by side on a dark background, with optional titles above."""
    title_h = 14 if titles else 0
    height = max(p.shape[0] for p in panels) + title_h
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for i, p in enumerate(panels):
        canvas.paste(Image.fromarray(p), (x, title_h))
        if titles:
            draw.text((x + 2, 1), titles[i], fill=(230, 230, 230))
        x += p.shape[1] + gap
    return np.asarray(canvas)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB (or grey) uint8 array as PNG, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")
    return path
