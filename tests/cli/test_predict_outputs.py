"""``bafenet predict`` on folders, globs, lists and videos: bad inputs skipped, COCO JSON, CSV, sky masks."""

from __future__ import annotations

import csv
import json
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from bafenet.api import Detector
from bafenet.cli import main
from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import config_to_dict, load_config
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.data.video import VideoReader
from bafenet.engine.checkpoint import save_checkpoint
from bafenet.engine.setup import build_model_from_config
from bafenet.errors import DataError
from bafenet.fileio import is_atomic_temp


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four 96x80 synthetic frames with targets."""
    root = write_synthetic_devkit(
        tmp_path_factory.mktemp("predict") / "devkit", n=4, seed=3, sizes=((96, 80),)
    )
    return sorted((root / "PNGImages").glob("*.png"))


def _checkpoint(path: Path, model_name: str) -> Path:
    """An untrained checkpoint whose low score threshold still yields a few detections per frame.

    Its classifier weights are spread out, so that the scores are too (an untrained head gives
    nearly equal ones, whose order is a matter of rounding).
    """
    cfg = load_config(
        PACKAGED_CONFIGS / "bafenet_hr.yaml",
        [f"model.name={model_name}", "eval.score_thr=0.02", "eval.amp=false"],
    )
    torch.manual_seed(0)
    model = build_model_from_config(cfg)
    with torch.no_grad():
        torch.nn.init.normal_(model.head.cls_pred.weight, std=3.0)
    return save_checkpoint(path, model, model_name, config_to_dict(cfg))


@pytest.fixture(scope="module")
def sky_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("weights") / "bafenet_hr.pt", "bafenet_hr")


@pytest.fixture(scope="module")
def plain_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("weights") / "fcos_hr.pt", "fcos_hr")


def write_video(path: Path, images: list[Path], fps: int = 5) -> Path:
    """An MPEG-4 AVI of the given grey frames, written with PyAV."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        with Image.open(images[0]) as first:
            stream.width, stream.height = first.size
        stream.pix_fmt = "yuv420p"
        for image in images:
            rgb = np.asarray(Image.open(image).convert("RGB"))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def _predict(weights: Path, *args: str) -> int:
    return main(["predict", "--weights", str(weights), *args])


def _messages(err: str) -> list[str]:
    """The lines of stderr that are not progress-bar frames."""
    return [line for line in err.splitlines() if line.startswith("bafenet:")]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _check_coco_and_csv(out: Path) -> dict:
    """predictions.json is valid COCO with the image table; detections.csv holds the same rows."""
    record = json.loads((out / "predictions.json").read_text())
    assert record["categories"] == [{"id": 1, "name": "target"}]
    images = {image["id"]: image for image in record["images"]}
    assert sorted(images) == list(range(1, len(images) + 1))
    rows = _read_csv(out / "detections.csv")
    assert len(rows) == len(record["annotations"]) > 0
    for ann, row in zip(record["annotations"], rows, strict=True):
        assert set(ann) == {"id", "image_id", "category_id", "bbox", "score"}
        assert ann["category_id"] == 1 and ann["image_id"] in images
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0
        image = images[ann["image_id"]]
        assert x >= 0 and y >= 0 and x + w <= image["width"] + 0.01 and y + h <= image["height"] + 0.01
        assert int(row["image_id"]) == ann["image_id"] and row["file"] == image["file_name"]
        assert row["frame"] == str(image.get("frame_index", ""))
        corners = [float(row[k]) for k in ("x1", "y1", "x2", "y2")]
        assert corners == pytest.approx([x, y, x + w, y + h], abs=0.011)
        assert float(row["score"]) == ann["score"]
    return record


def _boxes_of(record: dict, image_id: int) -> np.ndarray:
    """(N, 4) x1 y1 x2 y2 of an image's detections in predictions.json."""
    xywh = np.array([a["bbox"] for a in record["annotations"] if a["image_id"] == image_id]).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def test_good_frames_and_a_video_are_predicted_and_each_bad_file_named(
    sky_weights: Path, frames: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for image in frames[:2]:
        shutil.copy(image, folder)
    write_video(folder / "clip.avi", frames)
    (folder / "corrupt.png").write_bytes(b"this is no image")
    (folder / "truncated.png").write_bytes(frames[2].read_bytes()[:200])
    (folder / "broken.mp4").write_bytes(b"this is no video" * 20)
    out = tmp_path / "out"
    code = _predict(sky_weights, str(folder), "--out", str(out), "--score-thr", "0", "--save-sky")
    assert code == 1
    captured = capsys.readouterr()
    messages = _messages(captured.err)
    assert "Traceback" not in captured.err
    assert messages[:-1] == [
        f"bafenet: error: {folder / 'broken.mp4'}: cannot read video "
        "(Invalid data found when processing input)",
        f"bafenet: error: {folder / 'corrupt.png'}: cannot decode image (cannot identify image file "
        f"'{folder / 'corrupt.png'}')",
        f"bafenet: error: {folder / 'truncated.png'}: cannot decode image (image file is truncated)",
    ]
    assert messages[-1] == "bafenet: 3 of 6 inputs could not be read (named above)"
    assert "6 frames; results in" in captured.out

    record = _check_coco_and_csv(out)
    assert [(i["file_name"], i.get("frame_index")) for i in record["images"]] == [
        *((str(folder / "clip.avi"), k) for k in range(4)),
        *((str(folder / p.name), None) for p in frames[:2]),
    ]
    assert [i["time"] for i in record["images"][:4]] == [0.0, 0.2, 0.4, 0.6]
    assert all((i["width"], i["height"]) == (96, 80) for i in record["images"])
    assert sorted(f["file"] for f in record["failed"]) == [
        str(folder / name) for name in ("broken.mp4", "corrupt.png", "truncated.png")
    ]
    # the numbers are the API's, in COCO x y w h
    detector = Detector.load(sky_weights, score_thr=0.0)
    with VideoReader(folder / "clip.avi") as video:
        assert video.rate == Fraction(5)
        expected = [detector(frame.image) for frame in video]
    expected += [detector(folder / p.name) for p in frames[:2]]
    for image_id, result in enumerate(expected, start=1):
        assert len(result.boxes) > 0
        np.testing.assert_allclose(_boxes_of(record, image_id), result.boxes, atol=0.006)
        scores = [a["score"] for a in record["annotations"] if a["image_id"] == image_id]
        np.testing.assert_allclose(scores, result.scores, atol=6e-5)

    overlays = sorted(p.relative_to(out).as_posix() for p in (out / "overlays").rglob("*"))
    assert overlays == ["overlays/clip.mp4", *(f"overlays/{p.stem}.png" for p in frames[:2])]
    with VideoReader(out / "overlays" / "clip.mp4") as video:
        assert len(list(video)) == 4 and video.fps == 5.0
    masks = sorted(p.relative_to(out / "sky").as_posix() for p in (out / "sky").rglob("*.png"))
    assert masks == [*(f"clip/{k:06d}.png" for k in range(4)), *(f"{p.stem}.png" for p in frames[:2])]
    mask_files = [out / "sky" / "clip" / f"{k:06d}.png" for k in range(4)]
    mask_files += [out / "sky" / f"{p.stem}.png" for p in frames[:2]]
    for mask_file, result in zip(mask_files, expected, strict=True):
        mask = np.asarray(Image.open(mask_file))
        assert mask.shape == (80, 96) and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, result.sky > 0.5)
    assert not any(is_atomic_temp(p) for p in out.rglob("*"))


def test_batch_size_changes_nothing_and_a_refused_frame_is_skipped_alone(
    sky_weights: Path, frames: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for image in frames[:3]:
        shutil.copy(image, folder)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "synth_0001a_tiny.png")  # in a batch
    write_video(folder / "video.avi", frames)
    common = ["--score-thr", "0", "--no-draw"]
    assert _predict(sky_weights, str(folder), "--out", str(tmp_path / "b1"), *common) == 1
    assert (
        _predict(sky_weights, str(folder), "--out", str(tmp_path / "b3"), "--batch-size", "3", *common) == 1
    )
    messages = _messages(capsys.readouterr().err)
    tiny = f"bafenet: error: {folder / 'synth_0001a_tiny.png'}: frame of 16x16 px is too small"
    assert [m.startswith(tiny) for m in messages] == [True, False, True, False]
    one, three = (_check_coco_and_csv(tmp_path / name) for name in ("b1", "b3"))
    assert len(one["images"]) == 7 and one["images"] == three["images"]
    # the same detections (compared by each frame's best one: tied scores may come in any order)
    for image in one["images"]:
        best = [
            max(a["score"] for a in record["annotations"] if a["image_id"] == image["id"])
            for record in (one, three)
        ]
        assert best[0] == pytest.approx(best[1], abs=2e-4)
    assert not (tmp_path / "b1" / "overlays").exists()


def test_globs_lists_and_recursive_folders(
    plain_weights: Path, frames: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "flight"
    for place, image in (("a/x.png", frames[0]), ("a/deep/y.png", frames[1]), ("b/x.png", frames[2])):
        (root / place).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / place)
    (root / "a" / "notes.xml").write_text("<not an image/>")
    listing = root / "lists" / "frames.txt"
    listing.parent.mkdir()
    listing.write_text("# chosen frames\n\n../a/x.png\n../b\n../missing.png\n")

    def files(out: Path) -> list[str]:
        return [Path(i["file_name"]).relative_to(root).as_posix() for i in _check_coco_and_csv(out)["images"]]

    assert (
        _predict(plain_weights, f"{root}/*/x.png", "--out", str(tmp_path / "glob"), "--score-thr", "0") == 0
    )
    assert files(tmp_path / "glob") == ["a/x.png", "b/x.png"]
    assert sorted(p.name for p in (tmp_path / "glob" / "overlays").rglob("*.png")) == ["x.png", "x.png"]
    assert (tmp_path / "glob" / "overlays" / "a" / "x.png").is_file()

    assert _predict(plain_weights, str(listing), "--out", str(tmp_path / "list"), "--score-thr", "0") == 1
    assert files(tmp_path / "list") == ["lists/../a/x.png", "lists/../b/x.png"]
    assert sorted(p.name for p in (tmp_path / "list" / "overlays").iterdir()) == ["x-2.png", "x.png"]
    messages = _messages(capsys.readouterr().err)
    assert messages == [
        f"bafenet: error: {root / 'lists' / '../missing.png'}: no such file or folder",
        "bafenet: 1 of 3 inputs could not be read (named above)",
    ]

    flags = ["--score-thr", "0", "--no-draw", "--save-sky"]
    assert _predict(plain_weights, str(root / "a"), "--out", str(tmp_path / "flat"), *flags) == 0
    assert files(tmp_path / "flat") == ["a/x.png"]
    assert "no sky masks: this model has no sky branch" in capsys.readouterr().out
    assert not (tmp_path / "flat" / "sky").exists()
    assert (
        _predict(plain_weights, str(root / "a"), "--recursive", "--out", str(tmp_path / "deep"), *flags) == 0
    )
    assert files(tmp_path / "deep") == ["a/deep/y.png", "a/x.png"]


def test_nothing_readable_or_a_crash_leaves_no_output(
    sky_weights: Path, frames: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"no image")
    out, runs = tmp_path / "out", tmp_path / "runs"
    assert _predict(sky_weights, str(bad), str(tmp_path / "missing"), "--out", str(out)) == 1
    assert _messages(capsys.readouterr().err) == [
        f"bafenet: error: {tmp_path / 'missing'}: no such file or folder",
        f"bafenet: error: {bad}: cannot decode image (cannot identify image file '{bad}')",
    ]
    video = write_video(tmp_path / "clip.avi", frames)
    calls = []

    def crash(self, rgb: np.ndarray) -> None:  # at the 3rd frame of the annotated video
        calls.append(1)
        if len(calls) % 3 == 0:
            raise RuntimeError("disk on fire")

    monkeypatch.setattr("bafenet.data.video.VideoWriter.write", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        _predict(sky_weights, str(frames[0]), str(video), "--out", str(out), "--project", str(runs))
    with pytest.raises(RuntimeError, match="disk on fire"):
        _predict(sky_weights, str(frames[0]), str(video), "--project", str(runs))
    assert not out.exists() and not runs.exists()


def test_a_video_that_breaks_part_way_keeps_its_first_frames(
    plain_weights: Path, frames: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    video = write_video(tmp_path / "clip.avi", frames)
    read = VideoReader.__iter__

    def break_after_two(self):  # a decoder error at the third frame
        for frame in read(self):
            if frame.index == 2:
                raise DataError(self.path, "cannot decode frame 2 (broken packet); frames 0-1 were read")
            yield frame

    monkeypatch.setattr(VideoReader, "__iter__", break_after_two)
    out = tmp_path / "out"
    assert _predict(plain_weights, str(video), str(frames[0]), "--out", str(out), "--score-thr", "0") == 1
    assert _messages(capsys.readouterr().err) == [
        f"bafenet: error: {video}: cannot decode frame 2 (broken packet); frames 0-1 were read",
        "bafenet: 1 of 2 inputs could not be read (named above)",
    ]
    record = _check_coco_and_csv(out)
    assert [(i["file_name"], i.get("frame_index")) for i in record["images"]] == [
        (str(video), 0),
        (str(video), 1),
        (str(frames[0]), None),
    ]
    assert record["failed"] == [
        {"file": str(video), "problem": "cannot decode frame 2 (broken packet); frames 0-1 were read"}
    ]
    monkeypatch.undo()
    with VideoReader(out / "overlays" / "clip.mp4") as annotated:
        assert len(list(annotated)) == 2
