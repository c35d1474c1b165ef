"""Pipelines, the reproducible augmented dataset and batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, SequentialSampler

from bafenet.data.collate import collate_samples
from bafenet.data.pipeline import AugmentedDataset, build_eval_pipeline, build_train_pipeline
from bafenet.data.sample import Sample
from bafenet.data.transforms import get_geometry


def scene(seed: int, height: int = 60, width: int = 80) -> Sample:
    rng = np.random.default_rng(seed)
    image = rng.normal(60, 4, (height, width)).astype(np.float32)
    sky = np.zeros((height, width), np.uint8)
    sky[: height * 2 // 3] = 1
    mask = np.zeros((height, width), np.uint8)
    boxes = []
    for k in range(4):
        x, y = 6 + 16 * k, int(rng.integers(2, height // 2))
        mask[y : y + 3, x : x + 3] = 1
        image[y : y + 3, x : x + 3] += 80
        boxes.append([x, y, x + 3, y + 3])
    points = np.array(boxes, np.float32)[:, :2] + 1.5
    return Sample(image, np.array(boxes), mask, points, sky, image_id=f"img{seed}")


DATASET = [scene(s, 60 + 4 * s, 80 - 3 * s) for s in range(5)]


def assert_same(a: Sample, b: Sample) -> None:
    for name in ("image", "boxes", "points", "target_mask", "sky_mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_augmented_dataset_is_reproducible_per_seed_epoch_index() -> None:
    pipeline = build_train_pipeline(size=64)
    data = AugmentedDataset(DATASET, pipeline, seed=3, repeat=3)
    assert len(data) == 15
    first = [data[i] for i in range(len(data))]
    again = AugmentedDataset(DATASET, pipeline, seed=3, repeat=3)
    for i in (0, 7, 14):
        assert_same(first[i], again[i])
    assert first[0].image.shape == (64, 64)
    # repeats of one image differ (own randomness), as do other epochs and other seeds
    assert any(not np.array_equal(first[0].image, first[k].image) for k in (5, 10))
    data.set_epoch(1)
    assert data.epoch == 1
    assert any(not np.array_equal(first[i].image, data[i].image) for i in range(5))
    other_seed = AugmentedDataset(DATASET, pipeline, seed=4, repeat=3)
    assert any(not np.array_equal(first[i].image, other_seed[i].image) for i in range(5))
    assert any(d.num_targets > s.num_targets for d, s in zip(first, DATASET * 3, strict=True))  # BAG-CP ran
    with pytest.raises(IndexError):
        data[15]


def test_set_epoch_reaches_persistent_workers() -> None:
    data = AugmentedDataset(DATASET, build_train_pipeline(size=64), seed=0)
    loader = DataLoader(
        data,
        batch_size=2,
        sampler=SequentialSampler(data),
        num_workers=1,
        persistent_workers=True,
        collate_fn=collate_samples,
    )
    for epoch in (0, 2):
        data.set_epoch(epoch)
        images, targets = next(iter(loader))
        expected, _ = collate_samples([data[0], data[1]])
        torch.testing.assert_close(images, expected)
        assert [t["image_id"] for t in targets] == ["img0", "img1"]


def test_collate_pads_to_a_multiple_and_keeps_metadata() -> None:
    eval_pipeline = build_eval_pipeline(size=(50, 70))
    samples = [eval_pipeline(DATASET[0]), DATASET[1]]
    images, targets = collate_samples(samples, size_divisor=32)
    assert images.shape == (2, 1, 64, 96) and images.dtype == torch.float32
    assert (images[0, 0, 50:, :] == 0).all() and (images[0, 0, :, 70:] == 0).all()
    t0, t1 = targets
    assert t0["sky_mask"].shape == (64, 96) and (t0["sky_mask"][50:] == 255).all()
    assert (t0["target_mask"][50:] == 0).all() and t0["target_mask"].dtype == torch.uint8
    assert t0["boxes"].dtype == torch.float32 and t0["boxes"].shape == (4, 4)
    assert t0["labels"].tolist() == [0, 0, 0, 0]
    assert t0["image_size"] == (50, 70) and t0["original_size"] == (60, 80)
    assert t0["scale"] == pytest.approx((50 / 60, 70 / 80)) and not t0["flipped"]
    assert t1["image_size"] == t1["original_size"] == (64, 77) and t1["scale"] == (1.0, 1.0)
    torch.testing.assert_close(images[1, 0, :64, :77], torch.from_numpy(DATASET[1].image))
    assert collate_samples([DATASET[0]], size_divisor=1)[0].shape == (1, 1, 60, 80)


def test_native_mode_crops_and_scales() -> None:
    pipeline = build_train_pipeline(mode="native", scale=2.0, crop_size=48, bagcp=None, flip_prob=0.0)
    out = pipeline(DATASET[0], np.random.default_rng(0))
    assert out.image.shape == (48, 48) and out.num_targets >= 1
    geometry = get_geometry(out)
    assert geometry.scale_factors == (2.0, 2.0)
    np.testing.assert_allclose(geometry.boxes_to_original(out.boxes)[0] % 1, 0, atol=1e-5)
    assert build_eval_pipeline(mode="native")(DATASET[0]) is DATASET[0]
    assert build_eval_pipeline(mode="native", scale=2.0)(DATASET[0]).image.shape == (120, 160)


def test_pipeline_records_and_options() -> None:
    pipeline = build_train_pipeline(
        size=64, flip_prob=1.0, bagcp="improved", bagcp_options={"cluster_size": 3}
    )
    assert pipeline.copy_paste.cluster_size == 3 and pipeline.copy_paste.contrast == "background_subtracted"
    out, records = pipeline.apply(DATASET[0], np.random.default_rng(1), DATASET[2])
    assert get_geometry(out).flipped
    assert out.num_targets == DATASET[0].num_targets + len(records)
    with pytest.raises(ValueError, match="mode"):
        build_train_pipeline(mode="tiles")
