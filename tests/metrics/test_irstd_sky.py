"""Where false alarms happen: sky split at a threshold and false alarms at fixed Pd, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bafenet.metrics.irstd import TargetLevelEvaluator, sky_at_centers


def _box(cx: float, cy: float, size: float = 3.0) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def _sky_mask() -> np.ndarray:
    """1000 x 1000 (1 Mpx): rows < 500 sky, 500..899 not sky, >= 900 unknown."""
    mask = np.zeros((1000, 1000), dtype=np.uint8)
    mask[:500] = 1
    mask[900:] = 255
    return mask


# 8 targets in the sky; 7 found. Predictions (x, y, score), descending score.
TARGETS = [(50.0 * (i + 1), 100.0) for i in range(8)]
PREDICTIONS = [
    (*TARGETS[0], 0.95),
    (*TARGETS[1], 0.90),
    (*TARGETS[2], 0.85),
    (*TARGETS[3], 0.80),
    (*TARGETS[4], 0.75),
    (600.0, 200.0, 0.70),  # false alarm, sky
    (*TARGETS[5], 0.65),
    (600.0, 700.0, 0.60),  # false alarm, not sky
    (700.0, 700.0, 0.55),  # false alarm, not sky
    (*TARGETS[6], 0.50),  # a tie: a hit and ...
    (600.0, 950.0, 0.50),  # ... a false alarm where the sky is unknown
    (800.0, 800.0, 0.40),  # false alarm, not sky
]


def _evaluator(with_sky: bool = True) -> TargetLevelEvaluator:
    boxes = np.array([_box(x, y) for x, y, _ in PREDICTIONS])
    scores = np.array([s for _, _, s in PREDICTIONS])
    evaluator = TargetLevelEvaluator(score_threshold=0.5)
    evaluator.add(
        "a",
        boxes,
        scores,
        [_box(x, y) for x, y in TARGETS],
        image_size=(1000, 1000),
        pred_sky=sky_at_centers(boxes, _sky_mask()) if with_sky else None,
    )
    return evaluator


def test_sky_at_centers_reads_the_pixel_holding_the_centre() -> None:
    mask = _sky_mask()
    boxes = np.array(
        [
            [10, 498, 12, 501],  # centre y 499.5 -> row 499: sky
            [10, 499, 12, 501],  # centre y 500.0 -> row 500: not sky
            [10, 950, 12, 952],  # unknown
            [998, 998, 1002, 1002],  # centre (1000, 1000), on the frame edge -> clipped to (999, 999)
        ],
        dtype=np.float32,
    )
    assert sky_at_centers(boxes, mask).tolist() == [1, 0, 255, 255]
    assert sky_at_centers(boxes, None).tolist() == [255] * 4
    odd = np.full((1000, 1000), 7, dtype=np.uint8)  # not a sky value -> unknown
    assert sky_at_centers(boxes[:1], odd).tolist() == [255]


def test_false_alarms_split_by_annotated_sky() -> None:
    evaluator = _evaluator()
    at_default = evaluator.compute()  # threshold 0.5: the 0.40 alarm is not kept
    assert at_default["detected"] == 7 and at_default["pd"] == pytest.approx(7 / 8)
    assert at_default["false_alarms"] == 4
    assert at_default["false_alarms_in_sky"] == 1
    assert at_default["false_alarms_off_sky"] == 2
    assert at_default["false_alarms_sky_unknown"] == 1
    assert at_default["fa_off_sky_share"] == pytest.approx(2 / 3)
    everything = evaluator.compute(score_threshold=0.4)
    assert (everything["false_alarms_in_sky"], everything["false_alarms_off_sky"]) == (1, 3)
    assert everything["fa_off_sky_share"] == pytest.approx(3 / 4)
    high = evaluator.compute(score_threshold=0.58)
    assert (high["pd"], high["false_alarms_in_sky"], high["false_alarms_off_sky"]) == (6 / 8, 1, 1)
    assert high["false_alarms_sky_unknown"] == 0 and high["fa_off_sky_share"] == 0.5
    assert evaluator.compute(score_threshold=0.99)["fa_off_sky_share"] is None  # no false alarm


def test_without_sky_annotation_every_false_alarm_is_unknown() -> None:
    result = _evaluator(with_sky=False).compute()
    assert result["false_alarms_sky_unknown"] == result["false_alarms"] == 4
    assert result["false_alarms_in_sky"] == result["false_alarms_off_sky"] == 0
    assert result["fa_off_sky_share"] is None


def test_fa_at_fixed_pd_interpolated_on_the_curve() -> None:
    evaluator = _evaluator()
    # curve (Pd, FA per Mpx; 1 Mpx so per Mpx = count): ..., (6/8, 1) at 0.65, (6/8, 2), (6/8, 3)
    # at 0.55, then the tied 0.50 group adds a hit and an alarm: (7/8, 4); Pd never reaches 0.9
    result = evaluator.fa_at_pd()
    assert result["fa_per_mpix_at_pd_0.80"] == pytest.approx(3 + (0.80 - 0.75) / 0.125 * (4 - 3))  # 3.4
    assert result["fa_per_mpix_at_pd_0.85"] == pytest.approx(3 + (0.85 - 0.75) / 0.125 * (4 - 3))  # 3.8
    assert result["fa_per_mpix_at_pd_0.90"] is None
    # a level met exactly by a point: the first point reaching it (fewest alarms)
    assert evaluator.fa_at_pd((0.75, 0.5))["fa_per_mpix_at_pd_0.75"] == pytest.approx(1.0)
    assert evaluator.fa_at_pd((0.5,))["fa_per_mpix_at_pd_0.50"] == 0.0
    # from the curve's origin (Pd 0, no alarm) to its first point
    origin = TargetLevelEvaluator()
    origin.add("b", [_box(10, 10), _box(40, 40)], [0.9, 0.9], [_box(10, 10)], image_size=(1000, 1000))
    assert origin.fa_at_pd((0.8,))["fa_per_mpix_at_pd_0.80"] == pytest.approx(0.8)


def _half_megapixel() -> TargetLevelEvaluator:
    """0.5 Mpx, two targets: one hit, then one alarm and the second hit tied:
    the curve (Pd, FA per Mpx) runs (0, 0) -> (0.5, 0) -> (1.0, 2)."""
    evaluator = TargetLevelEvaluator()
    evaluator.add(
        "a",
        [_box(10, 10), _box(100, 100), _box(50, 50)],
        [0.9, 0.5, 0.5],
        [_box(10, 10), _box(50, 50)],
        image_size=(500, 1000),
    )
    return evaluator


def test_fa_at_pd_per_megapixel_and_without_targets() -> None:
    evaluator = _half_megapixel()
    # (0.5, 0) -> (1.0, 2 per Mpx): Pd 0.8 lies 3/5 along the segment
    assert evaluator.fa_at_pd()["fa_per_mpix_at_pd_0.80"] == pytest.approx(0.6 * 2)
    empty = TargetLevelEvaluator()
    empty.add("a", [_box(10, 10)], [0.9], np.zeros((0, 4)), image_size=(10, 10))
    assert empty.fa_at_pd() == dict.fromkeys(
        ("fa_per_mpix_at_pd_0.80", "fa_per_mpix_at_pd_0.85", "fa_per_mpix_at_pd_0.90")
    )


def test_pd_at_fixed_false_alarms_interpolated_on_the_curve() -> None:
    result = _half_megapixel().pd_at_fa((0.0, 1.0, 2.0, 5.0))
    assert result["pd_at_fa_per_mpix_0"] == 0.5  # the last point without an alarm
    assert result["pd_at_fa_per_mpix_1"] == pytest.approx(0.75)  # halfway to (1.0, 2)
    assert result["pd_at_fa_per_mpix_2"] == 1.0
    assert result["pd_at_fa_per_mpix_5"] == 1.0  # past the curve's end: its final Pd
    # on the 8-target case: (6/8, 3 alarms) at 0.55, then (7/8, 4): 3.5 alarms is halfway
    assert _evaluator().pd_at_fa((3.5,))["pd_at_fa_per_mpix_3.5"] == pytest.approx(0.8125)
    empty = TargetLevelEvaluator()
    empty.add("a", [_box(10, 10)], [0.9], np.zeros((0, 4)), image_size=(10, 10))
    assert empty.pd_at_fa() == dict.fromkeys(
        ("pd_at_fa_per_mpix_1", "pd_at_fa_per_mpix_2", "pd_at_fa_per_mpix_5")
    )


def test_pred_sky_length_is_checked() -> None:
    evaluator = TargetLevelEvaluator()
    with pytest.raises(ValueError, match="pred_sky"):
        evaluator.add("a", [_box(10, 10)], [0.9], [], image_size=(20, 20), pred_sky=[1, 0])
