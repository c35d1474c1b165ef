"""Joint transforms keep image, boxes, target mask, points and sky consistent."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bafenet.data.sample import Sample
from bafenet.data.transforms import (
    PhotometricJitter,
    crop,
    get_geometry,
    hflip,
    pad,
    random_crop_around_target,
    resize,
    resized_shape,
)

FAST = settings(max_examples=25, deadline=None)


def coded_scene(seed: int, height: int, width: int, max_targets: int = 6) -> Sample:
    """Rectangular, non-touching targets; the image encodes everything:

    ``image = 10 * (k + 1) + sky`` on target ``k``'s pixels and ``sky`` (0/1) elsewhere, so the
    target id and sky label of every pixel can be read back after exact transforms.
    """
    rng = np.random.default_rng(seed)
    sky = np.zeros((height, width), np.uint8)
    horizon = int(rng.integers(0, height + 1))
    sky[:horizon] = 1
    ids = np.zeros((height, width), np.int64)
    boxes, points = [], []
    for _ in range(50):
        if len(boxes) == max_targets:
            break
        w, h = (int(v) for v in rng.integers(1, 6, size=2))
        if w > width or h > height:
            continue
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        if ids[max(0, y - 1) : y + h + 1, max(0, x - 1) : x + w + 1].any():
            continue
        ids[y : y + h, x : x + w] = len(boxes) + 1
        boxes.append([x, y, x + w, y + h])
        points.append([x + w // 2 + 0.5, y + h // 2 + 0.5])
    image = (10 * ids + sky).astype(np.float32)
    return Sample(
        image=image,
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        target_mask=(ids > 0).astype(np.uint8),
        points=np.array(points, np.float32).reshape(-1, 2),
        sky_mask=sky,
        image_id=f"scene{seed}",
    )


def target_ids(sample: Sample) -> np.ndarray:
    return (np.rint(sample.image).astype(np.int64) // 10) - 1  # -1: background


def assert_exact_consistency(sample: Sample, valid: np.ndarray | None = None) -> None:
    """After exact ops: every box is exactly its target's visible pixels, masks and sky agree."""
    ids = target_ids(sample)
    valid = np.ones(ids.shape, bool) if valid is None else valid
    assert ((sample.target_mask == 1) == (ids >= 0))[valid].all()
    sky = np.rint(sample.image).astype(np.int64) % 10
    assert (sample.sky_mask[valid] == sky[valid]).all()
    for box, point in zip(sample.boxes, sample.points, strict=True):
        x1, y1, x2, y2 = box.astype(int)
        assert np.array_equal(box, [x1, y1, x2, y2])  # exact ops keep integer edges
        region = ids[y1:y2, x1:x2]
        assert region.size > 0 and (region == region.flat[0]).all() and region.flat[0] >= 0
        assert (ids == region.flat[0]).sum() == region.size  # nothing of the target outside its box
        assert x1 <= point[0] <= x2 and y1 <= point[1] <= y2


scenes = st.builds(
    coded_scene,
    seed=st.integers(0, 2**31),
    height=st.integers(6, 40),
    width=st.integers(6, 40),
)


@FAST
@given(scenes)
def test_hflip_is_exact_and_an_involution(sample: Sample) -> None:
    out = hflip(sample)
    assert_exact_consistency(out)
    w = sample.width
    np.testing.assert_array_equal(out.boxes[:, [0, 2]], w - sample.boxes[:, [2, 0]])
    np.testing.assert_array_equal(out.points[:, 0], w - sample.points[:, 0])
    back = hflip(out)
    for name in ("image", "boxes", "points", "target_mask", "sky_mask"):
        np.testing.assert_array_equal(getattr(back, name), getattr(sample, name))
    assert get_geometry(out).flipped and not get_geometry(back).flipped


@FAST
@given(scenes, st.integers(0, 20), st.integers(0, 20), st.sampled_from([None, 8, 32]))
def test_pad_keeps_annotations_and_marks_padding_unknown(
    sample: Sample, extra_h: int, extra_w: int, div
) -> None:
    if div is None:
        out = pad(sample, (sample.height + extra_h, sample.width + extra_w))
        assert out.image.shape == (sample.height + extra_h, sample.width + extra_w)
    else:
        out = pad(sample, size_divisor=div)
        assert out.height % div == 0 and out.width % div == 0
        assert out.height - sample.height < div and out.width - sample.width < div
    h, w = sample.height, sample.width
    inside = np.zeros(out.image.shape, bool)
    inside[:h, :w] = True
    assert_exact_consistency(out, valid=inside)
    assert (out.sky_mask[~inside] == 255).all()
    assert (out.image[~inside] == 0).all() and (out.target_mask[~inside] == 0).all()


@FAST
@given(scenes, st.data())
def test_crop_clips_boxes_and_drops_mostly_hidden_ones(sample: Sample, data: st.DataObject) -> None:
    height = data.draw(st.integers(1, sample.height))
    width = data.draw(st.integers(1, sample.width))
    top = data.draw(st.integers(0, sample.height - height))
    left = data.draw(st.integers(0, sample.width - width))
    min_visible = data.draw(st.sampled_from([0.0, 0.5, 1.0]))
    out = crop(sample, top, left, height, width, min_visible=min_visible)
    assert out.image.shape == (height, width)
    assert_exact_consistency_crop(sample, out, top, left, min_visible)
    geometry = get_geometry(out)
    np.testing.assert_allclose(geometry.boxes_to_original(out.boxes), boxes_in_window(sample, top, left, out))


def boxes_in_window(sample: Sample, top: int, left: int, out: Sample) -> np.ndarray:
    return out.boxes + np.float32([left, top, left, top])


def assert_exact_consistency_crop(
    sample: Sample, out: Sample, top: int, left: int, min_visible: float
) -> None:
    ids_in = target_ids(sample)
    ids = target_ids(out)
    assert ((out.target_mask == 1) == (ids >= 0)).all()
    assert (out.sky_mask == np.rint(out.image).astype(np.int64) % 10).all()
    kept = set()
    for box, point in zip(out.boxes, out.points, strict=True):
        x1, y1, x2, y2 = box.astype(int)
        region = ids[y1:y2, x1:x2]
        k = region.flat[0]
        assert k >= 0 and (region == k).all() and (ids == k).sum() == region.size
        assert x1 < point[0] < x2 and y1 < point[1] < y2
        kept.add(int(k))
    for k in range(sample.num_targets):
        visible = (ids == k).sum()
        total = (ids_in == k).sum()
        if k not in kept:  # dropped: hidden, or less than min_visible of it shows
            assert visible == 0 or visible < min_visible * total


@FAST
@given(scenes, st.integers(1, 4), st.integers(1, 4))
def test_integer_upscale_is_exact(sample: Sample, fy: int, fx: int) -> None:
    out = resize(sample, (sample.height * fy, sample.width * fx))
    # masks nearest: the union of scaled boxes is exactly the target mask
    union = np.zeros(out.target_mask.shape, np.uint8)
    for x1, y1, x2, y2 in out.boxes.astype(int):
        union[y1:y2, x1:x2] = 1
    np.testing.assert_array_equal(out.target_mask, union)
    np.testing.assert_array_equal(out.sky_mask, np.repeat(np.repeat(sample.sky_mask, fy, 0), fx, 1))
    np.testing.assert_allclose(out.points, sample.points * [fx, fy])
    assert get_geometry(out).scale_factors == (fy, fx)


def nearest_source_index(n_out: int, n_in: int) -> np.ndarray:
    """Source row of each output row under nearest resizing, ``floor(i * n_in / n_out)``.

    The ratio and the product are rounded to float32 as the resize kernel does, so that e.g.
    row 23 of 14 -> 46 reads source row 6 (23 * float32(14 / 46) = 6.99999...), not 7.
    """
    scale = np.float32(n_in) / np.float32(n_out)
    index = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(int)
    return np.minimum(index, n_in - 1)


@FAST
@given(scenes, st.integers(3, 50), st.integers(3, 50))
def test_any_resize_keeps_masks_within_scaled_boxes(sample: Sample, new_h: int, new_w: int) -> None:
    out = resize(sample, (new_h, new_w))
    assert out.image.shape == out.sky_mask.shape == out.target_mask.shape == (new_h, new_w)
    # nearest sampling as cv2 INTER_NEAREST: out[i, j] = in[floor(i * H / H'), floor(j * W / W')]
    rows = nearest_source_index(new_h, sample.height)
    cols = nearest_source_index(new_w, sample.width)
    np.testing.assert_array_equal(out.sky_mask, sample.sky_mask[rows][:, cols])
    np.testing.assert_array_equal(out.target_mask, sample.target_mask[rows][:, cols])
    # every target pixel lies within 1 px of a box; boxes and points inside the image
    near_box = np.zeros((new_h, new_w), bool)
    for x1, y1, x2, y2 in out.boxes:
        rows = slice(max(0, int(y1) - 1), int(np.ceil(y2)) + 1)
        near_box[rows, max(0, int(x1) - 1) : int(np.ceil(x2)) + 1] = True
    assert not (out.target_mask.astype(bool) & ~near_box).any()
    assert (out.boxes[:, [0, 2]] <= new_w).all() and (out.boxes[:, [1, 3]] <= new_h).all()
    assert (out.boxes >= 0).all()
    px, py, b = out.points[:, 0], out.points[:, 1], out.boxes
    assert ((b[:, 0] <= px) & (px <= b[:, 2]) & (b[:, 1] <= py) & (py <= b[:, 3])).all()
    # the image stays within the input's grey-level range (bilinear is a convex combination)
    assert out.image.min() >= sample.image.min() - 1e-4 and out.image.max() <= sample.image.max() + 1e-4


def reference_bilinear(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Independent half-pixel-centre bilinear resize without antialiasing (cv2 INTER_LINEAR)."""

    def taps(n_out: int, n_in: int):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    r0, r1, fr = taps(height, a.shape[0])
    c0, c1, fc = taps(width, a.shape[1])
    top = a[r0][:, c0] * (1 - fc) + a[r0][:, c1] * fc
    bottom = a[r1][:, c0] * (1 - fc) + a[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


@pytest.mark.parametrize("shape", [(512, 512), (16, 16), (90, 20), (101, 130)])
def test_resize_is_plain_bilinear_without_antialiasing(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (203, 257)).astype(np.float32)
    out = resize(Sample(image=image), shape)
    np.testing.assert_allclose(out.image, reference_bilinear(image.astype(np.float64), *shape), atol=1e-2)
    # antialiasing changes a downscale (a 1-px bright dot is spread instead of sampled)
    smooth = resize(Sample(image=image), shape, antialias=True)
    if shape[0] < image.shape[0]:
        assert not np.allclose(smooth.image, out.image, atol=1.0)


def test_resized_shape_rules() -> None:
    assert resized_shape(1024, 1280, 512) == (512, 512)
    # keep_ratio: long side to the longer target, short side to the shorter (official rule)
    assert resized_shape(1024, 1280, (512, 512), keep_ratio=True) == (410, 512)
    assert resized_shape(240, 320, (512, 1024), keep_ratio=True) == (512, 683)
    assert resized_shape(100, 201, scale=2.0) == (200, 402)
    with pytest.raises(ValueError):
        resized_shape(10, 10, 5, scale=2.0)


def test_resize_geometry_maps_boxes_back() -> None:
    sample = coded_scene(3, 40, 60)
    out = hflip(resize(sample, (32, 32)))
    geometry = get_geometry(out)
    assert geometry.original_size == (40, 60)
    np.testing.assert_allclose(geometry.scale_factors, (32 / 40, 32 / 60))
    np.testing.assert_allclose(geometry.boxes_to_original(out.boxes), sample.boxes, atol=1e-4)


def test_random_crop_keeps_a_target_and_has_the_crop_size() -> None:
    for seed in range(20):
        sample = coded_scene(seed, 120, 150)
        rng = np.random.default_rng(seed)
        out = random_crop_around_target(sample, rng, (48, 64), jitter=0.4)
        assert out.image.shape == (48, 64)
        if sample.num_targets:
            assert out.num_targets >= 1
    small = coded_scene(1, 20, 30)
    out = random_crop_around_target(small, np.random.default_rng(0), 64)
    assert out.image.shape == (64, 64) and (out.sky_mask[20:] == 255).all()
    assert out.num_targets == small.num_targets


def test_background_crops_are_uniform_and_off_by_default() -> None:
    sample = coded_scene(3, 200, 240)
    assert sample.num_targets
    # probability 0 draws nothing extra: the crops of earlier versions, bit for bit
    for seed in range(5):
        old = random_crop_around_target(sample, np.random.default_rng(seed), 48)
        new = random_crop_around_target(sample, np.random.default_rng(seed), 48, background_prob=0.0)
        np.testing.assert_array_equal(old.image, new.image)
    # probability 1: placed uniformly, so most crops of a large frame miss every target
    hits = [
        random_crop_around_target(
            sample, np.random.default_rng(seed), 16, jitter=0.0, background_prob=1.0
        ).num_targets
        > 0
        for seed in range(200)
    ]
    near = [
        random_crop_around_target(sample, np.random.default_rng(seed), 16, jitter=0.0).num_targets > 0
        for seed in range(200)
    ]
    assert all(near)
    assert sum(hits) < 100


def test_photometric_jitter_stays_in_range_and_is_seeded() -> None:
    sample = coded_scene(0, 30, 30)
    sample = sample.replace(image=np.random.default_rng(0).uniform(0, 255, (30, 30)).astype(np.float32))
    jitter = PhotometricJitter(prob=1.0, noise_std_range=(5.0, 5.0))
    a = jitter(sample, np.random.default_rng(7))
    b = jitter(sample, np.random.default_rng(7))
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.min() >= 0 and a.image.max() <= 255 and not np.array_equal(a.image, sample.image)
    np.testing.assert_array_equal(a.target_mask, sample.target_mask)
    np.testing.assert_array_equal(a.boxes, sample.boxes)


def test_real_sample_stays_consistent_through_resize_and_flip(real_devkit) -> None:
    from bafenet.data import open_dataset

    dataset = open_dataset(real_devkit, "train_v2")
    for index in (0, 1):
        sample = dataset[index]
        out = hflip(resize(sample, 512))
        assert out.image.shape == out.sky_mask.shape == (512, 512) and out.num_targets == sample.num_targets
        near_box = np.zeros((512, 512), bool)
        for x1, y1, x2, y2 in out.boxes:
            near_box[
                max(0, int(y1) - 1) : int(np.ceil(y2)) + 1, max(0, int(x1) - 1) : int(np.ceil(x2)) + 1
            ] = True
        # real masks agree with their boxes up to the 1-px rounding of the nearest resize
        assert (out.target_mask.astype(bool) & ~near_box).mean() < 1e-4
        np.testing.assert_allclose(get_geometry(out).boxes_to_original(out.boxes), sample.boxes, atol=1e-3)
        assert set(np.unique(out.sky_mask)) <= {0, 1}
