"""The Python API (bafenet.Detector / Result): the README example, the same numbers as
``bafenet val``, frame types, batching, overlays and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.optimize import linear_sum_assignment

import bafenet
from bafenet.cli import main
from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import config_to_dict, load_config
from bafenet.data import open_dataset
from bafenet.data.imageio import read_image
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.checkpoint import save_checkpoint
from bafenet.engine.evaluate import evaluate
from bafenet.engine.inference import EvalGeometry, load_trained_model
from bafenet.engine.setup import build_model_from_config
from bafenet.errors import BafenetError, DataError
from bafenet.viz import INSET_ZOOM, RED, YELLOW

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api") / "devkit"
    return write_synthetic_devkit(root, n=8, seed=4, sizes=((96, 80), (120, 100)))


@pytest.fixture(scope="module")
def weights(devkit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small sky model (native x2, as bafenet_hr) that detects plenty."""
    cfg = load_config(
        PACKAGED_CONFIGS / "bafenet_hr.yaml",
        [
            "model.name=fcos_seg_hr",
            "model.kwargs={backbone_width: 8, tower_depth: 1}",
            f"data.root={devkit}",
            "eval.split=val",
            "eval.amp=false",
        ],
    )
    torch.manual_seed(0)
    model = build_model_from_config(cfg)
    with torch.no_grad():
        model.head.cls_pred.bias.fill_(0.0)  # class probability 0.5: up to 100 detections a frame
    path = tmp_path_factory.mktemp("weights") / "seg.pt"
    return save_checkpoint(path, model, cfg.model.name, config_to_dict(cfg))


@pytest.fixture(scope="module")
def detector(weights: Path) -> bafenet.Detector:
    return bafenet.Detector.load(weights, device="cpu", score_thr=0.0)


def _frames(devkit: Path) -> list[Path]:
    return sorted((devkit / "PNGImages").glob("*.png"))


def _assert_same(a: bafenet.Result, b: bafenet.Result) -> None:
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.sky, b.sky)
    np.testing.assert_array_equal(a.image, b.image)


def test_readme_example_runs(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Python API\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert '"weights/fcos_hr_densesirst.pt"' in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(code.replace('"weights/fcos_hr_densesirst.pt"', repr(str(weights))), namespace)
    result, results = namespace["result"], namespace["results"]
    assert result.boxes.shape[1] == 4 and len(result.boxes) == len(result.scores)
    assert (result.scores >= namespace["detector"].score_thr).all()
    assert result.sky.shape == (512, 640) and result.image.shape == (512, 640)
    assert [r.image.shape for r in results] == [(512, 640), (256, 640)]
    with Image.open(tmp_path / "overlay.png") as overlay:
        assert overlay.mode == "RGB" and overlay.size[0] >= 640


@pytest.mark.parametrize("protocol", ["native", "tiles"])
def test_api_gives_the_numbers_of_val_on_each_frame(
    weights: Path, devkit: Path, tmp_path: Path, protocol: str
) -> None:
    flags = ["--protocol", protocol] + (
        ["--tile-size", "128", "--tile-overlap", "32"] if protocol == "tiles" else []
    )
    out = tmp_path / "val"
    val = ["val", "--weights", str(weights), "--data", str(devkit), "--out", str(out), "--device", "cpu"]
    assert main([*val, *flags]) == 0  # exact floats need the same device
    by_id = {p["image_id"]: p for p in json.loads((out / "predictions.json").read_text())}
    overrides = [f"eval.protocol={protocol}"] + (
        ["eval.tile_size=128", "eval.tile_overlap=32"] if protocol == "tiles" else []
    )
    detector = bafenet.Detector.load(weights, device="cpu", score_thr=0.0, overrides=overrides)
    # evaluate() as `bafenet val` calls it, for the exact floats
    model, cfg, _ = load_trained_model(weights, torch.device("cpu"), overrides)
    dataset = open_dataset(devkit, "val")
    _, details = evaluate(
        model, dataset, EvalGeometry.from_config(cfg), cfg.eval, torch.device("cpu"), False, True
    )
    assert len(details["predictions"]) == len(by_id) >= 2
    for prediction in details["predictions"]:
        result = detector(dataset[[s.image_id for s in dataset].index(prediction.image_id)].path)
        assert len(result.boxes) > 10
        np.testing.assert_array_equal(result.boxes, prediction.boxes)
        np.testing.assert_array_equal(result.scores, prediction.scores)
        written = by_id[prediction.image_id]  # bafenet val's file, rounded
        np.testing.assert_array_equal(result.boxes.round(2), np.asarray(written["boxes"], np.float32))
        np.testing.assert_array_equal(result.scores.round(4), np.asarray(written["scores"], np.float32))
    # a score threshold keeps the best of the same detections
    path = _frames(devkit)[0]
    every = detector(path)
    threshold = float(np.median(every.scores))
    kept = bafenet.Detector.load(weights, device="cpu", score_thr=threshold, overrides=overrides)(path)
    assert 0 < len(kept.scores) < len(every.scores) and (kept.scores >= threshold).all()
    np.testing.assert_array_equal(kept.boxes, every.boxes[: len(kept.boxes)])


def test_a_path_an_array_and_a_float_frame_agree(detector: bafenet.Detector, devkit: Path) -> None:
    path = _frames(devkit)[0]
    from_path = detector(path)
    grey = read_image(path)  # float32 grey levels 0..255
    assert from_path.name == path.stem and from_path.image.shape == grey.shape
    _assert_same(from_path, detector(grey))
    _assert_same(from_path, detector(grey.astype(np.uint8), name="mine"))
    assert detector(grey).name is None and detector(grey, name="mine").name == "mine"


def test_uint16_frame_is_read_as_a_16_bit_file(detector: bafenet.Detector, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(2000, 30, size=(80, 96)).astype(np.uint16)
    raw[30:33, 40:43] = 2600
    png = tmp_path / "raw16.png"
    Image.fromarray(raw).save(png)
    from_array = detector(raw)
    _assert_same(from_array, detector(png))
    # stretched from its own minimum and maximum, not divided by 257
    assert from_array.image.min() == 0 and from_array.image.max() == 255
    assert from_array.image[31, 41] == 255


def test_rgb_frames_are_read_as_colour_files(
    detector: bafenet.Detector, devkit: Path, tmp_path: Path
) -> None:
    grey = read_image(_frames(devkit)[1]).round().astype(np.uint8)
    colour = np.stack([grey, np.flipud(grey), grey // 2], axis=2)
    png = tmp_path / "colour.png"
    Image.fromarray(colour).save(png)
    from_array = detector(colour)
    _assert_same(from_array, detector(png))
    _assert_same(from_array, detector(colour.astype(np.float32)))  # float 0..255: the same luma
    luma = colour.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert np.abs(from_array.image - luma).max() <= 0.5 + 1e-4
    # a grey frame stored as RGB is that grey frame
    np.testing.assert_array_equal(detector(np.repeat(grey[:, :, None], 3, axis=2)).image, grey)


def _assert_same_detections(a: bafenet.Result, b: bafenet.Result) -> None:
    """The same detections up to float rounding, in any order: two near-equal scores may
    swap places when rounding differs (matched one-to-one by the largest difference)."""
    assert len(a.scores) == len(b.scores)
    cost = np.abs(a.boxes[:, None, :] - b.boxes[None, :, :]).max(axis=2)
    cost = np.maximum(cost, np.abs(a.scores[:, None] - b.scores[None, :]) * 1e2)
    rows, cols = linear_sum_assignment(cost)
    np.testing.assert_allclose(a.boxes[rows], b.boxes[cols], atol=1e-4)
    np.testing.assert_allclose(a.scores[rows], b.scores[cols], atol=1e-6)


def test_batch_predict_equals_one_by_one(detector: bafenet.Detector, devkit: Path) -> None:
    frames = [read_image(p) for p in _frames(devkit)[:5]]
    shapes = {f.shape for f in frames}
    assert len(shapes) == 2  # two frame sizes: batches hold one size
    batched = detector.predict(frames, batch_size=3)
    assert len(batched) == len(frames)
    for frame, result in zip(frames, batched, strict=True):
        alone = detector(frame)  # equal up to float rounding: CPU kernels differ by batch size
        _assert_same_detections(result, alone)
        np.testing.assert_allclose(result.sky, alone.sky, atol=1e-6)
        np.testing.assert_array_equal(result.image, alone.image)


def test_sky_map_is_at_the_frame_size(detector: bafenet.Detector, devkit: Path) -> None:
    result = detector(_frames(devkit)[0])
    assert result.sky.shape == result.image.shape == (100, 120) and result.sky.dtype == np.float32
    assert 0.0 <= result.sky.min() <= result.sky.max() <= 1.0


def test_plot_tints_the_sky_and_enlarges_small_frames() -> None:
    sky = np.zeros((80, 96), np.float32)
    sky[:40] = 0.9
    result = bafenet.Result(
        boxes=np.array([[50, 60, 53, 63]], np.float32),
        scores=np.array([0.87], np.float32),
        sky=sky,
        image=np.full((80, 96), 100, np.uint8),
        name=None,
        score_thr=0.3,
    )
    rgb = result.plot()
    assert rgb.shape == (80 * INSET_ZOOM, 96 * INSET_ZOOM, 3) and rgb.dtype == np.uint8
    assert rgb[10, 10, 2] > rgb[10, 10, 0] + 50  # sky: blue
    assert (rgb[300, 10] == 100).all()  # not sky: the grey frame
    # the 3-px box is drawn 4x: a 14-px red frame around it
    assert (rgb[60 * 4 - 1, 50 * 4 - 1 : 53 * 4 + 1] == RED).all()


def test_zoom_inset_shows_small_boxes_on_a_large_frame() -> None:
    boxes = np.array([[900, 700, 903, 703], [910, 705, 913, 708], [100, 100, 103, 103]], np.float32)
    result = bafenet.Result(
        boxes=boxes,
        scores=np.array([0.9, 0.8, 0.7], np.float32),
        sky=None,
        image=np.full((1024, 1280), 60, np.uint8),
        name=None,
        score_thr=0.3,
    )
    plain, zoomed = result.plot(zoom=False), result.plot()
    assert plain.shape == zoomed.shape == (1024, 1280, 3)
    is_yellow = (zoomed == YELLOW).all(axis=2)
    assert not (plain == YELLOW).all(axis=2).any() and is_yellow.any()
    # the inset sits in the corner farthest from the two clustered boxes (top left) and holds them enlarged
    rows, cols = np.nonzero(is_yellow[:512, :640])
    assert rows.min() == 0 and cols.min() == 0
    is_red = (zoomed == RED).all(axis=2)
    assert is_red[: rows.max(), : cols.max()].sum() > 2 * is_red[512:, 640:].sum()


def test_bad_frames_are_one_line_errors(detector: bafenet.Detector, tmp_path: Path) -> None:
    cases = [
        (np.zeros(10, np.uint8), r"^frame: a frame must be \(H, W\) or \(H, W, 3\), got shape \(10,\)$"),
        (np.zeros((4, 8, 8), np.uint8), r"^frame: a frame must be .* got shape \(4, 8, 8\)$"),
        (np.zeros((0, 64), np.uint8), r"^frame: empty frame of shape \(0, 64\)$"),
        (np.full((64, 64), np.nan, np.float32), r"^frame: the frame holds NaN or infinite values$"),
        (np.zeros((64, 64), np.complex64), r"^frame: unsupported frame dtype complex64"),
        ([[1, 2], [3, 4]], r"^frame: expected a numpy array or an image path, got list$"),
        (np.zeros((10, 12), np.uint8), r"^frame: frame of 12x10 px is too small: .* at least 33 px"),
        (tmp_path / "missing.png", r"missing.png: file not found$"),
    ]
    for frame, message in cases:
        with pytest.raises(BafenetError, match=message) as info:
            detector(frame)
        assert "\n" not in str(info.value)
    with pytest.raises(BafenetError, match=r"^frame 1: empty frame"):
        detector.predict([np.zeros((64, 64), np.uint8), np.zeros((64, 0), np.uint8)])
    with pytest.raises(BafenetError, match="batch_size must be an integer >= 1, got 0"):
        detector.predict([np.zeros((64, 64), np.uint8)], batch_size=0)


def test_load_errors_are_one_line(weights: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothing.pt"):
        bafenet.Detector.load(tmp_path / "nothing.pt")
    with pytest.raises(BafenetError, match=r"^device 'tpu0': use 'auto', 'cpu' or 'cuda'$"):
        bafenet.Detector.load(weights, device="tpu0")
    with pytest.raises(BafenetError, match=r"^score_thr 1.5 is not a score threshold in \[0, 1\]$"):
        bafenet.Detector.load(weights, device="cpu", score_thr=1.5)


def test_default_threshold_and_device(weights: Path) -> None:
    detector = bafenet.Detector.load(weights)
    assert (detector.score_thr, detector.score_thr_source) == (0.3, "default")
    assert detector.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert next(detector.model.parameters()).device.type == detector.device.type


def test_import_bafenet_stays_light() -> None:
    """The API is imported on first use (``bafenet.Detector``, as the other tests do)."""
    code = "import sys, bafenet; assert 'torch' not in sys.modules and 'bafenet.api' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
