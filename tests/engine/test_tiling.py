"""Tiled inference: tile layout, one-tile equivalence with whole frames, no duplicates on seams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from bafenet.data.components import mask_components
from bafenet.engine.tiling import owned_ranges, predict_tiled, tile_starts
from bafenet.models.zoo import build_model


@pytest.mark.parametrize(
    "length,tile,overlap", [(100, 128, 16), (128, 128, 16), (300, 128, 32), (1000, 256, 64)]
)
def test_tiles_cover_the_frame_and_owned_parts_partition_it(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and min(starts[-1] + tile, length) == length
    for a, b in zip(starts, starts[1:], strict=False):
        assert a < b and a + tile - b >= overlap  # neighbours overlap by at least `overlap`
    owned = owned_ranges(starts, tile, length)
    assert owned[0][0] == 0 and owned[-1][1] == length
    for (_, hi), (next_lo, _) in zip(owned, owned[1:], strict=False):
        assert hi == next_lo
    for start, (lo, hi) in zip(starts, owned, strict=True):
        assert start <= lo < hi <= start + tile


def test_tile_must_exceed_overlap() -> None:
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(500, 64, 64)


def test_one_tile_gives_the_whole_frame_result() -> None:
    torch.manual_seed(0)
    # random weights: keep low-scored candidates so there is something to compare
    model = build_model("bafenet_hr", score_thresh=0.0).eval()
    image = torch.rand(1, 150, 200) * 255
    padded = torch.zeros(1, 1, 160, 224)
    padded[0, :, :150, :200] = image
    with torch.no_grad():
        whole = model(padded, image_sizes=[(150, 200)])[0]
    tiled = predict_tiled(model, image, tile_size=256, overlap=32, device=torch.device("cpu"))
    assert len(whole["boxes"]) > 10
    torch.testing.assert_close(tiled["boxes"], whole["boxes"])
    torch.testing.assert_close(tiled["scores"], whole["scores"])
    torch.testing.assert_close(tiled["sky_prob"], whole["sky_prob"])


class BlobDetector(nn.Module):
    """A stand-in detector: one box per bright 8-connected blob of what it sees (cut blobs too)."""

    nms_thresh = 0.5
    detections_per_img = 100

    def forward(self, images: Tensor, image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        results = []
        for image, (h, w) in zip(images, image_sizes, strict=True):
            boxes, _, _ = mask_components(image[0, :h, :w].cpu().numpy() > 128)
            boxes_t = torch.from_numpy(boxes).reshape(-1, 4)
            area = (boxes_t[:, 2] - boxes_t[:, 0]) * (boxes_t[:, 3] - boxes_t[:, 1])
            results.append(
                {
                    "boxes": boxes_t,
                    "scores": area / 100.0,
                    "labels": torch.zeros(len(boxes_t), dtype=torch.int64),
                }
            )
        return results


def test_targets_on_tile_seams_are_found_once() -> None:
    tile, overlap = 64, 16
    height, width = 150, 170
    image = torch.zeros(1, height, width)
    starts_x = tile_starts(width, tile, overlap)
    starts_y = tile_starts(height, tile, overlap)
    truth = []
    # 4x4 targets straddling every tile border (start and end of each tile), and on crossings
    for x_edge in [s for s in starts_x[1:]] + [s + tile for s in starts_x[:-1]]:
        for y_edge in [s for s in starts_y[1:]] + [s + tile for s in starts_y[:-1]] + [30]:
            for dx, dy in ((-1, -2), (-3, -1)):
                x1, y1 = x_edge + dx, y_edge + dy
                if any(abs(x1 - a) < 6 and abs(y1 - b) < 6 for a, b, _, _ in truth):
                    continue  # keep blobs apart
                truth.append((x1, y1, x1 + 4, y1 + 4))
    for x1, y1, x2, y2 in truth:
        image[0, y1:y2, x1:x2] = 255.0
    truth_arr = np.array(truth, dtype=np.float32)
    # the set-up is meaningful: plain per-tile detection would report cut blobs twice or more
    naive = sum(
        len(
            BlobDetector()(
                image[None, :, y : y + tile, x : x + tile], [image[:, y : y + tile, x : x + tile].shape[1:]]
            )[0]["boxes"]
        )
        for y in starts_y
        for x in starts_x
    )
    assert naive > len(truth)

    out = predict_tiled(BlobDetector(), image, tile, overlap, torch.device("cpu"))
    boxes = out["boxes"].numpy()
    assert len(boxes) == len(truth)
    # every target found whole, exactly once
    order = np.lexsort((boxes[:, 1], boxes[:, 0]))
    expected = truth_arr[np.lexsort((truth_arr[:, 1], truth_arr[:, 0]))]
    np.testing.assert_array_equal(boxes[order], expected)


def test_a_wrapped_model_is_read_through_its_wrapper() -> None:
    """The NMS settings come from the model inside a (DDP / DataParallel) wrapper."""
    image = torch.zeros(1, 150, 170)
    image[0, 40:44, 60:64] = 255.0
    image[0, 100:104, 120:124] = 255.0
    wrapped = nn.DataParallel(BlobDetector())  # no attributes of its own (inputs go to CUDA where present)
    assert not hasattr(wrapped, "nms_thresh")
    out = predict_tiled(wrapped, image, 64, 16, torch.device("cpu"))
    expected = predict_tiled(BlobDetector(), image, 64, 16, torch.device("cpu"))
    assert len(out["boxes"]) == 2
    torch.testing.assert_close(out["boxes"], expected["boxes"])
