"""Target-level Pd / false alarms: hand cases, thresholds, curve, independence of batching."""

from __future__ import annotations

import numpy as np
import pytest

from bafenet.errors import BafenetError
from bafenet.metrics.irstd import TargetLevelEvaluator, match_centroids


def _box(cx: float, cy: float, size: float = 3.0) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def test_distance_rule_is_strictly_below_three_pixels() -> None:
    gt = np.array([[10.5, 10.5]])
    preds = np.array([[10.5 + 2.9, 10.5], [10.5 + 3.0, 10.5]])
    assert match_centroids(preds[:1], [0.9], gt).tolist() == [True]
    assert match_centroids(preds[1:], [0.9], gt).tolist() == [False]
    # diagonal (2, 2): distance 2.83 < 3
    assert match_centroids(np.array([[12.5, 12.5]]), [0.9], gt).tolist() == [True]


def test_each_prediction_and_target_match_once_greedy_by_score() -> None:
    gts = np.array([[10.0, 10.0], [14.0, 10.0]])  # 4 px apart
    # the high-scored prediction sits between them, nearer the second target
    preds = np.array([[12.5, 10.0], [11.0, 10.0], [11.0, 10.0]])
    matched = match_centroids(preds, [0.9, 0.8, 0.7], gts)
    assert matched.tolist() == [True, True, False]  # 0 -> gt 1 (nearest), 1 -> gt 0, 2 -> nothing left


def test_pd_and_false_alarms_hand_case() -> None:
    evaluator = TargetLevelEvaluator(score_threshold=0.5)
    # image a (1000 x 1000 = 1 Mpx): 3 targets, 2 found, 1 false alarm, 1 below threshold
    evaluator.add(
        "a",
        [_box(10, 10), _box(50, 50), _box(300, 300), _box(100, 100)],
        [0.9, 0.6, 0.7, 0.2],
        [_box(11, 10), _box(51, 51), _box(100, 100)],
        image_size=(1000, 1000),
    )
    # image b (500 x 1000 = 0.5 Mpx): no target, 2 false alarms
    evaluator.add("b", [_box(5, 5), _box(20, 20)], [0.8, 0.55], np.zeros((0, 4)), image_size=(500, 1000))
    result = evaluator.compute()
    assert (result["detected"], result["num_targets"], result["false_alarms"]) == (2, 3, 3)
    assert result["pd"] == pytest.approx(2 / 3)
    assert result["fa_per_image"] == pytest.approx(3 / 2)
    assert result["fa_per_mpix"] == pytest.approx(3 / 1.5)
    assert result["megapixels"] == pytest.approx(1.5)
    # a lower threshold lets the 0.2 prediction find the third target
    low = evaluator.compute(score_threshold=0.1)
    assert (low["detected"], low["false_alarms"]) == (3, 3)
    rows = evaluator.per_image()
    assert rows == [
        {"image_id": "a", "num_targets": 3, "detected": 2, "false_alarms": 1},
        {"image_id": "b", "num_targets": 0, "detected": 0, "false_alarms": 2},
    ]


def test_gt_centers_override_box_centres() -> None:
    evaluator = TargetLevelEvaluator(score_threshold=0.0)
    gt_boxes = [_box(10, 10)]
    evaluator.add("a", [_box(20, 20)], [0.9], gt_boxes, image_size=(64, 64), gt_centers=[[19.0, 20.0]])
    assert evaluator.compute()["pd"] == 1.0


def test_curve_matches_compute_at_every_threshold() -> None:
    rng = np.random.default_rng(0)
    evaluator = TargetLevelEvaluator()
    for i in range(8):
        gts = rng.uniform(5, 60, size=(5, 2))
        preds = np.concatenate([gts[:3] + rng.normal(0, 1.5, size=(3, 2)), rng.uniform(5, 60, size=(4, 2))])
        scores = rng.choice([0.1, 0.3, 0.5, 0.8], size=len(preds))  # ties on purpose
        evaluator.add(
            f"img{i}",
            [_box(x, y) for x, y in preds],
            scores,
            [_box(x, y) for x, y in gts],
            image_size=(64, 64),
        )
    curve = evaluator.curve()
    assert np.all(np.diff(curve["score_threshold"]) < 0)
    assert np.all(np.diff(curve["pd"]) >= 0) and np.all(np.diff(curve["fa_per_image"]) >= 0)
    for k, threshold in enumerate(curve["score_threshold"]):
        point = evaluator.compute(score_threshold=threshold)
        assert curve["pd"][k] == pytest.approx(point["pd"])
        assert curve["fa_per_image"][k] == pytest.approx(point["fa_per_image"])
        assert curve["fa_per_mpix"][k] == pytest.approx(point["fa_per_mpix"])


def test_independent_of_order_and_batching() -> None:
    rng = np.random.default_rng(1)
    images = []
    for i in range(6):
        gts = rng.uniform(0, 40, size=(4, 2))
        preds = rng.uniform(0, 40, size=(6, 2))
        images.append((f"i{i}", [_box(*p) for p in preds], rng.uniform(0, 1, 6), [_box(*g) for g in gts]))
    whole = TargetLevelEvaluator()
    for image_id, boxes, scores, gts in images:
        whole.add(image_id, boxes, scores, gts, image_size=(48, 48))
    # two "ranks", images in another order, merged
    part_a, part_b = TargetLevelEvaluator(), TargetLevelEvaluator()
    for index, (image_id, boxes, scores, gts) in enumerate(images[::-1]):
        (part_a if index % 2 else part_b).add(image_id, boxes, scores, gts, image_size=(48, 48))
    part_a.merge(part_b)
    assert part_a.compute() == whole.compute()
    for key, values in whole.curve().items():
        np.testing.assert_array_equal(part_a.curve()[key], values)


def test_errors() -> None:
    evaluator = TargetLevelEvaluator()
    evaluator.add("a", [], [], [], image_size=(8, 8))
    with pytest.raises(BafenetError, match="added twice"):
        evaluator.add("a", [], [], [], image_size=(8, 8))
    with pytest.raises(ValueError, match="image_size"):
        evaluator.add("b", [], [], [], image_size=(0, 8))
    assert np.isnan(evaluator.compute()["pd"])
    assert evaluator.compute()["fa_per_image"] == 0.0


def test_curve_without_any_prediction_is_empty():
    ev = TargetLevelEvaluator()
    ev.add("a", np.zeros((0, 4)), np.zeros(0), np.array([[0, 0, 3, 3]], np.float32), image_size=(10, 10))
    curve = ev.curve()
    assert len(curve["pd"]) == 0 and len(curve["false_alarms"]) == 0


def test_targets_found_is_the_same_matching_seen_from_the_targets() -> None:
    from bafenet.metrics.irstd import targets_found

    gt = np.array([[10.0, 10.0], [20.0, 20.0], [40.0, 40.0]])
    # the highest score takes target 0; the second prediction, nearer still to target 0, finds
    # it taken and nothing else within 3 px; the third takes target 1 (2.8 px); target 2 is
    # 5 px from the last one: missed
    pred = np.array([[11.0, 10.0], [10.0, 10.5], [22.0, 22.0], [45.0, 40.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    found = targets_found(pred, scores, gt)
    assert found.tolist() == [True, True, False]
    assert match_centroids(pred, scores, gt).tolist() == [True, False, True, False]
    assert targets_found(np.zeros((0, 2)), np.zeros(0), gt).tolist() == [False] * 3
