"""BAG-CP: placement rules, box/mask bookkeeping, blending, presets, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from bafenet.data.bagcp import BackgroundAwareCopyPaste, PasteRecord, gaussian_weights
from bafenet.data.sample import Sample

FAITHFUL = BackgroundAwareCopyPaste.from_mode("faithful")
IMPROVED = BackgroundAwareCopyPaste.from_mode("improved")
PLAIN = BackgroundAwareCopyPaste.from_mode("plain")


def destination(seed: int, height: int = 96, width: int = 128) -> Sample:
    """Sky above a ragged horizon, with a few holes of non-sky, and some real targets."""
    rng = np.random.default_rng(seed)
    sky = np.zeros((height, width), np.uint8)
    horizon = (height * 0.6 + 6 * np.sin(np.arange(width) / 9.0)).astype(int)
    for col in range(width):
        sky[: horizon[col], col] = 1
    for _ in range(4):  # non-sky islands (clouds labelled "others") inside the sky
        r, c = rng.integers(0, height // 2), rng.integers(0, width - 10)
        sky[r : r + 6, c : c + 10] = 0
    image = rng.normal(60, 3, (height, width)).clip(0, 255).astype(np.float32)
    target_mask = np.zeros((height, width), np.uint8)
    boxes, points = [], []
    for _ in range(8):
        x, y = int(rng.integers(0, width - 4)), int(rng.integers(0, height - 4))
        target_mask[y : y + 3, x : x + 3] = 1
        image[y : y + 3, x : x + 3] += 50
        boxes.append([x, y, x + 3, y + 3])
        points.append([x + 1.5, y + 1.5])
    return Sample(image, np.array(boxes), target_mask, np.array(points), sky, image_id=f"dst{seed}")


SOURCE_BOXES = np.array(
    [
        [10, 10, 11, 11],  # 1x1
        [20, 10, 22, 13],  # 2x3
        [30, 10, 42, 14],  # 12x4 -> 7x7
        [50, 10, 50.7, 13],  # zero width after truncation -> skipped
        [3.6, 30.2, 6.9, 33.8],  # int edges 3..6, 30..33 -> 3x3
        [60, 30, 65, 35],  # 5x5
        [70, 30, 73, 34],
        [80, 30, 84, 33],
        [90, 30, 92, 32],
        [100, 30, 103, 33],
        [110, 40, 114, 44],
        [20, 50, 23, 53],
    ],
    dtype=np.float32,
)


def source(background: float = 70.0, contrast: float = 100.0) -> Sample:
    h, w = 80, 128
    image = np.full((h, w), background, np.float32)
    mask = np.zeros((h, w), np.uint8)
    for x1, y1, x2, y2 in SOURCE_BOXES.astype(int):
        mask[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)] = 1
    image[mask > 0] += contrast
    points = (SOURCE_BOXES[:, :2] + SOURCE_BOXES[:, 2:]) / 2
    return Sample(image, SOURCE_BOXES, mask, points, np.ones((h, w), np.uint8), image_id="src")


def expected_size(box: np.ndarray) -> tuple[int, int]:
    w = int(box[2]) - int(box[0])
    h = int(box[3]) - int(box[1])
    return (7, 7) if w >= 10 or h >= 10 else (w, h)


def grown(box: np.ndarray, height: int, width: int) -> tuple[slice, slice]:
    x1, y1, x2, y2 = box.astype(int)
    return slice(max(0, y1 - 1), min(height, y2 + 1)), slice(max(0, x1 - 1), min(width, x2 + 1))


def check_paste(
    dst: Sample,
    out: Sample,
    records: list[PasteRecord],
    cp: BackgroundAwareCopyPaste,
    source_boxes: np.ndarray = SOURCE_BOXES,
) -> None:
    n, h, w = dst.num_targets, dst.height, dst.width
    pasted = out.boxes[n:]
    assert len(pasted) == len(records) == len(out.points) - n
    # originals untouched, sky unchanged
    np.testing.assert_array_equal(out.boxes[:n], dst.boxes)
    np.testing.assert_array_equal(out.points[:n], dst.points)
    np.testing.assert_array_equal(out.sky_mask, dst.sky_mask)
    assert (out.target_mask >= dst.target_mask).all()
    new_mask = (out.target_mask > 0) & (dst.target_mask == 0)
    owner = np.full((h, w), -1)
    for i, (box, record) in enumerate(zip(pasted, records, strict=True)):
        np.testing.assert_array_equal(box, record.box)
        x1, y1, x2, y2 = box.astype(int)
        assert np.array_equal(box, [x1, y1, x2, y2]) and x2 > x1 and y2 > y1
        assert x1 >= 0 and x2 <= w and y1 >= 0 and y2 <= h
        # the box is the bounding box of the pasted mask pixels
        region = new_mask[y1:y2, x1:x2]
        ys, xs = np.nonzero(region)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (0, 0, x2 - x1, y2 - y1)
        if cp.mask_from == "box":
            assert region.all()
        assert (owner[y1:y2, x1:x2] == -1).all()
        owner[y1:y2, x1:x2] = i
        # point inside its box
        px, py = out.points[n + i]
        assert x1 < px < x2 and y1 < py < y2
        # in the sky (sky-aware modes)
        if cp.placement == "sky_clusters":
            assert (dst.sky_mask[y1:y2, x1:x2] == 1).all()
        # 1-px gap to every original target (mask and box) and every other paste
        rows, cols = grown(box, h, w)
        assert not dst.target_mask[rows, cols].any()
        for j, other in enumerate(out.boxes):
            if j != n + i:
                ox1, oy1, ox2, oy2 = other
                touches = ox1 < cols.stop and cols.start < ox2 and oy1 < rows.stop and rows.start < oy2
                assert not touches, (i, j)
        # faithful size rules (a fallback paste may be clipped by the image border)
        ew, eh = expected_size(source_boxes[record.source_index])
        if cp.mask_from == "box" and cp.large_side == 10:
            if x2 < w and y2 < h:
                assert (x2 - x1, y2 - y1) == (ew, eh)
            else:
                assert x2 - x1 <= ew and y2 - y1 <= eh
        assert cp.lam_range[0] <= record.lam <= cp.lam_range[1] or cp.blend == "replace"
    assert (owner[new_mask] >= 0).all()  # every new mask pixel belongs to a pasted box
    changed = out.image != dst.image
    if cp.placement == "sky_clusters":
        assert (dst.sky_mask[changed] == 1).all()
    if cp.blend == "gaussian":
        assert (out.image >= dst.image).all() and out.image.max() <= 255
    # clusters: at most cluster_size per group; in-window members fit in one window
    groups: dict[int, list[np.ndarray]] = {}
    for box, record in zip(pasted, records, strict=True):
        groups.setdefault(record.group, []).append(box)
        if cp.placement == "sky_clusters":
            assert len(groups[record.group]) <= cp.cluster_size
    if cp.placement == "sky_clusters":
        for g in groups:
            members = zip(pasted, records, strict=True)
            inside = np.array([b for b, r in members if r.group == g and r.in_window])
            if len(inside):
                assert inside[:, 2].max() - inside[:, 0].min() <= cp.window_size
                assert inside[:, 3].max() - inside[:, 1].min() <= cp.window_size


@pytest.mark.parametrize("cp", [FAITHFUL, IMPROVED, PLAIN], ids=["faithful", "improved", "plain"])
def test_paste_invariants_over_many_seeds(cp: BackgroundAwareCopyPaste) -> None:
    src = source()
    total = 0
    for seed in range(40):
        dst = destination(seed)
        out, records = cp.paste(dst, src, np.random.default_rng(seed))
        check_paste(dst, out, records, cp)
        total += len(records)
        k = len(records)
        assert k <= len(SOURCE_BOXES) - 1  # the zero-area box is never pasted
    assert total > 100  # it does paste


def test_all_targets_with_selected_false_and_counts() -> None:
    cp = BackgroundAwareCopyPaste(selected=False)
    out, records = cp.paste(destination(0), source(), np.random.default_rng(1))
    assert sorted(r.source_index for r in records) == [i for i in range(len(SOURCE_BOXES)) if i != 3]
    sizes = {r.source_index: tuple(r.to_dict()["size"]) for r in records}
    assert sizes[0] == (1, 1) and sizes[1] == (2, 3) and sizes[2] == (7, 7) and sizes[4] == (3, 3)
    # k ~ U{0..min(n, 99)}: over many calls every count from 0 to n appears
    counts = {len(FAITHFUL._select(12, np.random.default_rng(s))) for s in range(400)}
    assert counts == set(range(13))


def test_identical_seeds_identical_output() -> None:
    dst, src = destination(3), source()
    a, ra = FAITHFUL.paste(dst, src, np.random.default_rng(11))
    b, rb = FAITHFUL.paste(dst, src, np.random.default_rng(11))
    for name in ("image", "boxes", "points", "target_mask", "sky_mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert [r.to_dict() for r in ra] == [r.to_dict() for r in rb]
    c, _ = FAITHFUL.paste(dst, src, np.random.default_rng(12))
    assert not np.array_equal(a.image, c.image) or not np.array_equal(a.boxes, c.boxes)


@pytest.mark.parametrize("sky_value", [0, 255])
def test_no_sky_is_a_no_op(sky_value: int) -> None:
    dst = destination(0)
    dst = dst.replace(sky_mask=np.full_like(dst.sky_mask, sky_value))
    for cp in (FAITHFUL, IMPROVED):
        out, records = cp.paste(dst, source(), np.random.default_rng(0))
        assert out is dst and records == []
    out, records = PLAIN.paste(dst, source(), np.random.default_rng(0))  # plain ignores the sky
    assert records


def test_nothing_to_paste_and_prob_zero_are_no_ops() -> None:
    dst = destination(0)
    empty = Sample(np.zeros((20, 20)), sky_mask=np.ones((20, 20), np.uint8))
    assert FAITHFUL.paste(dst, empty, np.random.default_rng(0)) == (dst, [])
    never = BackgroundAwareCopyPaste(prob=0.0)
    assert never.paste(dst, source(), np.random.default_rng(0)) == (dst, [])


def test_inputs_are_not_modified() -> None:
    dst, src = destination(2), source()
    before = [a.copy() for a in (dst.image, dst.target_mask, dst.boxes, src.image)]
    FAITHFUL.paste(dst, src, np.random.default_rng(0))
    for a, b in zip(before, (dst.image, dst.target_mask, dst.boxes, src.image), strict=True):
        np.testing.assert_array_equal(a, b)


def test_gaussian_blend_is_additive_and_min_max_normalised() -> None:
    dst = destination(0)
    dst = dst.replace(image=np.full_like(dst.image, 50.0))
    src = source(background=100.0, contrast=0.0)  # constant patch P = 100
    cp = BackgroundAwareCopyPaste(selected=False)
    out, records = cp.paste(dst, src, np.random.default_rng(5))
    for record in records:
        x1, y1, x2, y2 = (int(v) for v in record.box)
        weights = (out.image[y1:y2, x1:x2] - 50.0) / (record.lam * 100.0)
        if weights.size == 1:  # 1x1: G = 1, not the official NaN -> 255
            assert weights.item() == pytest.approx(1.0, abs=1e-5)
        else:
            assert weights.max() == pytest.approx(1.0, abs=1e-4)
            assert weights.min() == pytest.approx(0.0, abs=1e-4)
        assert record.peak_gain == pytest.approx(record.lam * 100.0, rel=1e-4)


def test_saturation_at_255() -> None:
    dst = destination(0)
    dst = dst.replace(image=np.full_like(dst.image, 200.0))
    cp = BackgroundAwareCopyPaste(selected=False)
    out, records = cp.paste(dst, source(200.0, 55.0), np.random.default_rng(0))
    assert records and out.image.max() == 255.0


def test_improved_pastes_contrast_and_source_masks() -> None:
    src = source(background=70.0, contrast=40.0)
    plus = np.zeros_like(src.target_mask)
    plus[[9, 10, 10, 10, 11], [21, 20, 21, 22, 21]] = 1  # a plus-shaped target in box [20, 9, 23, 12]
    boxes = np.array([[20, 9, 23, 12]], np.float32)
    image = np.full_like(src.image, 70.0)
    image[plus > 0] = 110.0
    src = Sample(image, boxes, plus, [[21.5, 10.5]], np.ones_like(plus), image_id="plus")
    dst = destination(1)
    improved = BackgroundAwareCopyPaste.from_mode("improved", selected=False)
    out, records = improved.paste(dst, src, np.random.default_rng(0))
    (record,) = records
    x1, y1, x2, y2 = (int(v) for v in record.box)
    assert (x2 - x1, y2 - y1) == (3, 3)
    new = (out.target_mask > 0) & (dst.target_mask == 0)
    np.testing.assert_array_equal(new[y1:y2, x1:x2], plus[9:12, 20:23].astype(bool))
    assert record.peak_gain == pytest.approx(record.lam * 40.0, rel=1e-4)  # contrast, not the raw 110
    raw, raw_records = BackgroundAwareCopyPaste(selected=False).paste(dst, src, np.random.default_rng(0))
    assert raw_records[0].peak_gain > 40.0


def test_plain_replaces_pixels_with_the_raw_patch() -> None:
    dst, src = destination(0), source(background=70.0, contrast=100.0)
    out, records = PLAIN.paste(dst, src, np.random.default_rng(4))
    assert records
    for record in records:
        x1, y1, x2, y2 = (int(v) for v in record.box)
        sx1, sy1, sx2, sy2 = (int(v) for v in SOURCE_BOXES[record.source_index])
        if (sx2 - sx1, sy2 - sy1) == (x2 - x1, y2 - y1):
            np.testing.assert_array_equal(out.image[y1:y2, x1:x2], src.image[sy1:sy2, sx1:sx2])


def test_narrow_sky_shrinks_the_windows() -> None:
    dst = destination(0)
    sky = np.zeros_like(dst.sky_mask)
    sky[70:80, :] = 1  # a 10-row strip: 25-px windows cannot fit, 10 and 7 can
    dst = Sample(dst.image, sky_mask=sky, image_id="strip")
    cp = BackgroundAwareCopyPaste(selected=False)
    out, records = cp.paste(dst, source(), np.random.default_rng(0))
    in_window = [r for r in records if r.in_window]
    assert in_window
    for record in records:
        x1, y1, x2, y2 = record.box
        assert y1 >= 70 and y2 <= 80
    for g in {r.group for r in in_window}:
        boxes = np.array([r.box for r in in_window if r.group == g])
        assert boxes[:, 3].max() - boxes[:, 1].min() <= 10


def test_gaussian_weights_shape_and_range() -> None:
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (1, 5), (3, 3), (7, 7), (4, 2)]:
        g = gaussian_weights(h, w, rng)
        assert g.shape == (h, w) and g.min() >= 0 and g.max() == pytest.approx(1.0)


def test_presets_and_validation() -> None:
    assert BackgroundAwareCopyPaste() == FAITHFUL
    assert IMPROVED.contrast == "background_subtracted" and IMPROVED.mask_from == "source_mask"
    assert IMPROVED.blend == "add" and IMPROVED.lam_range == (0.75, 1.25)
    assert PLAIN.placement == "anywhere" and PLAIN.blend == "replace"
    assert BackgroundAwareCopyPaste.from_mode("faithful", window_size=31).window_size == 31
    with pytest.raises(ValueError, match="mode"):
        BackgroundAwareCopyPaste.from_mode("fancy")
    with pytest.raises(ValueError, match="prob"):
        BackgroundAwareCopyPaste(prob=1.5)


def test_real_pairs_follow_the_rules(real_devkit) -> None:
    from bafenet.data import open_dataset
    from bafenet.data.transforms import resize

    dataset = open_dataset(real_devkit, "train_v2")
    rng = np.random.default_rng(0)
    for i in range(4):
        dst = resize(dataset[i], 512)
        src = resize(dataset[len(dataset) - 1 - i], 512)
        out, records = FAITHFUL.paste(dst, src, rng)
        check_paste(dst, out, records, FAITHFUL, source_boxes=src.boxes)
        assert out.num_targets == dst.num_targets + len(records)
