"""Decoding images and masks with Pillow into the sample's conventions.

Image conversion (documented once, used by every reader):

* 8-bit grey (``L``): used as is, as float32 in [0, 255].
* 16-bit or 32-bit grey (``I;16``, ``I``, ``F``): linearly stretched from the image's own
  minimum and maximum to [0, 255] (raw infrared frames rarely use the full 16-bit range,
  so dividing by 257 would leave them black). A constant image becomes all zeros.
* RGB / RGBA / palette / grey+alpha: alpha dropped, then ITU-R 601-2 luma
  ``0.299 R + 0.587 G + 0.114 B`` (Pillow's own ``L`` conversion, done in float).
  For the grey images stored as RGB this returns the grey value exactly.

Size limit: every reader refuses a file declaring more than ``max_pixels`` pixels (default
:data:`MAX_PIXELS`, 40 Mpx; a DenseSIRST frame has 1.3 Mpx) from its header, before decoding
anything, so a small file that declares a huge image (a decompression bomb) costs nothing.
Pillow's own decompression-bomb warning and error become the same clean :class:`DataError`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bafenet.errors import DataError

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MAX_PIXELS = 40_000_000
"""Default limit of every reader: width x height of an image file, checked before decoding."""


def to_gray(array: np.ndarray) -> np.ndarray:
    """Convert a decoded image array (H, W) or (H, W, C) to (H, W) float32 in [0, 255]."""
    array = np.asarray(array)
    if array.ndim == 3:
        if array.shape[2] in (2, 4):  # grey+alpha or RGBA: drop alpha
            array = array[:, :, :-1]
        if array.shape[2] == 1:
            array = array[:, :, 0]
        elif array.shape[2] == 3:
            luma = array.astype(np.float32) @ _LUMA
            if array.dtype == np.uint8:
                return luma.clip(0, 255)
            return to_gray(luma.astype(np.float64))  # 16-bit colour: luma, then stretch
        else:
            raise ValueError(f"unsupported channel count {array.shape[2]}")
    if array.ndim != 2:
        raise ValueError(f"unsupported image shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32)
    if array.dtype == bool:
        return array.astype(np.float32) * 255.0
    values = array.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - lo) * (255.0 / (hi - lo))).astype(np.float32)


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open and decode ``path``, refusing an image above ``max_pixels`` before decoding it."""
    if not path.is_file():
        raise DataError(path, "file not found")
    img = None
    try:
        with warnings.catch_warnings():
            # the limit is the check below; Pillow's own error (at twice its warning size) stays
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)  # reads the header only
            if img.width * img.height > max_pixels:
                raise DataError(
                    path,
                    f"image of {img.width}x{img.height} px ({megapixels(img.width * img.height)}) "
                    f"exceeds the limit of {megapixels(max_pixels)}; it was not decoded",
                )
            img.load()  # decode now, so truncated files fail here with the path
    except BaseException as exc:
        if img is not None:
            img.close()
        if isinstance(exc, Image.DecompressionBombError):
            raise DataError(path, f"refused before decoding, a possible decompression bomb ({exc})") from None
        if isinstance(exc, (UnidentifiedImageError, OSError, SyntaxError, ValueError)):
            raise DataError(path, f"cannot decode image ({exc})") from exc
        raise
    return img


def megapixels(pixels: float) -> str:
    """A pixel count in words: "144.0 Mpx", or "900 px" below 0.1 Mpx."""
    return f"{pixels / 1e6:.1f} Mpx" if pixels >= 1e5 else f"{pixels:.0f} px"


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as (H, W) float32 grey levels in [0, 255] (see module doc)."""
    path = Path(path)
    img = _open(path, max_pixels)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif img.mode == "1":
        img = img.convert("L")
    return to_gray(np.asarray(img))


def read_raw(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as Pillow decodes it (for caching; convert with :func:`to_gray`)."""
    path = Path(path)
    img = _open(path, max_pixels)
    if img.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif img.mode == "1":
        img = img.convert("L")
    return np.asarray(img)


def read_label_mask(path: str | Path, palette: bool = False, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read a mask as (H, W) uint8 in {0, 1}.

    ``palette=True`` reads the palette *indices* of a ``P`` image (index > 0 -> 1);
    otherwise any non-zero grey value (e.g. 255) -> 1. Colour masks: any channel > 0.
    """
    path = Path(path)
    img = _open(path, max_pixels)
    if palette and img.mode == "P":
        return (np.asarray(img) > 0).astype(np.uint8)
    array = np.asarray(img)
    if array.ndim == 3:
        array = array[:, :, :3].max(axis=2) if array.shape[2] >= 3 else array[:, :, 0]
    return (array > 0).astype(np.uint8)
