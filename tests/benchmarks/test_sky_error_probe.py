"""benchmarks/sky_error_probe.py: boundary distances, error bands and the context-grid ceiling."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bafenet.data.sample import Sample
from bafenet.models.zoo import build_model

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import sky_error_probe as probe  # noqa: E402


def half_sky(height: int, width: int, horizon: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[:horizon] = 1
    return mask


def test_boundary_distance_counts_pixels_to_the_other_class() -> None:
    mask = half_sky(8, 3, 4)
    mask[:, 2] = 255  # ignored pixels belong to neither side
    distance = probe.boundary_distance(mask)
    assert distance[:, 0].tolist() == [4, 3, 2, 1, 1, 2, 3, 4]
    assert np.isinf(probe.boundary_distance(np.ones((4, 4), np.uint8))).all()  # no boundary


def test_wrong_pixels_fall_into_their_distance_bands() -> None:
    annotated = half_sky(40, 10, 20)  # 200 sky pixels
    pred = annotated == 1
    pred[20] = True  # 10 pixels 1 px below the horizon
    pred[35] = True  # 10 pixels 16 px below it
    acc = probe._empty()
    probe._add(acc, pred, annotated, probe.boundary_distance(annotated))
    summary = probe._summary({"context": acc})["context"]
    assert summary["sky_iou"] == pytest.approx(200 / 220)
    assert summary["wrong_pixel_share"] == pytest.approx(20 / 400)
    assert summary["false_sky_share"] == 1.0  # both rows lie below the horizon
    assert list(summary["wrong_share_by_boundary_distance"].values()) == [0.5, 0.5, 0.0]


def test_frame_maps_on_an_odd_frame_and_the_ceiling_errs_only_near_the_horizon() -> None:
    torch.manual_seed(0)
    model = build_model(
        "fcos_seg_hr",
        sky_context=True,
        context_size=64,
        context_net=True,
        context_width=8,
        channels=16,
        backbone_width=8,
    ).eval()
    native = half_sky(61, 83, 23)
    scale = 2
    rng = np.random.default_rng(0)
    transformed = Sample(
        rng.uniform(0, 255, (61 * scale, 83 * scale)),
        sky_mask=np.repeat(np.repeat(native, scale, 0), scale, 1),
        image_id="odd",
    )
    with torch.no_grad():
        context, ceiling = probe.frame_maps(model, transformed, scale)
    assert context.shape == ceiling.shape == native.shape
    assert context.dtype == ceiling.dtype == np.bool_
    wrong = ceiling != (native == 1)
    cell = model.strides[0] * 83 / 64  # one context cell in native pixels
    assert probe.sky_iou(ceiling, native) > 0.9
    assert (probe.boundary_distance(native)[wrong] <= cell).all()
