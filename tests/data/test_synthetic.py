"""The built-in synthetic devkit: determinism, exact annotations, and the CLI round trip."""

from __future__ import annotations

from pathlib import Path

import defusedxml.ElementTree as ET
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from bafenet.cli import main
from bafenet.data import synthetic
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.errors import BafenetError

N = 16  # one full cycle of scene kinds (all-sky, no-sky, horizon)


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_devkit(tmp_path_factory.mktemp("synth") / "devkit", n=N, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _boxes(xml_path: Path) -> tuple[tuple[int, int], list[tuple[int, int, int, int]]]:
    root = ET.parse(xml_path).getroot()
    size = (int(root.findtext("size/width")), int(root.findtext("size/height")))
    boxes = []
    for obj in root.iter("object"):
        assert obj.findtext("name") == "Target"
        boxes.append(tuple(int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")))
    return size, boxes


def test_same_seed_same_bytes(tmp_path: Path, devkit: Path) -> None:
    again = write_synthetic_devkit(tmp_path / "again", n=N, seed=3)
    assert _files(again) == _files(devkit)
    other = write_synthetic_devkit(tmp_path / "other", n=2, seed=4)
    name = "PNGImages/synth_0000.png"
    assert (other / name).read_bytes() != (devkit / name).read_bytes()
    # image i does not depend on how many images are written
    first = write_synthetic_devkit(tmp_path / "first", n=3, seed=3)
    for i in range(3):
        name = f"PNGImages/synth_{i:04d}.png"
        assert (first / name).read_bytes() == (devkit / name).read_bytes()


def test_annotations_are_consistent(devkit: Path) -> None:
    ids = sorted(p.stem for p in (devkit / "PNGImages").glob("*.png"))
    assert len(ids) == N
    sizes, all_boxes, sky_fractions = set(), [], []
    eight = np.ones((3, 3), dtype=bool)
    for image_id in ids:
        image = Image.open(devkit / "PNGImages" / f"{image_id}.png")
        assert image.mode == "L"
        (w, h), boxes = _boxes(devkit / "SIRST/BBox" / f"{image_id}.xml")
        assert (w, h) == image.size
        sizes.add((w, h))
        assert boxes, f"{image_id}: every image has at least one target"
        mask = np.asarray(Image.open(devkit / "SIRST/BinaryMask" / f"{image_id}_pixels0.png"))
        assert set(np.unique(mask)) <= {0, 255}
        palette = Image.open(devkit / "SIRST/PaletteMask" / f"{image_id}.png")
        assert palette.mode == "P"
        np.testing.assert_array_equal(np.asarray(palette), mask // 255)

        # 8-connected components = targets; each box is the tight extent of one component
        labels, n = ndimage.label(mask > 0, structure=eight)
        assert n == len(boxes)
        extents = {(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(labels)}
        assert extents == set(boxes)

        points = np.loadtxt(devkit / "SIRST/Point_label" / f"{image_id}_pixels0.txt", dtype=int, ndmin=2)
        assert len(points) == len(boxes)
        for (x, y), (x1, y1, x2, y2) in zip(points, boxes, strict=True):
            assert x1 <= x < x2 and y1 <= y < y2 and mask[y, x] == 255
            ys, xs = np.nonzero(labels == labels[y, x])
            assert (x, y) == (int(np.floor(xs.mean())), int(np.floor(ys.mean())))

        sky = np.asarray(Image.open(devkit / "SkySeg/BinaryMask" / f"{image_id}_pixels0.png"))
        sky_palette = Image.open(devkit / "SkySeg/PaletteMask" / f"{image_id}.png")
        assert sky_palette.mode == "P"
        np.testing.assert_array_equal(np.asarray(sky_palette), sky // 255)
        if sky.any():
            assert (sky[mask > 0] == 255).all(), f"{image_id}: targets lie in the sky"
        sky_fractions.append(float((sky > 0).mean()))
        all_boxes += boxes

    assert len(sizes) > 3, "image sizes vary"
    assert any(f == 1.0 for f in sky_fractions) and any(f == 0.0 for f in sky_fractions)
    assert any(0 < f < 1 for f in sky_fractions)
    sides = np.array([(x2 - x1, y2 - y1) for x1, y1, x2, y2 in all_boxes])
    assert sides.min() >= 1 and sides.max() <= 7
    assert (sides.max(axis=1) <= 5).mean() > 0.8 and (sides.min(axis=1) >= 3).mean() > 0.6
    values, counts = np.unique(sides, axis=0, return_counts=True)
    assert tuple(values[counts.argmax()]) == (3, 3)


def test_splits(devkit: Path) -> None:
    text = {p.stem: p.read_text() for p in (devkit / "Splits").glob("*.txt")}
    assert set(text) == {"train", "val", "trainval", "train_v2", "val_v2", "trainval_v2"}
    assert all(not t.endswith("\n") for t in text.values())
    train, val, trainval = (set(text[k].split("\n")) for k in ("train", "val", "trainval"))
    assert train | val == trainval and not train & val and len(val) == N // 4
    assert text["train_v2"] == text["train"] and text["trainval_v2"] == text["trainval"]


def test_targets_stand_out_from_their_background(devkit: Path) -> None:
    """Peaks are clearly above the local background noise but not trivially bright."""
    scr, ratio = [], []
    for xml in sorted((devkit / "SIRST/BBox").glob("*.xml")):
        image = np.asarray(Image.open(devkit / "PNGImages" / f"{xml.stem}.png"), dtype=np.float64)
        mask = np.asarray(Image.open(devkit / "SIRST/BinaryMask" / f"{xml.stem}_pixels0.png")) > 0
        for x1, y1, x2, y2 in _boxes(xml)[1]:
            window = (slice(max(0, y1 - 3), y2 + 3), slice(max(0, x1 - 3), x2 + 3))
            ring = image[window][~mask[window]]
            peak = image[y1:y2, x1:x2][mask[y1:y2, x1:x2]].max()
            scr.append((peak - ring.mean()) / max(ring.std(), 1.0))
            ratio.append(peak / ring.mean())
    assert np.median(scr) > 5
    assert np.percentile(scr, 10) > 2
    assert np.median(ratio) < 2  # low contrast in the ratio form, like the real data


def test_refuses_non_empty_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BafenetError, match="not empty"):
        write_synthetic_devkit(out, n=1, seed=0)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_synthetic_devkit(empty, n=1, seed=0) / "PNGImages" / "synth_0000.png").is_file()
    with pytest.raises(BafenetError, match="at least 1"):
        write_synthetic_devkit(tmp_path / "none", n=0, seed=0)


def test_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = synthetic.make_scene

    def failing(rng, index, sizes=synthetic.DEFAULT_SIZES):
        if index == 2:
            raise RuntimeError("boom")
        return real(rng, index, sizes)

    monkeypatch.setattr(synthetic, "make_scene", failing)
    with pytest.raises(RuntimeError, match="boom"):
        write_synthetic_devkit(tmp_path / "out", n=4, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_cli_synth_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    assert main(["data", "synth", str(out), "--n", "6", "--seed", "1"]) == 0
    assert main(["data", "check", str(out)]) == 0
    assert main(["data", "check", str(out), "--split", "val"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 6 synthetic images" in printed and "OK" in printed
    assert main(["data", "synth", str(out)]) == 1  # refuses to overwrite
    assert "not empty" in capsys.readouterr().err


def test_reader_matches_files(devkit: Path) -> None:
    from bafenet.data.densesirst import DenseSIRST

    dataset = DenseSIRST(devkit, split="trainval")
    assert len(dataset) == N
    sample = dataset[0]
    _, boxes = _boxes(devkit / "SIRST/BBox" / f"{sample.image_id}.xml")
    np.testing.assert_array_equal(sample.boxes, np.asarray(boxes, dtype=np.float32))
    assert sample.target_mask.sum() > 0 and set(np.unique(sample.sky_mask)) <= {0, 1}
    assert sample.points.shape == (len(boxes), 2)
