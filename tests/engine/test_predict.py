"""The score threshold ``bafenet predict`` keeps detections at, from a checkpoint's metadata."""

from __future__ import annotations

from bafenet.engine.predict import DEFAULT_SCORE_THR, operating_score_thr


def test_released_operating_point_comes_first() -> None:
    ckpt = {"metadata": {"operating_score_thr": 0.12, "metrics": {"best_f1_score_thr": 0.4}}}
    assert operating_score_thr(ckpt) == (0.12, "the checkpoint's operating point")


def test_training_checkpoint_uses_its_f1_best_threshold() -> None:
    thr, source = operating_score_thr({"metadata": {"metrics": {"mAP07": 0.5, "best_f1_score_thr": 0.21}}})
    assert thr == 0.21 and "F1-best" in source


def test_without_metadata_the_default() -> None:
    for ckpt in ({}, {"metadata": {}}, {"metadata": {"metrics": {"mAP07": 0.1}}}):
        assert operating_score_thr(ckpt) == (DEFAULT_SCORE_THR, "default")
