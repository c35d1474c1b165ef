"""The devkit reader: values and conventions, splits, cache, bad input, and the real release."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bafenet.data import available_splits, open_dataset
from bafenet.data.densesirst import DenseSIRST, match_points_to_boxes
from bafenet.data.sample import box_sizes
from bafenet.data.voc_xml import parse_voc_xml
from bafenet.errors import DataError


def _points_inside(boxes: np.ndarray, points: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    x, y = points[:, 0], points[:, 1]
    return (
        (boxes[:, 0] - tolerance <= x)
        & (x < boxes[:, 2] + tolerance)
        & (boxes[:, 1] - tolerance <= y)
        & (y < boxes[:, 3] + tolerance)
    )


# ---------------------------------------------------------------------------- tiny devkit
def test_reads_every_annotation_kind(tiny_devkit: Path, tiny_data) -> None:
    dataset = DenseSIRST(tiny_devkit, "train_v2")
    assert dataset.ids == ["Misc_1", "iraytek-7"]
    assert len(dataset) == 2 and dataset.split == "train_v2" and dataset.root == tiny_devkit
    sample = dataset[0]
    boxes = tiny_data.targets["Misc_1"]
    assert sample.image_id == "Misc_1"
    assert sample.path == tiny_devkit / "PNGImages" / "Misc_1.png"
    assert sample.image.shape == (40, 48) and sample.image.dtype == np.float32
    np.testing.assert_array_equal(sample.boxes, boxes)  # XML numbers used as is
    np.testing.assert_array_equal(sample.target_mask, tiny_data.target_mask(boxes))
    np.testing.assert_array_equal(sample.points, np.array(tiny_data.points(boxes)) + 0.5)
    assert set(np.unique(sample.sky_mask)) == {0, 1}
    assert sample.sky_mask[:30].all() and not sample.sky_mask[30:].any()
    assert sample.image[sample.target_mask > 0].min() == 220


def test_points_follow_box_order_although_the_file_is_reversed(tiny_devkit: Path) -> None:
    first_line = (tiny_devkit / "SIRST/Point_label/iraytek-7_pixels0.txt").read_text().splitlines()[0]
    sample = DenseSIRST(tiny_devkit).load("iraytek-7")
    assert [float(v) + 0.5 for v in first_line.split()] == sample.points[-1].tolist()
    assert _points_inside(sample.boxes, sample.points).all()


def test_rgb_image_becomes_grey(tiny_devkit: Path) -> None:
    sample = DenseSIRST(tiny_devkit).load("iraytek-7")  # stored as RGB
    assert sample.image.ndim == 2 and sample.image.max() == pytest.approx(220, abs=0.01)


def test_match_points_to_boxes_shuffled_and_one_pixel_outside() -> None:
    boxes = np.array([[10, 10, 13, 13], [14, 10, 17, 13], [30, 5, 34, 9]], dtype=np.float32)
    points = np.array([[31, 6], [10, 9], [15, 11]], dtype=np.float64)  # (10, 9) is 1 px above box 0
    order = match_points_to_boxes(points, boxes)
    np.testing.assert_array_equal(points[order], [[10, 9], [15, 11], [31, 6]])


def test_all_images_sorted_when_no_split(tiny_devkit: Path, tiny_data) -> None:
    dataset = DenseSIRST(tiny_devkit, split=None)
    assert dataset.ids == sorted(tiny_data.targets)
    assert [s.num_targets for s in dataset] == [len(tiny_data.targets[i]) for i in dataset.ids]


def test_split_by_path_and_blank_lines(tiny_devkit: Path, tmp_path: Path) -> None:
    split_file = tmp_path / "mine.txt"
    split_file.write_text("\n iraytek-7 \n\nMisc_2.png\n")
    assert DenseSIRST(tiny_devkit, split_file).ids == ["iraytek-7", "Misc_2"]
    assert DenseSIRST(tiny_devkit, "Splits/val_v2.txt").ids == ["Misc_2"]


def test_unknown_split_lists_available(tiny_devkit: Path) -> None:
    with pytest.raises(
        DataError, match=r"unknown split 'test_v2'; available splits: train_v2, trainval_v2, val_v2"
    ):
        DenseSIRST(tiny_devkit, "test_v2")
    assert available_splits(tiny_devkit) == ["train_v2", "trainval_v2", "val_v2"]
    with pytest.raises(DataError, match="split file not found"):
        DenseSIRST(tiny_devkit, "nowhere/list.txt")


def test_split_entry_without_image(tiny_devkit: Path) -> None:
    (tiny_devkit / "Splits" / "broken.txt").write_text("Misc_1\nMisc_404")
    with pytest.raises(DataError, match=r"1 listed image\(s\) not in PNGImages/: Misc_404") as info:
        DenseSIRST(tiny_devkit, "broken")
    assert info.value.path == tiny_devkit / "Splits" / "broken.txt"


def test_repeated_split_entry_is_refused(tiny_devkit: Path) -> None:
    split = tiny_devkit / "Splits" / "dup.txt"
    split.write_text("Misc_1\nMisc_2\nMisc_1.png")  # the same image, once with its extension
    with pytest.raises(DataError) as info:
        open_dataset(tiny_devkit, "dup")
    assert str(info.value) == f"{split}: 'Misc_1' is listed more than once"


# entries that name a path instead of an image: each is refused, none is looked up
PATH_ENTRIES = [
    "../../etc/passwd",
    "/etc/passwd",
    "a/../../x",
    "..",
    "../secret",
    "..\\secret",
    "PNGImages/Misc_1",
]


@pytest.mark.parametrize("entry", PATH_ENTRIES)
def test_split_entry_that_is_a_path_is_refused(tiny_devkit: Path, entry: str) -> None:
    (tiny_devkit.parent / "secret.png").write_bytes(b"not part of the dataset")
    split = tiny_devkit / "Splits" / "evil.txt"
    split.write_text(f"Misc_1\n{entry}\n")
    with pytest.raises(DataError) as info:
        DenseSIRST(tiny_devkit, "evil")
    assert str(info.value) == f"{split}: {entry!r} is a path; a split file lists image names only"


def test_several_split_problems_give_one_line(tiny_devkit: Path) -> None:
    split = tiny_devkit / "Splits" / "bad.txt"
    split.write_text("Misc_1\nMisc_1\n../x\nMisc_2\nMisc_2")
    with pytest.raises(DataError) as info:
        DenseSIRST(tiny_devkit, "bad")
    assert str(info.value) == (
        f"{split}: 'Misc_1' is listed more than once (and 2 more problem(s): run 'bafenet data check')"
    )


def test_cache_returns_equal_independent_samples(tiny_devkit: Path) -> None:
    plain = DenseSIRST(tiny_devkit)
    cached = DenseSIRST(tiny_devkit, cache=True)
    first = cached[2]
    first.target_mask[:] = 0  # a transform writing in place must not reach the cache
    first.boxes += 5
    first.image[:] = 0
    for reference, again in ((plain[2], cached[2]), (plain[0], cached[0])):
        for name in ("image", "boxes", "target_mask", "points", "sky_mask"):
            np.testing.assert_array_equal(getattr(reference, name), getattr(again, name))
    (tiny_devkit / "PNGImages" / "iraytek-7.png").unlink()
    assert cached.load("iraytek-7").num_targets == 4  # served from memory


def test_open_dataset_picks_the_devkit_reader(tiny_devkit: Path, tmp_path: Path) -> None:
    dataset = open_dataset(tiny_devkit, "val_v2", cache=True)
    assert isinstance(dataset, DenseSIRST) and dataset.ids == ["Misc_2"]
    with pytest.raises(DataError, match="dataset folder not found"):
        open_dataset(tmp_path / "absent")


def test_fallback_mask_files(tiny_devkit: Path) -> None:
    expected = DenseSIRST(tiny_devkit).load("Misc_1")
    (tiny_devkit / "SkySeg/PaletteMask/Misc_1.png").unlink()
    (tiny_devkit / "SIRST/BinaryMask/Misc_1_pixels0.png").unlink()
    sample = DenseSIRST(tiny_devkit).load("Misc_1")
    np.testing.assert_array_equal(sample.sky_mask, expected.sky_mask)
    np.testing.assert_array_equal(sample.target_mask, expected.target_mask)


# ---------------------------------------------------------------------------- bad input
def _break_and_load(devkit: Path, relative: str, action) -> DataError:
    path = devkit / relative
    action(path)
    with pytest.raises(DataError) as info:
        DenseSIRST(devkit).load("Misc_1")
    assert str(path) in str(info.value)
    return info.value


def test_missing_annotation_files(tiny_devkit: Path) -> None:
    error = _break_and_load(tiny_devkit, "SIRST/BBox/Misc_1.xml", Path.unlink)
    assert "file not found" in error.problem
    shutil.copy(tiny_devkit / "SIRST/BBox/Misc_2.xml", tiny_devkit / "SIRST/BBox/Misc_1.xml")
    (tiny_devkit / "SkySeg/BinaryMask/Misc_2_pixels0.png").unlink()
    (tiny_devkit / "SkySeg/PaletteMask/Misc_2.png").unlink()
    with pytest.raises(DataError, match="file not found") as info:
        DenseSIRST(tiny_devkit).load("Misc_2")
    assert info.value.path == tiny_devkit / "SkySeg/PaletteMask/Misc_2.png"


def test_truncated_png(tiny_devkit: Path, tiny_data) -> None:
    error = _break_and_load(tiny_devkit, "PNGImages/Misc_1.png", tiny_data.truncate_file)
    assert "cannot decode image" in error.problem


def test_xml_bomb_and_malformed_xml(tiny_devkit: Path, tiny_data) -> None:
    error = _break_and_load(
        tiny_devkit, "SIRST/BBox/Misc_1.xml", lambda p: p.write_text(tiny_data.billion_laughs)
    )
    assert "entity" in error.problem
    error = _break_and_load(tiny_devkit, "SIRST/BBox/Misc_1.xml", lambda p: p.write_text("<annotation>"))
    assert "malformed XML" in error.problem


def test_box_outside_image(tiny_devkit: Path, tiny_data) -> None:
    boxes = [(5, 4, 8, 7), (10, 5, 14, 8), (45, 20, 50, 24)]
    error = _break_and_load(
        tiny_devkit,
        "SIRST/BBox/Misc_1.xml",
        lambda p: p.write_text(tiny_data.voc_xml_text("Misc_1", 48, 40, boxes)),
    )
    assert "box 2 (45 20 50 24) is outside the 48x40 image" in error.problem


def test_empty_box(tiny_devkit: Path, tiny_data) -> None:
    boxes = [(5, 4, 8, 7), (10, 5, 10, 8), (30, 20, 33, 24)]
    error = _break_and_load(
        tiny_devkit,
        "SIRST/BBox/Misc_1.xml",
        lambda p: p.write_text(tiny_data.voc_xml_text("Misc_1", 48, 40, boxes)),
    )
    assert "box 1 (10 5 10 8) is empty" in error.problem


def test_xml_size_disagrees(tiny_devkit: Path, tiny_data) -> None:
    boxes = tiny_data.targets["Misc_1"]
    error = _break_and_load(
        tiny_devkit,
        "SIRST/BBox/Misc_1.xml",
        lambda p: p.write_text(tiny_data.voc_xml_text("Misc_1", 40, 48, boxes)),
    )
    assert "<size> 40x48 differs from the image's 48x40" in error.problem


@pytest.mark.parametrize("relative", ["SIRST/BinaryMask/Misc_1_pixels0.png", "SkySeg/PaletteMask/Misc_1.png"])
def test_mask_of_another_size(tiny_devkit: Path, relative: str) -> None:
    def shrink(path: Path) -> None:
        Image.open(path).crop((0, 0, 32, 32)).save(path)

    error = _break_and_load(tiny_devkit, relative, shrink)
    assert "size 32x32 differs from the image's 48x40" in error.problem


def test_point_count_and_bad_point_lines(tiny_devkit: Path) -> None:
    error = _break_and_load(
        tiny_devkit, "SIRST/Point_label/Misc_1_pixels0.txt", lambda p: p.write_text("6 5\n11 6")
    )
    assert "2 points but 3 boxes" in error.problem
    error = _break_and_load(
        tiny_devkit, "SIRST/Point_label/Misc_1_pixels0.txt", lambda p: p.write_text("6 5\nx")
    )
    assert "line 2: expected 'x y'" in error.problem


# ---------------------------------------------------------------------------- real release
def test_real_splits_and_sizes(real_devkit: Path) -> None:
    assert {"train_v2", "val_v2", "trainval_v2", "mini_trainval", "mini_test"} <= set(
        available_splits(real_devkit)
    )
    dataset = DenseSIRST(real_devkit, "trainval_v2")
    assert len(dataset) == 768 and len(set(dataset.ids)) == 768
    assert set(DenseSIRST(real_devkit, "train_v2").ids) | set(DenseSIRST(real_devkit, "val_v2").ids) == set(
        dataset.ids
    )
    sizes = Counter()
    for image_id in dataset.ids:  # box files only: fast
        sizes.update(map(tuple, box_sizes(parse_voc_xml(dataset.files(image_id).boxes).boxes).tolist()))
    assert sum(sizes.values()) == 10201
    assert sizes.most_common(1)[0][0] == (3.0, 3.0)


def test_real_boxes_are_mask_extents_and_points_follow_boxes(real_devkit: Path) -> None:
    dataset = DenseSIRST(real_devkit, "trainval_v2")
    exact = total = 0
    for image_id in dataset.ids[::12]:  # 64 images
        sample = dataset.load(image_id)
        assert _points_inside(sample.boxes, sample.points, tolerance=1.0).all(), image_id
        for x1, y1, x2, y2 in sample.boxes.astype(int):
            ys, xs = np.nonzero(sample.target_mask[y1:y2, x1:x2])
            total += 1
            exact += (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (0, 0, x2 - x1, y2 - y1)
    assert exact / total > 0.7  # the half-open convention: the box is the mask's extent


def test_real_point_file_order_differs_from_boxes(real_devkit: Path) -> None:
    dataset = DenseSIRST(real_devkit)
    sample = dataset.load("Misc_1")
    file_points = np.loadtxt(dataset.files("Misc_1").points, ndmin=2) + 0.5
    assert not _points_inside(sample.boxes, file_points).all()  # file order != box order here
    assert _points_inside(sample.boxes, sample.points).all()
    assert sorted(map(tuple, file_points.tolist())) == sorted(map(tuple, sample.points.tolist()))
