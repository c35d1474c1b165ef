"""The published mask-set layouts: detection, readers, box files, ``data check``, invalid samples.

Replicas of each layout are written by :mod:`layout_replicas`; the real SIRST v1 release is
read where it is on this machine (``../shared/data/SIRST-v1``, or ``$BAFENET_TEST_SIRST_V1``).
"""

from __future__ import annotations

import typing
import warnings
from pathlib import Path

import layout_replicas
import numpy as np
import pytest
from layout_replicas import (
    BAD_FRAME,
    FRAMES,
    SPLITS,
    target_mask,
    write_irstd1k,
    write_nudt_sirst,
    write_sirst_v1,
    write_sirst_v2,
)

from bafenet.cli import main
from bafenet.config import DataConfig
from bafenet.data import available_splits, open_dataset
from bafenet.data.boxfiles import BoxAgreement
from bafenet.data.check import check_dataset
from bafenet.data.components import mask_components
from bafenet.data.layouts import LAYOUT_NAMES, detect_layout
from bafenet.data.maskset import MaskDataset
from bafenet.data.screen import screen_samples
from bafenet.data.voc_xml import parse_voc_xml
from bafenet.errors import DataError


@pytest.fixture
def real_sirst_v1() -> Path:
    return layout_replicas.real_sirst_v1()


def _boxes(split: list[str]) -> list[list[list[float]]]:
    """The replica's boxes of a split, in the reader's order (raster order of the components)."""
    return [sorted(map(list, FRAMES[image_id]), key=lambda box: (box[1], box[0])) for image_id in split]


# ---------------------------------------------------------------------------- detection
@pytest.mark.parametrize(
    ("write", "name"),
    [
        (write_sirst_v2, "sirst_v2"),
        (write_sirst_v1, "sirst_v1"),
        (write_nudt_sirst, "nudt_sirst"),
        (write_irstd1k, "irstd1k"),
    ],
)
def test_each_layout_is_detected_and_selectable_by_name(tmp_path: Path, write, name: str) -> None:
    root = write(tmp_path / name)
    assert detect_layout(root).name == name
    assert detect_layout(root, name).name == name
    assert open_dataset(root, layout=name).layout.name == name
    with pytest.raises(DataError, match="not a densesirst folder"):
        detect_layout(root, "densesirst")


def test_config_names_every_layout() -> None:
    hint = typing.get_type_hints(DataConfig)["layout"]
    assert typing.get_args(typing.get_args(hint)[0]) == tuple(n for n in LAYOUT_NAMES if n != "folders")


def test_no_layout_names_the_way_out(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    with pytest.raises(DataError, match="no known dataset layout .*--images DIR --masks DIR"):
        open_dataset(tmp_path)
    with pytest.raises(DataError, match="unknown layout 'voc'"):
        open_dataset(tmp_path, layout="voc")
    with pytest.raises(DataError, match="give both"):
        open_dataset(tmp_path, images="frames")


# ---------------------------------------------------------------------------- SIRST-V2
@pytest.mark.parametrize("mixed", [True, False])
def test_sirst_v2_reads_as_published(tmp_path: Path, mixed: bool) -> None:
    root = write_sirst_v2(tmp_path / "sirst_v2", mixed=mixed)
    dataset = open_dataset(root, "trainval_full")
    assert isinstance(dataset, MaskDataset) and dataset.mask_suffix == "_pixels0"
    expected_dirs = ["mixed"] * mixed + ["images/backgrounds", "images/targets"]
    assert [d.relative_to(root).as_posix() for d in dataset.image_dirs] == expected_dirs
    assert dataset.ids == SPLITS["train"] + SPLITS["val"]
    samples = list(dataset)
    assert [s.boxes.tolist() for s in samples] == _boxes(dataset.ids)
    assert samples[1].num_targets == 0  # the background frame, from images/backgrounds/ without mixed/
    assert samples[1].path.parent.name == ("mixed" if mixed else "backgrounds")
    assert available_splits(root) == [f"splits/{n}_full" for n in ("test", "train", "trainval", "val")]
    assert open_dataset(root, "train").ids == SPLITS["train"]  # by prefix: train_full


def test_sirst_v2_box_files_are_the_mask_extent_plus_one(tmp_path: Path) -> None:
    """The replica's box files, written like the release, measure +1 on all four numbers."""
    root = write_sirst_v2(tmp_path / "sirst_v2")
    agreement = BoxAgreement()
    for image_id, boxes in FRAMES.items():
        written = parse_voc_xml(
            root / "annotations" / "bboxes" / f"{image_id}.xml", skip_objects_without_box=True
        )
        mask = np.asarray(target_mask(boxes))
        agreement.add(written.boxes, mask_components(mask)[0])
    assert agreement.convention() == (1, 1, 1, 1) and agreement.paired == 6 and agreement.around_several == 0
    with pytest.raises(DataError, match="object 0 has no <bndbox>"):  # a devkit reader refuses them
        parse_voc_xml(root / "annotations" / "bboxes" / "iraytek-1.xml")


def test_sirst_v2_boxes_from_files_are_converted(tmp_path: Path) -> None:
    root = write_sirst_v2(tmp_path / "sirst_v2")
    from_files = open_dataset(root, "trainval_full", boxes="files")
    from_masks = open_dataset(root, "trainval_full")
    assert from_files.box_offset == (1, 1, 1, 1)
    for a, b in zip(from_files, from_masks, strict=True):
        np.testing.assert_array_equal(np.sort(a.boxes, axis=0), np.sort(b.boxes, axis=0))
        assert len(a.points) == len(a.boxes)
        assert ((a.points > a.boxes[:, :2]) & (a.points < a.boxes[:, 2:])).all()
    # a box file moved off its convention at load: named, with the offset that was subtracted
    xml = root / "annotations" / "bboxes" / "Misc_2.xml"
    xml.write_text(xml.read_text().replace("<xmax>24</xmax>", "<xmax>60</xmax>"))
    with pytest.raises(DataError, match=r"Misc_2.xml: box 0 \(20 10 59 13\) is outside .* subtracted"):
        from_files.load("Misc_2")


# ---------------------------------------------------------------------------- SIRST v1, NUDT, IRSTD-1k
def test_sirst_v1_reader_and_its_one_box_files(tmp_path: Path) -> None:
    root = write_sirst_v1(tmp_path / "sirst_v1")
    assert available_splits(root) == [
        f"{d}/{n}" for d in ("idx_320", "idx_427") for n in ("test", "train", "trainval", "val")
    ]
    dataset = open_dataset(root, "idx_427/trainval")
    assert [s.boxes.tolist() for s in dataset] == _boxes(["Misc_1", "Misc_2"])
    with pytest.raises(
        DataError, match="hold a box around several mask targets; take the boxes from the masks"
    ):
        open_dataset(root, "idx_427/trainval", boxes="files")
    bad = open_dataset(root, "idx_427/test")  # opens; the bad sample is refused when read
    with pytest.raises(
        DataError, match=f"{BAD_FRAME}_pixels0.png: size 60x50 differs from the image's 48x40"
    ):
        bad[0]


@pytest.mark.parametrize("split_dir", ["50_50", "img_idx"])
def test_nudt_sirst(tmp_path: Path, split_dir: str) -> None:
    root = write_nudt_sirst(tmp_path / "nudt", split_dir)
    dataset = open_dataset(root, "test")
    assert dataset.layout.name == "nudt_sirst" and dataset.mask_suffix == ""
    assert dataset.ids == ["000003"] and dataset[0].num_targets == 3
    assert len(open_dataset(root, "train")) == 3


def test_irstd1k(tmp_path: Path) -> None:
    root = write_irstd1k(tmp_path / "irstd")
    dataset = open_dataset(root, "trainval")
    assert dataset.layout.name == "irstd1k" and dataset.ids == ["XDU0", "XDU1", "XDU3"]
    assert [s.num_targets for s in dataset] == [2, 1, 0]


def test_any_other_layout_with_images_and_masks(tmp_path: Path) -> None:
    root = write_irstd1k(tmp_path / "odd")
    (root / "IRSTD1k_Img").rename(root / "frames")
    (root / "IRSTD1k_Label").rename(root / "truth")
    with pytest.raises(DataError, match="no known dataset layout"):
        open_dataset(root)
    dataset = open_dataset(root, "test", images="frames", masks=root / "truth")
    assert dataset.layout.name == "folders" and dataset[0].num_targets == 3


# ---------------------------------------------------------------------------- data check
def test_check_sirst_v2_reports_the_plus_one_boxes(tmp_path: Path) -> None:
    root = write_sirst_v2(tmp_path / "sirst_v2")
    report = check_dataset(root, None)
    assert report.problems == [
        f"{root}/annotations/bboxes: box numbers (x1 y1 x2 y2) are the mask extent +1 +1 +1 +1 in 6 of "
        "the 6 boxes paired with a mask target, not 0-based half-open pixel edges; bafenet takes the "
        "boxes from the masks (with data.boxes=files it subtracts +1 +1 +1 +1)"
    ]
    assert (report.n_images, report.n_targets) == (4, 6)  # every image opened
    assert report.notes[0].startswith(f"{root}: read as layout sirst_v2: images mixed/, images/backgrounds/")


def test_check_sirst_v1_replica(tmp_path: Path) -> None:
    root = write_sirst_v1(tmp_path / "sirst_v1")
    report = check_dataset(root, "idx_427/trainval")  # the bad frame is not in it
    assert report.problems == [
        f"{root}/masks: box numbers (x1 y1 x2 y2) are the mask extent +1 +1 +0 +0 in 1 of the 1 boxes "
        "paired with a mask target, not 0-based half-open pixel edges; bafenet takes the boxes from the "
        "masks (with data.boxes=files it subtracts +1 +1 +0 +0)"
    ]
    report = check_dataset(root, None)
    assert (
        report.problems[0]
        == f"{root}/masks/{BAD_FRAME}_pixels0.png: size 60x50 differs from the image's 48x40"
    )
    assert report.notes[1:] == [
        f"{root}/masks: every box file holds one box (3 boxes for 6 mask targets): in 2 of 3 it surrounds "
        "several targets; bafenet takes the boxes from the masks, one per target",
        f"1 unusable sample(s): {BAD_FRAME} (bafenet train and val stop at them; leave invalid samples "
        "out with --skip-invalid or data.skip_invalid=true)",
    ]
    assert (report.n_images, report.n_targets) == (3, 3)


def test_check_devkit_with_plus_one_boxes(tiny_devkit: Path, tiny_data) -> None:
    """SIRST-V2 boxes copied into a devkit: every box within 1 px, so only the convention shows it."""
    assert check_dataset(tiny_devkit, None).problems == []
    for image_id, boxes in tiny_data.targets.items():
        shifted = [(x1 + 1, y1 + 1, x2 + 1, y2 + 1) for x1, y1, x2, y2 in boxes]
        xml = tiny_devkit / "SIRST" / "BBox" / f"{image_id}.xml"
        xml.write_text(tiny_data.voc_xml_text(image_id, *tiny_data.size, shifted))
    report = check_dataset(tiny_devkit, None)
    assert report.problems[-1] == (
        f"{tiny_devkit}/SIRST/BBox: box numbers (x1 y1 x2 y2) are the mask extent +1 +1 +1 +1 in 8 of "
        "the 8 boxes paired with a mask target, not 0-based half-open pixel edges; the devkit reader "
        "uses the numbers as they are, so every box misses its target by that much: subtract the "
        "offset from the files"
    )


def test_check_cli_with_images_and_masks(tmp_path: Path, capsys) -> None:
    root = write_irstd1k(tmp_path / "odd")
    (root / "IRSTD1k_Img").rename(root / "frames")
    (root / "IRSTD1k_Label").rename(root / "truth")
    assert main(["data", "check", str(root)]) == 1
    assert "no dataset found there" in capsys.readouterr().err
    code = main(
        ["data", "check", "--images", str(root / "frames"), "--masks", str(root / "truth"), "--split", "test"]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and lines[-1] == "checked 1 images, 3 targets: OK"
    assert (
        lines[0]
        == f"note: {root}: read as layout folders: images frames/, masks truth/<name>.png, split lists in ./"
    )


# ---------------------------------------------------------------------------- invalid samples
def test_invalid_samples_are_refused_or_left_out(tmp_path: Path) -> None:
    root = write_sirst_v1(tmp_path / "sirst_v1")
    mask = f"{root}/masks/{BAD_FRAME}_pixels0.png"
    dataset = open_dataset(root, "idx_427/trainval")
    assert screen_samples(dataset, "idx_427/trainval", skip_invalid=False) == []
    dataset = open_dataset(root, "idx_320/test")
    with pytest.raises(DataError) as info:
        screen_samples(dataset, "idx_320/test", skip_invalid=False)
    assert str(info.value) == (
        f"{mask}: size 60x50 differs from the image's 48x40 (1 invalid sample(s) in split 'idx_320/test': "
        f"{BAD_FRAME}; leave invalid samples out with --skip-invalid or data.skip_invalid=true)"
    )
    (root / "idx_320" / "two.txt").write_text(f"Misc_1\n{BAD_FRAME}\nMisc_2")
    dataset = open_dataset(root, "idx_320/two")
    with pytest.warns(UserWarning) as caught:
        skipped = screen_samples(dataset, "idx_320/two", skip_invalid=True)
    assert skipped == [f"{mask}: size 60x50 differs from the image's 48x40"]
    assert len(caught) == 1 and str(caught[0].message) == (
        f"left out 1 invalid sample(s) of split 'idx_320/two' ({BAD_FRAME}): {skipped[0]}"
    )
    assert dataset.ids == ["Misc_1", "Misc_2"] and len(dataset) == 2


# ---------------------------------------------------------------------------- the real SIRST v1
def test_real_sirst_v1_check(real_sirst_v1: Path, capsys) -> None:
    root = real_sirst_v1
    assert main(["data", "check", str(root)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{root}/masks/Misc_111_pixels0.png: size 592x400 differs from the image's 325x220",
        f"note: {root}: read as layout sirst_v1: images images/, masks masks/<name>_pixels0.png, "
        "box files masks/*.xml, split lists in idx_427/, idx_320/",
        f"note: {root}/masks: the box numbers follow no single convention against the masks (most often "
        "+1 +1 +0 +0 in 119 of 358 paired boxes); bafenet takes the boxes from the masks",
        f"note: {root}/masks: every box file holds one box (427 boxes for 533 mask targets): in 69 of 427 "
        "it surrounds several targets; bafenet takes the boxes from the masks, one per target",
        "note: 1 unusable sample(s): Misc_111 (bafenet train and val stop at them; leave invalid samples "
        "out with --skip-invalid or data.skip_invalid=true)",
        "checked 427 images, 532 targets: 1 problem(s)",
    ]


def test_real_sirst_v1_splits_and_the_bad_sample(real_sirst_v1: Path) -> None:
    dataset = open_dataset(real_sirst_v1, "idx_427/test")
    assert dataset.layout.name == "sirst_v1" and len(dataset) == 86 and "Misc_111" in dataset.ids
    assert open_dataset(real_sirst_v1, "idx_427/trainval")[0].num_targets >= 1
    dataset.ids = ["Misc_1", "Misc_111", "Misc_10"]  # three samples, not the whole split
    with pytest.raises(
        DataError, match="Misc_111_pixels0.png: size 592x400 .*in split 'idx_427/test': Misc_111;"
    ):
        screen_samples(dataset, "idx_427/test", skip_invalid=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(screen_samples(dataset, "idx_427/test", skip_invalid=True)) == 1
    assert dataset.ids == ["Misc_1", "Misc_10"]
