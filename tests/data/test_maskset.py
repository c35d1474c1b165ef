"""Mask components and the mask-only IRSTD reader (layout detection, splits, bad input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bafenet.data import available_splits, open_dataset
from bafenet.data.components import mask_components
from bafenet.data.densesirst import DenseSIRST
from bafenet.data.maskset import MaskDataset
from bafenet.errors import DataError


# ---------------------------------------------------------------------------- components
def test_components_are_eight_connected_with_tight_boxes() -> None:
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = 255  # a diagonal line: one target under 8-connectivity
    mask[6:8, 7:10] = 1  # 3 x 2 block
    boxes, points, labels = mask_components(mask)
    np.testing.assert_array_equal(boxes, [[1, 1, 4, 4], [7, 6, 10, 8]])
    np.testing.assert_array_equal(points, [[2.5, 2.5], [8.5, 6.5]])  # floor(centroid) + 0.5
    assert boxes.dtype == np.float32 and points.dtype == np.float32 and labels.dtype == np.int32
    assert labels.shape == mask.shape and set(np.unique(labels)) == {0, 1, 2}
    assert (labels == 1).sum() == 3 and (labels == 2).sum() == 6


def test_component_point_is_floor_of_centroid() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[2, 2:6] = True  # centroid x = 3.5 -> pixel 3
    mask[3, 5] = True  # centroid (3.8, 2.2) -> pixel (3, 2)
    _, points, _ = mask_components(mask)
    np.testing.assert_array_equal(points, [[3.5, 2.5]])


def test_empty_mask() -> None:
    boxes, points, labels = mask_components(np.zeros((5, 6), dtype=np.uint8))
    assert boxes.shape == (0, 4) and points.shape == (0, 2) and not labels.any()


# ---------------------------------------------------------------------------- reader
def test_nudt_like_layout_is_detected(tiny_maskset_factory, tiny_data) -> None:
    root = tiny_maskset_factory()
    (root / "img_idx").mkdir()
    (root / "img_idx" / "train_NUDT-SIRST.txt").write_text("Misc_1\niraytek-7\n")
    (root / "img_idx" / "test_NUDT-SIRST.txt").write_text("Misc_2")
    dataset = MaskDataset(root, "train")
    assert dataset.mask_suffix == "_pixels0" and dataset.image_dir == root / "images"
    assert dataset.ids == ["Misc_1", "iraytek-7"]
    assert MaskDataset(root, "img_idx/test_NUDT-SIRST").ids == ["Misc_2"]
    assert available_splits(root) == ["img_idx/test_NUDT-SIRST", "img_idx/train_NUDT-SIRST"]
    sample = dataset[1]
    boxes = tiny_data.targets["iraytek-7"]
    order = np.lexsort((np.array(boxes)[:, 0], np.array(boxes)[:, 1]))  # components come in raster order
    np.testing.assert_array_equal(sample.boxes, np.array(boxes)[order])
    np.testing.assert_array_equal(sample.points, (np.array(tiny_data.points(boxes)) + 0.5)[order])
    np.testing.assert_array_equal(sample.target_mask, tiny_data.target_mask(boxes))
    assert (sample.sky_mask == 255).all()
    assert sample.image_id == "iraytek-7" and sample.path == root / "images" / "iraytek-7.png"


def test_irstd1k_like_layout_and_open_dataset(tiny_maskset_factory) -> None:
    root = tiny_maskset_factory("irstd", image_dir="IRSTD1k_Img", mask_dir="IRSTD1k_Label", suffix="")
    (root / "trainval.txt").write_text("Misc_1\nMisc_2")
    (root / "test.txt").write_text("iraytek-7")
    dataset = open_dataset(root, "test", cache=True)
    assert isinstance(dataset, MaskDataset) and dataset.mask_suffix == ""
    assert dataset.ids == ["iraytek-7"] and dataset[0].num_targets == 4
    assert dataset[0].num_targets == 4  # from the cache
    assert len(open_dataset(root)) == 3


def test_explicit_folders_and_suffix(tiny_maskset_factory) -> None:
    root = tiny_maskset_factory("odd", image_dir="frames", mask_dir="truth", suffix="_m")
    with pytest.raises(DataError, match="no known dataset layout .* give --images DIR --masks DIR"):
        MaskDataset(root)
    dataset = MaskDataset(root, image_dir="frames", mask_dir="truth", mask_suffix="_m")
    assert [s.num_targets for s in dataset] == [3, 1, 4]


def test_ambiguous_and_unknown_splits(tiny_maskset_factory) -> None:
    root = tiny_maskset_factory()
    for folder in ("idx_320", "idx_427"):
        (root / folder).mkdir()
        (root / folder / "trainval.txt").write_text("Misc_1")
    with pytest.raises(DataError, match="ambiguous: idx_320/trainval, idx_427/trainval"):
        MaskDataset(root, "trainval")
    assert MaskDataset(root, "idx_427/trainval").ids == ["Misc_1"]
    with pytest.raises(DataError, match="unknown split 'test'; available splits: idx_320/trainval"):
        MaskDataset(root, "test")


def test_bad_mask_files(tiny_maskset_factory, tiny_data) -> None:
    root = tiny_maskset_factory()
    dataset = MaskDataset(root)
    mask = root / "masks" / "Misc_2_pixels0.png"
    Image.open(mask).crop((0, 0, 20, 20)).save(mask)
    with pytest.raises(DataError, match="size 20x20 differs from the image's 48x40") as info:
        dataset.load("Misc_2")
    assert info.value.path == mask
    tiny_data.truncate_file(root / "images" / "Misc_1.png")
    with pytest.raises(DataError, match="cannot decode image"):
        dataset.load("Misc_1")
    (root / "masks" / "iraytek-7_pixels0.png").unlink()
    with pytest.raises(DataError, match="the mask of image 'iraytek-7'"):
        MaskDataset(root).load("iraytek-7")


def test_missing_split_entry(tiny_maskset_factory) -> None:
    root = tiny_maskset_factory()
    (root / "trainval.txt").write_text("Misc_1\nMisc_9")
    with pytest.raises(DataError, match="not in .*images: Misc_9"):
        MaskDataset(root, "trainval")


def test_repeated_split_entry_is_refused(tiny_maskset_factory) -> None:
    root = tiny_maskset_factory()
    (root / "trainval.txt").write_text("Misc_1\niraytek-7\nMisc_1")
    with pytest.raises(DataError) as info:
        open_dataset(root, "trainval")
    assert str(info.value) == f"{root}/trainval.txt: 'Misc_1' is listed more than once"


@pytest.mark.parametrize(
    "entry", ["../../etc/passwd", "/etc/passwd", "a/../../x", "..", "../secret", "images/Misc_1"]
)
def test_split_entry_that_is_a_path_is_refused(tiny_maskset_factory, entry: str) -> None:
    root = tiny_maskset_factory()
    (root.parent / "secret.png").write_bytes(b"not part of the dataset")
    (root / "trainval.txt").write_text(f"Misc_1\n{entry}")
    with pytest.raises(DataError) as info:
        MaskDataset(root, "trainval")
    assert str(info.value) == f"{root}/trainval.txt: {entry!r} is a path; a split file lists image names only"


def test_real_masks_give_the_annotated_targets(real_devkit: Path) -> None:
    """The devkit read as a mask-only set: components ~ boxes, centroid points = the point labels."""
    as_masks = MaskDataset(real_devkit, "mini_trainval", image_dir="PNGImages", mask_dir="SIRST/BinaryMask")
    assert as_masks.mask_suffix == "_pixels0"
    devkit = DenseSIRST(real_devkit, "mini_trainval")
    same_points = total = 0
    for derived, annotated in zip(as_masks, devkit, strict=True):
        np.testing.assert_array_equal(derived.image, annotated.image)
        assert derived.num_targets == annotated.num_targets
        annotated_points = set(map(tuple, annotated.points.tolist()))
        same_points += sum(tuple(p) in annotated_points for p in derived.points.tolist())
        total += derived.num_targets
    assert same_points / total > 0.95  # the release's points are floor(centroid) for 99 %
