"""Sky IoU accumulated over the set, with 255 ignored."""

from __future__ import annotations

import numpy as np
import pytest

from bafenet.metrics.seg import SkyIoU


def test_hand_case_with_ignore() -> None:
    target = np.array([[1, 1, 0, 255], [1, 0, 0, 255]], dtype=np.uint8)
    pred = np.array([[1, 0, 0, 1], [1, 1, 0, 0]], dtype=np.uint8)
    metric = SkyIoU()
    metric.add(pred, target)
    result = metric.compute()
    # labelled pixels: 6; sky: label {00,01,10}, pred {00,10,11} -> I=2, U=4
    assert result["sky_iou"] == pytest.approx(2 / 4)
    # not sky: label {02,11,12}, pred {01,02,12} -> I=2, U=4
    assert result["not_sky_iou"] == pytest.approx(2 / 4)
    assert result["mean_iou"] == pytest.approx(0.5)
    assert result["pixel_accuracy"] == pytest.approx(4 / 6)
    assert result["labelled_pixels"] == 6


def test_dataset_level_not_mean_of_images() -> None:
    metric = SkyIoU()
    # image 1: 1 sky pixel, missed (IoU 0); image 2: 99 sky pixels, all found
    metric.add(np.zeros((1, 1), np.uint8), np.ones((1, 1), np.uint8))
    metric.add(np.ones((9, 11), np.uint8), np.ones((9, 11), np.uint8))
    assert metric.compute()["sky_iou"] == pytest.approx(99 / 100)  # a per-image mean would be 0.5
    assert metric.compute()["not_sky_iou"] == 0.0


def test_absent_class_is_nan_and_left_out_of_mean() -> None:
    metric = SkyIoU()
    metric.add(np.ones((4, 4), bool), np.ones((4, 4), np.uint8))
    result = metric.compute()
    assert result["sky_iou"] == 1.0 and np.isnan(result["not_sky_iou"]) and result["mean_iou"] == 1.0


def test_merge_and_validation() -> None:
    a, b, whole = SkyIoU(), SkyIoU(), SkyIoU()
    rng = np.random.default_rng(0)
    for i in range(4):
        pred = rng.integers(0, 2, (5, 6))
        target = rng.choice([0, 1, 255], (5, 6))
        whole.add(pred, target)
        (a if i % 2 else b).add(pred, target)
    a.merge(b)
    assert a.compute() == whole.compute()
    with pytest.raises(ValueError, match="labels"):
        a.add(np.zeros((2, 2)), np.full((2, 2), 7))
    with pytest.raises(ValueError, match="shape"):
        a.add(np.zeros((2, 2)), np.zeros((2, 3)))
