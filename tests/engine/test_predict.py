"""Inference helpers: the stated score threshold, input files, output folder and input-size checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bafenet.config import load_config
from bafenet.data import transforms
from bafenet.data.sample import Sample
from bafenet.engine.predict import DEFAULT_SCORE_THR, check_output_folder, image_files, operating_score_thr
from bafenet.engine.setup import EvalTransform, build_eval_transform
from bafenet.errors import BafenetError, DataError


def test_released_operating_point_comes_first() -> None:
    ckpt = {"metadata": {"operating_score_thr": 0.12, "metrics": {"best_f1_score_thr": 0.4}}}
    assert operating_score_thr(ckpt) == (0.12, "the checkpoint's operating point")


def test_training_checkpoint_uses_its_f1_best_threshold() -> None:
    thr, source = operating_score_thr({"metadata": {"metrics": {"mAP07": 0.5, "best_f1_score_thr": 0.21}}})
    assert thr == 0.21 and "F1-best" in source


def test_without_metadata_the_default() -> None:
    for ckpt in ({}, {"metadata": {}}, {"metadata": {"metrics": {"mAP07": 0.1}}}):
        assert operating_score_thr(ckpt) == (DEFAULT_SCORE_THR, "default")


@pytest.mark.parametrize(
    "metadata",
    [
        {"operating_score_thr": "high"},
        {"operating_score_thr": 1.5},
        {"operating_score_thr": float("nan")},
        {"operating_score_thr": True},
        {"metrics": {"best_f1_score_thr": "0.2"}},
        {"metrics": [0.2]},
    ],
)
def test_a_stated_threshold_that_is_not_a_score_is_refused(metadata: dict) -> None:
    with pytest.raises(BafenetError, match=r"checkpoint metadata\.(operating_score_thr|metrics)"):
        operating_score_thr({"metadata": metadata})


def test_image_files_refuses_two_images_with_one_name(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "frame.png").write_bytes(b"")
    assert image_files([tmp_path / "a"]) == [tmp_path / "a" / "frame.png"]
    with pytest.raises(BafenetError, match="two images named 'frame' would write the same drawing"):
        image_files([tmp_path / "a", tmp_path / "b" / "frame.png"])


def test_output_folder_is_checked_before_the_work(tmp_path: Path) -> None:
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing created yet
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"file: exists and is not a folder"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(DataError, match=r"file/out: cannot be created: .*file is not a folder"):
        check_output_folder(tmp_path / "file" / "out")


def _native_x2(*overrides: str) -> EvalTransform:
    return build_eval_transform(load_config(None, ["eval.protocol=native", "eval.scale=2", *overrides]))


def test_frames_too_small_for_the_detector_are_refused_with_the_minimum() -> None:
    transform = _native_x2()
    tiny = Sample(image=np.zeros((16, 12), np.float32), image_id="tiny", path=Path("tiny.png"))
    with pytest.raises(DataError) as info:
        transform(tiny)
    assert str(info.value) == (
        "tiny.png: frame of 12x16 px is too small: its network input would be 24x32 px and the detector "
        "needs at least 33 px on the long side (frames of at least 17 px at this scale)"
    )
    assert transform(Sample(image=np.zeros((17, 4), np.float32))).image.shape == (34, 8)
    # the resize protocol gives every frame the training size
    resized = build_eval_transform(load_config(None, ["data.input.size=64"]))
    assert resized(tiny).image.shape == (64, 64)


def test_network_inputs_above_the_pixel_limit_are_refused_before_resizing(monkeypatch) -> None:
    transform = _native_x2("eval.max_pixels=10000")
    frame = Sample(image=np.zeros((50, 60), np.float32), image_id="f", path=Path("big.png"))

    def no_resizing(*args, **kwargs):
        raise AssertionError("the frame was resized")

    monkeypatch.setattr(transforms, "resize", no_resizing)
    with pytest.raises(DataError) as info:
        transform(frame)
    assert str(info.value) == (
        "big.png: frame of 60x50 px would become a 120x100 px network input (12000 px), above the "
        "limit of 10000 px (eval.max_pixels); lower eval.scale or set eval.max_side"
    )
    capped = _native_x2("eval.max_pixels=10000", "eval.max_side=100")
    assert capped.input_shape(50, 60) == (83, 100)
    monkeypatch.undo()
    assert capped(frame).image.shape == (83, 100)
