"""``bafenet data check``: every kind of broken file is reported by path, nothing raises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bafenet.cli import main
from bafenet.data.check import check_dataset


def _write_boxes(
    devkit: Path, image_id: str, boxes: list, tiny_data, size: tuple[int, int] = (48, 40)
) -> Path:
    path = devkit / "SIRST" / "BBox" / f"{image_id}.xml"
    path.write_text(tiny_data.voc_xml_text(image_id, *size, boxes))
    return path


def _assert_reported(report, *needles: str) -> None:
    """Each needle is part of some problem line."""
    for needle in needles:
        assert any(needle in line for line in report.problems), (needle, report.problems)


# ---------------------------------------------------------------------------- tiny devkit
def test_clean_devkit_has_no_problems(tiny_devkit: Path) -> None:
    report = check_dataset(tiny_devkit, None)
    assert report.problems == []
    assert (report.n_images, report.n_targets) == (3, 8)
    report = check_dataset(tiny_devkit, "train_v2")
    assert (report.problems, report.n_images, report.n_targets) == ([], 2, 7)


def test_truncated_png_and_xml_bomb_are_both_named(tiny_devkit: Path, tiny_data, capsys) -> None:
    png = tiny_devkit / "PNGImages" / "Misc_2.png"
    xml = tiny_devkit / "SIRST" / "BBox" / "iraytek-7.xml"
    tiny_data.truncate_file(png)
    xml.write_text(tiny_data.billion_laughs)
    assert main(["data", "check", str(tiny_devkit), "--split", "trainval_v2"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{xml}: XML with a DTD") or lines[1].startswith(f"{xml}: XML with a DTD")
    assert sum(line.startswith(f"{png}: cannot decode image") for line in lines) == 1
    assert lines[-1] == "checked 3 images, 4 targets: 2 problem(s)"  # boxes of the readable box files


def test_subprocess_exit_code_and_no_traceback(tiny_devkit: Path, tiny_data) -> None:
    tiny_data.truncate_file(tiny_devkit / "SIRST" / "BinaryMask" / "Misc_1_pixels0.png")
    result = subprocess.run(
        [sys.executable, "-m", "bafenet", "data", "check", str(tiny_devkit)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{tiny_devkit}/SIRST/BinaryMask/Misc_1_pixels0.png: cannot decode image" in result.stdout


def test_box_moved_off_its_target(tiny_devkit: Path, tiny_data) -> None:
    boxes = [(5, 4, 8, 7), (10, 5, 14, 8), (38, 28, 41, 32)]  # last box moved off (30, 20, 33, 24)
    xml = _write_boxes(tiny_devkit, "Misc_1", boxes, tiny_data)
    mask = tiny_devkit / "SIRST" / "BinaryMask" / "Misc_1_pixels0.png"
    points = tiny_devkit / "SIRST" / "Point_label" / "Misc_1_pixels0.txt"
    report = check_dataset(tiny_devkit, None)
    _assert_reported(
        report,
        f"{xml}: box 2 (38 28 41 32) holds no target pixel",
        f"{mask}: target pixels at x 30..32, y 20..23 are in no box",
        f"{points}: point (31, 21) is more than 1 px outside its box",
    )


def test_box_one_pixel_off_is_tolerated(tiny_devkit: Path, tiny_data) -> None:
    _write_boxes(tiny_devkit, "Misc_1", [(5, 4, 8, 7), (10, 5, 14, 8), (31, 21, 34, 25)], tiny_data)
    assert check_dataset(tiny_devkit, None).problems == []


def test_box_outside_image_and_size_mismatch(tiny_devkit: Path, tiny_data) -> None:
    xml = _write_boxes(tiny_devkit, "Misc_2", [(46, 10, 49, 13)], tiny_data, size=(50, 40))
    report = check_dataset(tiny_devkit, None)
    _assert_reported(
        report,
        f"{xml}: <size> 50x40 differs from the image's 48x40",
        f"{xml}: box 0 (46 10 49 13) is outside the 48x40 image",
    )


def test_masks_of_another_size_and_disagreeing_twins(tiny_devkit: Path) -> None:
    sky = tiny_devkit / "SkySeg" / "BinaryMask" / "Misc_1_pixels0.png"
    Image.open(sky).crop((0, 0, 40, 40)).save(sky)
    palette = tiny_devkit / "SIRST" / "PaletteMask" / "Misc_2.png"
    image = Image.open(palette)
    image.putpixel((0, 0), 1)
    image.save(palette)
    report = check_dataset(tiny_devkit, None)
    _assert_reported(
        report,
        f"{sky}: size 40x40 differs from the image's 48x40",
        f"{palette}: differs from Misc_2_pixels0.png in 1 pixel",
    )
    assert len(report.problems) == 2


def test_points_count_and_missing_files(tiny_devkit: Path) -> None:
    points = tiny_devkit / "SIRST" / "Point_label" / "iraytek-7_pixels0.txt"
    points.write_text("3 31")
    for path in (
        "SIRST/BinaryMask/Misc_2_pixels0.png",
        "SIRST/PaletteMask/Misc_2.png",
        "SIRST/BBox/Misc_1.xml",
    ):
        (tiny_devkit / path).unlink()
    report = check_dataset(tiny_devkit, None)
    _assert_reported(
        report,
        f"{points}: 1 points but 4 boxes",
        f"{tiny_devkit}/SIRST/BinaryMask/Misc_2_pixels0.png: file not found (nor Misc_2.png",
        f"{tiny_devkit}/SIRST/BBox/Misc_1.xml: file not found",
    )
    assert len(report.problems) == 3


def test_split_problems(tiny_devkit: Path) -> None:
    split = tiny_devkit / "Splits" / "mine.txt"
    split.write_text("Misc_1\nMisc_1\nMisc_404")
    report = check_dataset(tiny_devkit, "mine")
    assert report.problems == [
        f"{split}: 'Misc_1' is listed more than once",
        f"{split}: lists 'Misc_404', which has no image in {tiny_devkit}/PNGImages",
    ]
    assert report.n_images == 1
    report = check_dataset(tiny_devkit, "test_v2")
    assert (
        report.n_images == 0
        and "unknown split 'test_v2'; available splits: mine, train_v2" in report.problems[0]
    )
    assert check_dataset(tiny_devkit / "absent", None).problems == [
        f"{tiny_devkit}/absent: dataset folder not found"
    ]


def test_split_paths_are_reported_and_not_read(tiny_devkit: Path, capsys) -> None:
    """``data check`` lists every split problem, one line each, and checks only the real entries."""
    (tiny_devkit.parent / "secret.png").write_bytes(b"not part of the dataset")
    split = tiny_devkit / "Splits" / "evil.txt"
    split.write_text("Misc_1\n../secret\n/etc/passwd\nMisc_2\nMisc_1\na/../../x\nMisc_404")
    assert main(["data", "check", str(tiny_devkit), "--split", "evil"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{split}: '../secret' is a path; a split file lists image names only",
        f"{split}: '/etc/passwd' is a path; a split file lists image names only",
        f"{split}: 'Misc_1' is listed more than once",
        f"{split}: 'a/../../x' is a path; a split file lists image names only",
        f"{split}: lists 'Misc_404', which has no image in {tiny_devkit}/PNGImages",
        "checked 2 images, 4 targets: 5 problem(s)",
    ]


def test_unexpected_reader_failure_is_a_problem_not_a_crash(tiny_devkit: Path, monkeypatch) -> None:
    import bafenet.data.check as check_module

    real_read_raw = check_module.read_raw

    def read_raw(path: Path):
        if path.name == "Misc_2.png":
            raise RuntimeError("decompression bomb")
        return real_read_raw(path)

    monkeypatch.setattr(check_module, "read_raw", read_raw)
    report = check_dataset(tiny_devkit, None)
    assert report.problems == [
        f"{tiny_devkit}/PNGImages/Misc_2.png: cannot read (RuntimeError: decompression bomb)"
    ]


def test_cli_unknown_split_is_one_clear_line(tiny_devkit: Path, capsys) -> None:
    assert main(["data", "check", str(tiny_devkit), "--split", "nope"]) == 1
    out = capsys.readouterr().out
    assert "unknown split 'nope'" in out and "Traceback" not in out


# ---------------------------------------------------------------------------- mask-only
def test_mask_dataset_check(tiny_maskset_factory, tiny_data) -> None:
    root = tiny_maskset_factory()
    (root / "trainval.txt").write_text("Misc_1\nMisc_2\nMisc_3\niraytek-7")
    report = check_dataset(root, None)
    assert (report.problems, report.n_images, report.n_targets) == ([], 3, 8)
    mask = root / "masks" / "Misc_2_pixels0.png"
    Image.open(mask).crop((0, 0, 10, 10)).save(mask)
    tiny_data.truncate_file(root / "images" / "iraytek-7.png")
    report = check_dataset(root, "trainval")
    assert len(report.problems) == 3
    assert report.problems[0] == f"{root}/trainval.txt: lists 'Misc_3', which has no image in {root}/images"
    assert report.problems[1] == f"{mask}: size 10x10 differs from the image's 48x40"
    assert report.problems[2].startswith(f"{root}/images/iraytek-7.png: cannot decode image")
    assert (report.n_images, report.n_targets) == (3, 3)
    (root / "trainval.txt").write_text("Misc_1\n../../etc/passwd\nMisc_1")
    assert check_dataset(root, "trainval").problems == [
        f"{root}/trainval.txt: '../../etc/passwd' is a path; a split file lists image names only",
        f"{root}/trainval.txt: 'Misc_1' is listed more than once",
    ]


# ---------------------------------------------------------------------------- real release
def test_real_trainval_has_no_problems(real_devkit: Path, capsys) -> None:
    assert main(["data", "check", str(real_devkit), "--split", "trainval_v2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["checked 768 images, 10201 targets: OK"]


@pytest.fixture
def broken_real_copy(real_devkit: Path, tmp_path: Path, tiny_data) -> tuple[Path, Path, Path]:
    """The real devkit as symlinks, with one PNG truncated and one XML replaced by an entity bomb."""
    copy = tmp_path / "devkit"
    for folder, _, names in os.walk(real_devkit):
        target = copy / Path(folder).relative_to(real_devkit)
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            (target / name).symlink_to(Path(folder) / name)
    png = copy / "PNGImages" / "Misc_1.png"
    xml = copy / "SIRST" / "BBox" / "iraytek-1.xml"
    for path in (png, xml):
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)
    tiny_data.truncate_file(png, keep=0.6)
    xml.write_text(tiny_data.billion_laughs)
    return copy, png, xml


def test_real_copy_with_truncated_png_and_xml_bomb(broken_real_copy, capsys) -> None:
    copy, png, xml = broken_real_copy
    split = copy / "check_me.txt"  # the two broken images among 40 good ones
    listed = (copy / "Splits" / "trainval_v2.txt").read_text().split()
    others = [image_id for image_id in listed if image_id not in ("Misc_1", "iraytek-1")]
    split.write_text("\n".join(["Misc_1", "iraytek-1", *others[:40]]))
    assert main(["data", "check", str(copy), "--split", str(split)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{png}: cannot decode image")
    assert lines[1].startswith(f"{xml}: XML with a DTD or entity declarations is refused")
    assert lines[2].startswith("checked 42 images") and lines[2].endswith("2 problem(s)")
