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


SKY_TINT = (40, 110, 255)
INSET_ZOOM = 4  # inset pixels per frame pixel


def draw_detections(rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Red boxes (as :func:`draw_boxes`, at ``scale``) with each score written above its box."""
    img = Image.fromarray(draw_boxes(rgb, boxes, RED, scale))
    draw = ImageDraw.Draw(img)
    corners = np.asarray(boxes, np.float64).reshape(-1, 4)[:, :2] * scale
    for (x1, y1), score in zip(corners, scores, strict=True):
        draw.text((int(x1), max(0, int(y1) - 12)), f"{score:.2f}", fill=RED)
    return np.asarray(img).copy()


def densest_window(boxes: np.ndarray, side: int, height: int, width: int) -> tuple[int, int]:
    """Top-left corner (x, y) of the ``side`` x ``side`` window inside a ``height`` x ``width``
    frame centred on the box whose centre has the most other box centres within the window."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    neighbours = (np.abs(centres[:, None] - centres[None]) <= side / 2).all(axis=2).sum(axis=1)
    cx, cy = centres[neighbours.argmax()]
    x = int(np.clip(round(cx - side / 2), 0, max(0, width - side)))
    y = int(np.clip(round(cy - side / 2), 0, max(0, height - side)))
    return x, y


def detection_overlay(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    sky: np.ndarray | None = None,
    zoom: bool = True,
    min_side: int = 1024,
) -> np.ndarray:
    """RGB drawing of detections on a grey frame, readable even for 3-px targets.

    The sky (``sky`` > 0.5) is tinted blue; each box is drawn in red with its score. A frame
    whose long side is below ``min_side`` is enlarged by an integer factor (at most
    :data:`INSET_ZOOM`). With ``zoom``, an inset enlarged :data:`INSET_ZOOM` times shows the
    densest group of detections (framed in yellow), in the corner of the drawing farthest from it.

    Args:
        image: (H, W) grey levels in [0, 255].
        boxes: (N, 4) x1 y1 x2 y2 pixel edges of the frame; scores: (N,).
        sky: (H, W) sky probability, or None.

    Returns:
        (f * H, f * W, 3) uint8, ``f`` the enlargement factor.
    """
    rgb = gray_to_rgb(image)
    if sky is not None:
        rgb = paint(rgb, np.asarray(sky) > 0.5, SKY_TINT, alpha=0.35)
    height, width = rgb.shape[:2]
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    factor = int(min(INSET_ZOOM, max(1, -(-min_side // max(height, width)))))
    drawing = draw_detections(upscale(rgb, factor), boxes, scores, factor)
    side = min(height, width, max(height, width) * factor // (4 * INSET_ZOOM))  # inset: 1/4 of the long side
    if not zoom or len(boxes) == 0 or factor >= INSET_ZOOM or side < 8:
        return drawing
    x, y = densest_window(boxes, side, height, width)
    crop = rgb[y : y + side, x : x + side]
    inset = draw_detections(upscale(crop, INSET_ZOOM), boxes - [x, y, x, y], scores, INSET_ZOOM)
    inset = np.pad(inset, ((2, 2), (2, 2), (0, 0)))
    inset[[0, 1, -2, -1]] = YELLOW
    inset[:, [0, 1, -2, -1]] = YELLOW
    drawing = draw_boxes(drawing, np.array([[x, y, x + side, y + side]]) * factor, YELLOW)
    # the corner farthest from the window
    top = 0 if (y + side / 2) * factor > drawing.shape[0] / 2 else drawing.shape[0] - inset.shape[0]
    left = 0 if (x + side / 2) * factor > drawing.shape[1] / 2 else drawing.shape[1] - inset.shape[1]
    drawing[top : top + inset.shape[0], left : left + inset.shape[1]] = inset
    return drawing
