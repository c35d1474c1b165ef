"""The whole-frame context of training samples (sky-context models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from bafenet.config import ConfigError, load_config
from bafenet.data.collate import collate_samples
from bafenet.data.pipeline import build_train_pipeline
from bafenet.data.sample import Sample
from bafenet.data.transforms import get_geometry
from bafenet.engine.setup import build_train_transform


def ramp_frame(height: int = 150, width: int = 203) -> Sample:
    """A frame whose grey level is linear in x and y, one target in the middle, sky on the left."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.zeros((height, width), np.uint8)
    sky[:, : width // 3] = 1
    cx, cy = width // 2, height // 2
    return Sample(
        0.5 * cols + 0.3 * rows + 10.0,
        np.array([[cx, cy, cx + 3, cy + 3]]),
        points=np.array([[cx + 1.5, cy + 1.5]]),
        sky_mask=sky,
        image_id="ramp",
    )


def pipeline(flip_prob: float, context_size: int | None = 64, **options):
    return build_train_pipeline(
        mode="native",
        scale=2.0,
        crop_size=64,
        crop_jitter=0.0,
        flip_prob=flip_prob,
        bagcp=None,
        context_size=context_size,
        **options,
    )


@pytest.mark.parametrize("flip", [False, True])
def test_context_box_covers_the_crop(flip):
    frame = ramp_frame()
    out = pipeline(float(flip))(frame, np.random.default_rng(0))
    assert get_geometry(out).flipped == flip
    context = out.context
    assert context.image.shape == (47, 64)  # long side 64
    x1, y1, x2, y2 = context.box
    kx, ky = (x2 - x1) / out.width, (y2 - y1) / out.height
    np.testing.assert_allclose([kx, ky], [64 / 406, 47 / 300], rtol=1e-6)  # context px per input px
    # every crop pixel centre, mapped into the context, reads the same grey level there
    rows, cols = np.mgrid[0 : out.height, 0 : out.width] + 0.5
    context_x = x1 + kx * cols - 0.5  # context pixel-index coordinates
    context_y = y1 + ky * rows - 0.5
    seen = map_coordinates(context.image, [context_y.ravel(), context_x.ravel()], order=1)
    # (antialiasing weights are exact on a ramp up to ~0.02; 0.2 input px off would be 0.03 in y)
    np.testing.assert_allclose(seen.reshape(out.image.shape), out.image, atol=0.03)
    # the crop's slope in x follows the flip, so a context flipped the other way could not match
    assert (np.diff(out.image[:, :2], axis=1) < 0).all() == flip


def test_context_sky_is_the_frame_sky_flipped_like_the_sample():
    frame = ramp_frame()
    plain = pipeline(0.0)(frame, np.random.default_rng(0)).context
    flipped = pipeline(1.0)(frame, np.random.default_rng(0)).context
    assert set(np.unique(plain.sky_mask)) == {0, 1}
    assert plain.sky_mask[:, :21].all() and not plain.sky_mask[:, 22:].any()  # left third is sky
    np.testing.assert_array_equal(flipped.sky_mask, plain.sky_mask[:, ::-1])
    np.testing.assert_allclose(flipped.image, plain.image[:, ::-1])
    x1, _, x2, _ = plain.box
    fx1, _, fx2, _ = flipped.box
    np.testing.assert_allclose([fx1, fx2], [64 - x2, 64 - x1], rtol=1e-6)


def test_context_changes_nothing_else():
    frame = ramp_frame()
    source = ramp_frame(120, 90)
    with_context = build_train_pipeline(
        mode="native", scale=2.0, crop_size=48, bagcp="plain", context_size=64
    )
    without = build_train_pipeline(mode="native", scale=2.0, crop_size=48, bagcp="plain")
    a, records_a = with_context.apply(frame, np.random.default_rng(3), source)
    b, records_b = without.apply(frame, np.random.default_rng(3), source)
    assert records_a == records_b and len(records_a) > 0  # the pastes survive and keep the context
    for name in ("image", "boxes", "points", "target_mask", "sky_mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.context is not None and b.context is None
    assert a.copy().context is a.context


def test_collate_adds_the_context_to_the_targets():
    frame = ramp_frame()
    samples = [
        pipeline(1.0)(frame, np.random.default_rng(0)),
        pipeline(0.0)(ramp_frame(60, 90), np.random.default_rng(1)),
    ]
    _, targets = collate_samples(samples)
    for sample, target in zip(samples, targets, strict=True):
        assert target["context_image"].shape == (1, *sample.context.image.shape)
        assert target["context_image"].dtype == torch.float32
        assert torch.equal(target["context_sky"], torch.from_numpy(sample.context.sky_mask))
        assert target["crop_box"].tolist() == pytest.approx(list(sample.context.box))
    assert targets[1]["context_image"].shape == (1, 43, 64)
    _, plain_targets = collate_samples([ramp_frame()])
    assert "context_image" not in plain_targets[0]


def test_config_attaches_the_models_context_size(tmp_path):
    assert build_train_transform(load_config(None, ["model.name=bafenet_hr"])).context_size is None
    cfg = load_config(None, ["model.name=bafenet_hr", "model.kwargs={sky_context: true}"])
    assert build_train_transform(cfg).context_size == 256
    cfg = load_config(
        None, ["model.kwargs={sky_context: true, context_size: 128}", "data.sky_context_size=128"]
    )
    assert build_train_transform(cfg).context_size == 128
    cfg = load_config(None, ["model.kwargs={sky_context: true}", "data.sky_context_size=128"])
    with pytest.raises(ConfigError, match="differs from the model's context_size"):
        build_train_transform(cfg)
    with pytest.raises(ConfigError, match="sky_context_size must be >= 32"):
        load_config(None, ["data.sky_context_size=8"])
