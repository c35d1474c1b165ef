"""Inference helpers: the stated score threshold and the output folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from bafenet.engine.inference import DEFAULT_SCORE_THR, operating_score_thr
from bafenet.engine.predict import check_output_folder
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


def test_output_folder_is_checked_before_the_work(tmp_path: Path) -> None:
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing created yet
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"file: exists and is not a folder"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(DataError, match=r"file/out: cannot be created: .*file is not a folder"):
        check_output_folder(tmp_path / "file" / "out")
