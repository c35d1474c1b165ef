"""Small inputs shared by the model tests."""

from __future__ import annotations

import pytest
import torch


def make_batch(
    height: int, width: int, boxes: list[list[list[float]]], seed: int = 0
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Grey images 0..255 (B, 1, H, W) and targets with the given boxes and a random sky map."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(len(boxes), 1, height, width, generator=gen) * 255
    targets = []
    for image_boxes in boxes:
        sky = torch.randint(0, 2, (height, width), generator=gen, dtype=torch.uint8)
        sky[:, :3] = 255  # a few ignored pixels
        targets.append(
            {"boxes": torch.tensor(image_boxes, dtype=torch.float32).reshape(-1, 4), "sky_mask": sky}
        )
    return images, targets


@pytest.fixture
def batch_factory():
    """:func:`make_batch`, for tests that need their own boxes."""
    return make_batch


@pytest.fixture
def tiny_batch() -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Two 70 x 90 images (not multiples of 32): one with a large and a 3-px box, one empty."""
    return make_batch(70, 90, [[[10.0, 12.0, 50.0, 60.0], [60.0, 30.0, 63.0, 33.0]], []])
