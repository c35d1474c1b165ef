"""Dataset statistics on the synthetic devkit, on hand-made samples, and on the real data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bafenet.cli import main
from bafenet.data.sample import Sample
from bafenet.data.stats import dataset_stats, summary_lines, target_measures, write_stats_report
from bafenet.data.synthetic import write_synthetic_devkit


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_devkit(tmp_path_factory.mktemp("stats") / "devkit", n=8, seed=5)


def _xml_counts(devkit: Path, ids: list[str]) -> list[int]:
    return [(devkit / "SIRST/BBox" / f"{i}.xml").read_text().count("<object>") for i in ids]


def test_counts_agree_with_the_files(devkit: Path) -> None:
    stats = dataset_stats(devkit, None)
    ids = sorted(p.stem for p in (devkit / "PNGImages").glob("*.png"))
    counts = _xml_counts(devkit, ids)
    assert stats["images"] == 8
    assert stats["targets"] == sum(counts)
    per = stats["targets_per_image"]
    assert per["min"] == min(counts) and per["max"] == max(counts)
    assert per["histogram"] == {str(k): v for k, v in sorted(Counter(counts).items())}
    assert sum(e["targets"] for e in stats["box_sizes"]["all"]) == sum(counts)
    assert sum(e["images"] for e in stats["image_sizes"]["all"]) == 8
    sky = [np.asarray(Image.open(devkit / "SkySeg/BinaryMask" / f"{i}_pixels0.png")) for i in ids]
    assert stats["sky"]["all_sky_images"] == sum(bool(s.all()) for s in sky)
    assert stats["sky"]["mean"] == pytest.approx(np.mean([(s > 0).mean() for s in sky]))
    assert stats["local_contrast"]["count"] == sum(counts)
    assert sum(stats["scr"]["histogram"]["counts"]) == sum(counts)

    val = (devkit / "Splits" / "val.txt").read_text().split("\n")
    assert dataset_stats(devkit, "val")["targets"] == sum(_xml_counts(devkit, val))


def test_report_files(devkit: Path, tmp_path: Path) -> None:
    stats = dataset_stats(devkit, "trainval")
    lines = summary_lines(stats)
    assert lines[1] == f"images: 8   targets: {stats['targets']:,}"
    written = write_stats_report(stats, tmp_path / "report")
    names = sorted(p.name for p in written)
    assert names == sorted(
        ["stats.json", "targets_per_image.png", "image_sizes.png", "box_sizes.png", "local_contrast.png"]
        + ["sky_fraction.png"]
    )
    assert json.loads((tmp_path / "report" / "stats.json").read_text()) == json.loads(json.dumps(stats))
    for path in written[1:]:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width > 100
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == names  # no temporary files left


def test_definitions_on_a_handmade_sample() -> None:
    image = np.full((20, 20), 50.0, dtype=np.float32)
    image[5:8, 5:8] = 100.0  # target 1: 3x3, peak 150 in its middle
    image[6, 6] = 150.0
    image[14:16, 14:16] = 60.0  # target 2: 2x2, flat at 60
    image[0, 19] = 200.0  # the image maximum, on the background
    mask = np.zeros((20, 20), np.uint8)
    mask[5:8, 5:8] = 1
    mask[14:16, 14:16] = 1
    sky = np.ones((20, 20), np.uint8)
    sky[15:, :] = 0  # the lower row of target 2 is not sky
    sample = Sample(image, boxes=[[5, 5, 8, 8], [14, 14, 16, 16]], target_mask=mask, sky_mask=sky)
    first, second = target_measures(sample)
    assert first["peak"] == 150 and first["contrast"] == pytest.approx(3.0)
    assert first["scr"] == pytest.approx(100.0)  # flat ring: sigma floored at 1 grey level
    assert second["contrast"] == pytest.approx(60 / 50) and second["scr"] == pytest.approx(10.0)
    assert first["area"] == 9 and second["area"] == 4 and first["box_area"] == 9
    assert first["brightest"] == 0 and second["sky_px"] == 2 and second["known_px"] == 4
    image[0, 19] = 50.0
    assert target_measures(sample.replace(image=image))[0]["brightest"] == 1


def test_cli_stats(devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", str(devkit), "--split", "val", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "images: 2" in printed and "wrote" in printed
    assert (tmp_path / "out" / "stats.json").is_file()


def test_cli_stats_refuses_a_repeated_split_entry(devkit: Path, tmp_path: Path, capsys) -> None:
    first = sorted(p.stem for p in (devkit / "PNGImages").glob("*.png"))[0]
    split = tmp_path / "dup.txt"
    split.write_text(f"{first}\n{first}\n")
    out = tmp_path / "out"
    assert main(["data", "stats", str(devkit), "--split", str(split), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"bafenet: error: {split}: {first!r} is listed more than once"]
    assert "images:" not in captured.out and not out.exists()


def test_real_trainval_v2(real_devkit: Path) -> None:
    stats = dataset_stats(real_devkit, "trainval_v2")
    ids = (real_devkit / "Splits" / "trainval_v2.txt").read_text().split()
    assert stats["images"] == len(ids) == 768
    assert stats["targets"] == sum(_xml_counts(real_devkit, ids)) == 10_201
    assert stats["box_sizes"]["mode"] == "3x3"
    assert stats["targets_per_image"]["min"] == 1 and stats["targets_per_image"]["max"] == 26
    assert 0.05 < stats["brightest"]["share"] < 0.25  # a minority, as the dataset README says


def test_mask_only_dataset_has_no_sky_section(devkit: Path, tmp_path: Path) -> None:
    folder = tmp_path / "irstd"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for image in sorted((devkit / "PNGImages").glob("*.png"))[:3]:
        (folder / "images" / image.name).write_bytes(image.read_bytes())
        mask = devkit / "SIRST/BinaryMask" / f"{image.stem}_pixels0.png"
        (folder / "masks" / mask.name).write_bytes(mask.read_bytes())
    stats = dataset_stats(folder, None)
    assert stats["images"] == 3
    assert stats["targets"] == sum(_xml_counts(devkit, [p.stem for p in (folder / "images").iterdir()]))
    assert "sky" not in stats and stats["target_pixels_in_sky"] is None
    assert summary_lines(stats)[-1] == "sky: no sky labels in this dataset"
    names = {p.name for p in write_stats_report(stats, tmp_path / "out")}
    assert "sky_fraction.png" not in names and "box_sizes.png" in names
