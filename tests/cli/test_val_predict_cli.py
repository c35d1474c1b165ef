"""``bafenet val`` and ``bafenet predict`` on a tiny synthetic devkit: geometry flags, outputs, errors."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bafenet.cli import main
from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import config_to_dict, load_config
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.checkpoint import load_checkpoint, save_checkpoint
from bafenet.engine.setup import build_model_from_config


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("valcli") / "devkit"
    return write_synthetic_devkit(root, n=10, seed=5, sizes=((96, 80), (120, 100)))


@pytest.fixture(scope="module")
def weights(devkit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained bafenet_hr checkpoint whose low score threshold still yields detections."""
    cfg = load_config(
        PACKAGED_CONFIGS / "bafenet_hr.yaml",
        [f"data.root={devkit}", "eval.split=val", "eval.score_thr=0.005", "eval.amp=false"],
    )
    torch.manual_seed(0)
    model = build_model_from_config(cfg)
    path = tmp_path_factory.mktemp("weights") / "hr.pt"
    return save_checkpoint(path, model, cfg.model.name, config_to_dict(cfg))


def _val(weights: Path, devkit: Path, out: Path, *flags: str) -> dict:
    code = main(["val", "--weights", str(weights), "--data", str(devkit), "--out", str(out), *flags])
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


DETECTION_KEYS = (
    "mAP07", "mAP12", "recall", "strict_mAP07", "num_pred", "irstd_fa_per_mpix",
    "best_f1", "best_f1_score_thr", "irstd_pd_at_best_f1",
)  # fmt: skip


def test_val_outputs_and_batch_size_independence(weights: Path, devkit: Path, tmp_path: Path) -> None:
    one = _val(weights, devkit, tmp_path / "b1", "--batch-size", "1")
    three = _val(weights, devkit, tmp_path / "b3", "--batch-size", "3")
    for name in ("metrics.json", "per_image.json", "predictions.json", "pr_curve.png", "pd_fa_curve.png"):
        assert (tmp_path / "b1" / name).is_file(), name
    assert one["num_pred"] > 0 and one["protocol"] == "native" and one["backend"] == "torch"
    # the F1-best operating point lies on the ranked list, above the eval score threshold
    assert one["best_f1_score_thr"] >= 0.005 and one["best_f1_recall"] <= one["recall"]
    for key in DETECTION_KEYS:
        assert one[key] == three[key], key
    groups = one["by_frame_size"]
    assert set(groups) == {"small"} and groups["small"]["num_images"] == one["num_images"]


def test_tiles_covering_the_frame_equal_whole_frames(weights: Path, devkit: Path, tmp_path: Path) -> None:
    whole = _val(weights, devkit, tmp_path / "native", "--protocol", "native", "--scale", "2")
    one_tile = _val(
        weights, devkit, tmp_path / "tile", "--protocol", "tiles", "--scale", "2", "--tile-size", "256"
    )
    for key in DETECTION_KEYS:
        assert whole[key] == one_tile[key], key
    assert whole["sky_iou"] == pytest.approx(one_tile["sky_iou"])
    # several tiles per frame still evaluate every image (boxes in original coordinates)
    tiled = _val(
        weights,
        devkit,
        tmp_path / "tiles",
        "--protocol",
        "tiles",
        "--scale",
        "2",
        "--tile-size",
        "128",
        "--tile-overlap",
        "32",
    )
    assert tiled["num_images"] == whole["num_images"] and tiled["num_pred"] > 0
    preds = json.loads((tmp_path / "tiles" / "predictions.json").read_text())
    boxes = np.concatenate([np.asarray(p["boxes"]).reshape(-1, 4) for p in preds])
    assert boxes[:, 2].max() <= 120 and boxes[:, 3].max() <= 100  # original frame coordinates


def test_scale_cap_changes_the_input_geometry(weights: Path, devkit: Path, tmp_path: Path) -> None:
    capped = _val(weights, devkit, tmp_path / "capped", "--scale", "2", "--max-side", "120")
    full = _val(weights, devkit, tmp_path / "full", "--scale", "2")
    assert capped["num_pred"] != full["num_pred"] or capped["mAP07"] != full["mAP07"]


def test_val_bad_flag_values_and_files_fail_clearly(
    weights: Path, devkit: Path, tmp_path: Path, capsys
) -> None:
    code = main(["val", "--weights", str(weights), "--data", str(devkit), "--protocol", "tiles",
                 "--tile-size", "64", "--tile-overlap", "64", "--out", str(tmp_path / "a")])  # fmt: skip
    assert code == 1 and "tile_overlap" in capsys.readouterr().err
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    code = main(["val", "--weights", str(broken), "--data", str(devkit), "--out", str(tmp_path / "b")])
    assert code == 1 and "broken.pt" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_predict_with_geometry_flags(weights: Path, devkit: Path, tmp_path: Path) -> None:
    images = sorted((devkit / "PNGImages").glob("*.png"))[:2]
    out = tmp_path / "pred"
    code = main(
        ["predict", "--weights", str(weights), *map(str, images), "--out", str(out), "--score-thr", "0.0",
         "--protocol", "tiles", "--scale", "2", "--tile-size", "128", "--amp"]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "predictions.json").read_text())
    assert len(record["images"]) == 2
    assert {a["image_id"] for a in record["annotations"]} == {image["id"] for image in record["images"]}
    assert len(list((out / "overlays").glob("*.png"))) == 2


def test_predict_default_threshold_is_the_checkpoints_operating_point(
    weights: Path, devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(sorted((devkit / "PNGImages").glob("*.png"))[0])
    code = main(["predict", "--weights", str(weights), image, "--out", str(tmp_path / "plain")])
    assert code == 0 and "score threshold 0.300 (default" in capsys.readouterr().out
    assert json.loads((tmp_path / "plain" / "predictions.json").read_text())["score_thr"] == 0.3
    ckpt = load_checkpoint(weights)
    ckpt["metadata"]["operating_score_thr"] = 0.0  # every detection of the untrained model
    released = tmp_path / "released.pt"
    torch.save(ckpt, released)
    code = main(["predict", "--weights", str(released), image, "--out", str(tmp_path / "op")])
    assert code == 0 and "score threshold 0.000 (the checkpoint's operating point" in capsys.readouterr().out
    record = json.loads((tmp_path / "op" / "predictions.json").read_text())
    assert record["score_thr"] == 0.0 and len(record["annotations"]) > 0


def write_declared_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` grey pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """The one error line of a refused command (on a line of its own after any progress bar),
    checked to hold every ``expected`` text."""
    err = capsys.readouterr().err
    lines = err.splitlines()  # progress-bar frames end in "\r": each is a line here
    assert "Traceback" not in err and [line for line in lines if "error" in line] == lines[-1:], err
    assert lines[-1].startswith("bafenet: error: "), err
    for text in expected:
        assert text in lines[-1], (text, err)
    return lines[-1]


def _broken_checkpoint(weights: Path, path: Path, how: str) -> Path:
    """A copy of ``weights`` broken in one way (torch.save: it skips save_checkpoint's checks)."""
    ckpt = load_checkpoint(weights)
    if how in ("config", "model"):
        del ckpt[how]
    elif how == "nan":
        ckpt["model"]["head.cls_pred.bias"] = torch.full_like(ckpt["model"]["head.cls_pred.bias"], np.nan)
    elif how == "threshold":
        ckpt["metadata"]["operating_score_thr"] = "high"
    elif how == "shape":
        ckpt["model"]["backbone.conv1.weight"] = ckpt["model"]["backbone.conv1.weight"][:1].clone()
    torch.save(ckpt, path)
    return path


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.mkdir, (self.marker,))


BROKEN_CHECKPOINTS = {
    "config": "checkpoint has no 'config' entry",
    "model": "checkpoint has no 'model' entry",
    "nan": "weight 'head.cls_pred.bias' holds NaN or infinite values",
    "threshold": "checkpoint metadata.operating_score_thr 'high' is not a score threshold in [0, 1]",
    "shape": "weights of bafenet_hr do not fit the model (wrong shape: backbone.conv1.weight [1, 3, 7, 7] "
    "instead of [32, 3, 7, 7])",
}


@pytest.mark.parametrize("how", sorted(BROKEN_CHECKPOINTS))
def test_broken_checkpoints_are_one_line_naming_the_file(
    how: str, weights: Path, devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _broken_checkpoint(weights, tmp_path / f"{how}.pt", how)
    image = str(sorted((devkit / "PNGImages").glob("*.png"))[0])
    assert main(["predict", "--weights", str(broken), image, "--out", str(tmp_path / "p")]) == 1
    _one_error_line(capsys, f"{broken}: {BROKEN_CHECKPOINTS[how]}")
    code = main(["val", "--weights", str(broken), "--data", str(devkit), "--out", str(tmp_path / "v")])
    assert code == 1
    _one_error_line(capsys, f"{broken}: {BROKEN_CHECKPOINTS[how]}")
    assert not (tmp_path / "p").exists() and not (tmp_path / "v").exists()


def test_a_pickle_with_code_is_not_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "payload-ran"
    hostile = tmp_path / "hostile.pt"
    torch.save({"format": "bafenet-checkpoint", "model": _Payload(marker)}, hostile)
    image = tmp_path / "frame.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(image)
    assert main(["predict", "--weights", str(hostile), str(image), "--out", str(tmp_path / "p")]) == 1
    err = _one_error_line(
        capsys, f"{hostile}: not loaded: it holds Python objects", "weights-only load refuses"
    )
    assert "weights_only" not in err and not marker.exists() and not (tmp_path / "p").exists()


def test_predict_skips_bad_images_and_refuses_bad_outputs_leaving_nothing(
    weights: Path, devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = str(sorted((devkit / "PNGImages").glob("*.png"))[0])
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tiny)
    bomb = write_declared_png(tmp_path / "bomb.png", 12000, 12000)
    out = tmp_path / "out"

    def predict(*args: str) -> int:
        return main(["predict", "--weights", str(weights), "--score-thr", "0.5", *args])

    def one_input_error(*expected: str) -> None:
        """The one line of a run whose only input failed (printed above the progress bar)."""
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("bafenet:")]
        assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("bafenet: error: "), err
        for text in expected:
            assert text in lines[0], (text, err)

    # a bad frame is named and skipped; the good one is still predicted
    assert predict(good, str(tiny), str(bomb), "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if line.startswith("bafenet:")] == [
        f"bafenet: error: {tiny}: frame of 16x16 px is too small: its network input would be 32x32 px and "
        "the detector needs at least 33 px on the long side (frames of at least 17 px at this scale)",
        f"bafenet: error: {bomb}: image of 12000x12000 px (144.0 Mpx) exceeds the limit of 40.0 Mpx; "
        "it was not decoded",
        "bafenet: 2 of 3 inputs could not be read (named above)",
    ]
    record = json.loads((out / "predictions.json").read_text())
    assert [i["file_name"] for i in record["images"]] == [good]
    assert [f["file"] for f in record["failed"]] == [str(tiny), str(bomb)]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [f"{Path(good).stem}.png"]
    # nothing readable: one line, nothing written
    out = tmp_path / "out2"
    with Image.open(good) as frame:  # network input at the checkpoint's eval scale 2
        width, height = frame.size
    assert predict(good, "--out", str(out), "--set", "eval.max_pixels=20000") == 1
    one_input_error(
        f"{good}: frame of {width}x{height} px would become a {2 * width}x{2 * height} px",
        "(eval.max_pixels)",
    )
    assert predict(good, "eval.max_pixels=20000", "--out", str(out)) == 1  # the same, as key=value
    one_input_error(f"{good}: frame of {width}x{height} px", "(eval.max_pixels)")
    assert predict("eval.max_pixels=20000", "--out", str(out)) == 1
    _one_error_line(capsys, "no image source given")
    assert not out.exists()
    assert predict(str(tiny), "--project", str(tmp_path / "runs")) == 1  # the default run folder
    one_input_error(f"{tiny}: frame of 16x16 px is too small")
    assert not (tmp_path / "runs").exists()
    existing = tmp_path / "existing.json"
    existing.write_text("{}")
    for place, problem in ((existing, "exists and is not a folder"), (existing / "sub", "cannot be created")):
        assert predict(good, "--out", str(place)) == 1
        _one_error_line(capsys, f"{place}: {problem}")
    assert existing.read_text() == "{}"


def test_val_refuses_frames_too_small_at_the_chosen_scale(
    weights: Path, devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "v"
    code = main(
        ["val", "--weights", str(weights), "--data", str(devkit), "--scale", "0.2", "--out", str(out)]
    )
    assert code == 1
    err = _one_error_line(capsys, "is too small: its network input would be", "at least 33 px")
    assert str(devkit / "PNGImages") in err and not out.exists()
