"""Image readers: the pixel limit is checked from the header, before anything is decoded."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from bafenet.data.imageio import MAX_PIXELS, read_image, read_label_mask, read_raw
from bafenet.errors import DataError


def write_declared_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` 8-bit grey pixels (a bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("reader", [read_image, read_raw, read_label_mask])
def test_a_huge_declared_image_is_refused_before_decoding(reader, tmp_path: Path, monkeypatch) -> None:
    bomb = write_declared_png(tmp_path / "bomb.png", 12000, 12000)
    assert bomb.stat().st_size < 1000 and MAX_PIXELS < 12000 * 12000

    def no_decoding(self):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's bomb warning would be a second output line
        with pytest.raises(DataError) as info:
            reader(bomb)
    assert str(info.value) == (
        f"{bomb}: image of 12000x12000 px (144.0 Mpx) exceeds the limit of 40.0 Mpx; it was not decoded"
    )


def test_pillows_own_bomb_error_is_a_data_error(tmp_path: Path) -> None:
    bomb = write_declared_png(tmp_path / "bigger.png", 30000, 30000)  # above twice Pillow's limit
    assert 2 * Image.MAX_IMAGE_PIXELS < 30000 * 30000
    with pytest.raises(
        DataError, match=r"bigger\.png: refused before decoding, a possible decompression bomb"
    ):
        read_image(bomb)


def test_the_limit_is_an_argument(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(np.full((10, 20), 7, dtype=np.uint8)).save(path)
    assert read_image(path).shape == (10, 20)
    assert read_image(path, max_pixels=200).shape == (10, 20)
    with pytest.raises(DataError, match=r"small\.png: image of 20x10 px .* exceeds the limit of 199 px"):
        read_image(path, max_pixels=199)
