"""VOC AP: hand-computed cases under both width conventions, and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bafenet.errors import BafenetError
from bafenet.metrics.voc import (
    DetectionEvaluator,
    ap_11_point,
    ap_area,
    best_f1_point,
    box_iou,
    match_image,
)

GT = np.array([[10.0, 20.0, 13.0, 23.0]], dtype=np.float32)  # a 3x3 target


def _iou_by_hand(shift_x: int, shift_y: int, extra: int) -> float:
    """IoU of a 3x3 box with itself moved by (shift_x, shift_y), each side measured as 3 + extra."""
    side = 3 + extra
    overlap = (side - shift_x) * (side - shift_y)
    return overlap / (2 * side * side - overlap)


def test_one_pixel_shift_in_x_legacy_and_strict() -> None:
    moved = GT + np.array([1, 0, 1, 0], dtype=np.float32)
    legacy, strict = _iou_by_hand(1, 0, 1), _iou_by_hand(1, 0, 0)
    assert legacy == pytest.approx(12 / 20) == pytest.approx(0.60)
    assert strict == pytest.approx(6 / 12) == pytest.approx(0.50)
    assert box_iou(moved, GT, legacy=True)[0, 0] == pytest.approx(legacy)
    assert box_iou(moved, GT, legacy=False)[0, 0] == pytest.approx(strict)
    # both reach the 0.5 threshold (strict exactly at it)
    assert match_image(moved, [0.9], GT, 0.5, legacy=True).tolist() == [True]
    assert match_image(moved, [0.9], GT, 0.5, legacy=False).tolist() == [True]


def test_one_pixel_shift_in_x_and_y_legacy_and_strict() -> None:
    moved = GT + 1
    legacy, strict = _iou_by_hand(1, 1, 1), _iou_by_hand(1, 1, 0)
    assert legacy == pytest.approx(9 / 23)
    assert strict == pytest.approx(4 / 14)
    assert round(legacy, 2) == 0.39 and round(strict, 2) == 0.29
    assert box_iou(moved, GT, legacy=True)[0, 0] == pytest.approx(legacy)
    assert box_iou(moved, GT, legacy=False)[0, 0] == pytest.approx(strict)


def test_legacy_and_strict_disagree_at_a_tighter_threshold() -> None:
    evaluator = DetectionEvaluator(iou_threshold=0.55)
    evaluator.add("a", GT + np.array([1, 0, 1, 0]), [0.9], GT)
    result = evaluator.compute()
    assert result["mAP07"] == pytest.approx(1.0) and result["recall"] == 1.0
    assert result["strict_mAP07"] == 0.0 and result["strict_recall"] == 0.0


def test_duplicates_count_as_false_positives() -> None:
    evaluator = DetectionEvaluator()
    preds = np.concatenate([GT, GT, GT])
    evaluator.add("a", preds, [0.9, 0.8, 0.7], GT)
    result = evaluator.compute()
    assert (result["tp"], result["fp"]) == (1, 2)
    # ranked list: TP (P=1, R=1), FP, FP -> every 11-point threshold sees precision 1
    assert result["mAP07"] == pytest.approx(1.0)
    assert result["mAP12"] == pytest.approx(1.0)
    assert result["precision"] == pytest.approx(1 / 3)
    assert evaluator.per_image()[0] == {
        "image_id": "a",
        "num_gt": 1,
        "num_pred": 3,
        "tp": 1,
        "fp": 2,
        "fn": 0,
        "strict_tp": 1,
        "strict_fp": 2,
        "strict_fn": 0,
    }


def test_higher_scored_duplicate_takes_the_target() -> None:
    far = GT + 1  # IoU 0.39: a false positive on its own
    is_tp = match_image(np.concatenate([far, GT]), [0.95, 0.5], GT, 0.5, legacy=True)
    assert is_tp.tolist() == [False, True]
    # a prediction whose best GT is already taken is a FP even if another GT is free
    two_gt = np.concatenate([GT, GT + np.array([3, 0, 3, 0])])
    pred = GT + np.array([0.5, 0, 0.5, 0])  # IoU with first GT > with second
    assert match_image(np.concatenate([GT, pred]), [0.9, 0.8], two_gt).tolist() == [True, False]


def test_images_without_predictions_and_without_targets() -> None:
    evaluator = DetectionEvaluator()
    evaluator.add("hit", GT, [0.9], GT)
    evaluator.add("missed", np.zeros((0, 4)), np.zeros(0), GT + 50)  # 1 FN
    evaluator.add("empty", GT, [0.5], np.zeros((0, 4)))  # 1 FP, no target
    result = evaluator.compute()
    assert result["num_gt"] == 2 and result["num_pred"] == 2 and result["num_images"] == 3
    # ranked: TP@0.9 (R 0.5, P 1), FP@0.5 (R 0.5, P 0.5)
    assert result["recall"] == pytest.approx(0.5)
    assert result["mAP07"] == pytest.approx(6 / 11)  # thresholds 0 .. 0.5 reach P = 1
    assert result["mAP12"] == pytest.approx(0.5)
    rows = {row["image_id"]: row for row in evaluator.per_image()}
    assert (rows["missed"]["tp"], rows["missed"]["fn"]) == (0, 1)
    assert (rows["empty"]["fp"], rows["empty"]["num_gt"]) == (1, 0)


def test_empty_evaluator_and_no_targets_give_zero() -> None:
    assert DetectionEvaluator().compute()["mAP07"] == 0.0
    evaluator = DetectionEvaluator()
    evaluator.add("a", GT, [0.9], np.zeros((0, 4)))
    result = evaluator.compute()
    assert result["mAP07"] == 0.0 and result["mAP12"] == 0.0 and result["strict_recall"] == 0.0


def test_hand_ranked_list_ap_values() -> None:
    # 4 targets; ranked TP, FP, TP, FP, TP -> recall .25 .25 .5 .5 .75, precision 1 .5 .667 .5 .6
    recall = np.array([0.25, 0.25, 0.5, 0.5, 0.75])
    precision = np.array([1.0, 0.5, 2 / 3, 0.5, 0.6])
    # 11-point: t=0..0.2 -> 1 (3 points); t=0.3..0.5 -> 2/3 (3 points); t=0.6,0.7 -> 0.6; t>=0.8 -> 0
    assert ap_11_point(recall, precision) == pytest.approx((3 * 1 + 3 * 2 / 3 + 2 * 0.6) / 11)
    # area: 0.25 * 1 + 0.25 * 2/3 + 0.25 * 0.6
    assert ap_area(recall, precision) == pytest.approx(0.25 + 0.25 * 2 / 3 + 0.25 * 0.6)


def test_eleven_point_thresholds_are_the_official_floats() -> None:
    # recall exactly 0.3 does not reach the official threshold 0.30000000000000004
    assert ap_11_point(np.array([0.3]), np.array([1.0])) == pytest.approx(3 / 11)
    assert ap_11_point(np.array([0.4]), np.array([1.0])) == pytest.approx(5 / 11)


def test_duplicate_image_id_is_an_error() -> None:
    evaluator = DetectionEvaluator()
    evaluator.add("a", GT, [0.9], GT)
    with pytest.raises(BafenetError, match="added twice"):
        evaluator.add("a", GT, [0.9], GT)
    with pytest.raises(ValueError, match="pred_scores"):
        evaluator.add("b", GT, [0.9, 0.8], GT)


def test_merge_equals_single_evaluator() -> None:
    whole, part_a, part_b = DetectionEvaluator(), DetectionEvaluator(), DetectionEvaluator()
    for i, (evaluator, shift) in enumerate([(part_a, 0), (part_b, 1), (part_a, 2)]):
        preds, scores, gts = GT + shift, [0.3 + 0.1 * i], GT
        whole.add(str(i), preds, scores, gts)
        evaluator.add(str(i), preds, scores, gts)
    part_a.merge(part_b)
    assert part_a.compute() == whole.compute()


# ---------------------------------------------------------------- independent reference


def _reference_ap(images: list[tuple[list, list, list]], legacy: bool) -> tuple[float, float, float]:
    """A deliberately plain re-statement of the protocol: loops over Python floats."""
    extra = 1.0 if legacy else 0.0

    def iou(a: list[float], b: list[float]) -> float:
        w = max(min(a[2], b[2]) - max(a[0], b[0]) + extra, 0.0)
        h = max(min(a[3], b[3]) - max(a[1], b[1]) + extra, 0.0)
        area_a = (a[2] - a[0] + extra) * (a[3] - a[1] + extra)
        area_b = (b[2] - b[0] + extra) * (b[3] - b[1] + extra)
        return w * h / max(area_a + area_b - w * h, 1e-6)

    ranked = []  # (score, image index, rank in image, is_tp)
    num_gt = 0
    for index, (boxes, scores, gts) in enumerate(images):
        num_gt += len(gts)
        taken = [False] * len(gts)
        order = sorted(range(len(scores)), key=lambda k: -scores[k])
        for rank, k in enumerate(order):
            ious = [iou(boxes[k], g) for g in gts]
            tp = False
            if ious:
                best = max(range(len(gts)), key=lambda j: (ious[j], -j))
                if ious[best] >= 0.5 and not taken[best]:
                    taken[best] = tp = True
            ranked.append((scores[k], index, rank, tp))
    ranked.sort(key=lambda r: (-r[0], r[1], r[2]))
    tp = fp = 0
    recalls, precisions = [], []
    for *_, is_tp in ranked:
        tp, fp = tp + is_tp, fp + (not is_tp)
        recalls.append(tp / num_gt if num_gt else 0.0)
        precisions.append(tp / (tp + fp))
    ap11 = 0.0
    for t in range(11):
        reached = [p for r, p in zip(recalls, precisions, strict=True) if r >= t * 0.1]
        ap11 += max(reached) if reached else 0.0
    area, previous_recall = 0.0, 0.0
    for i, r in enumerate(recalls):
        if r > previous_recall:
            area += (r - previous_recall) * max(precisions[i:])
            previous_recall = r
    return ap11 / 11, area, recalls[-1] if recalls else 0.0


coordinate = st.integers(0, 30)
box = st.tuples(coordinate, coordinate, st.integers(1, 6), st.integers(1, 6)).map(
    lambda t: [float(t[0]), float(t[1]), float(t[0] + t[2]), float(t[1] + t[3])]
)
image = st.integers(0, 6).flatmap(
    lambda n: st.tuples(
        st.lists(box, min_size=n, max_size=n),
        st.lists(st.sampled_from([0.1, 0.2, 0.35, 0.5, 0.7, 0.9]), min_size=n, max_size=n),
        st.lists(box, min_size=0, max_size=5),
    )
)
images_strategy = st.lists(image, min_size=1, max_size=6)


def _evaluate(images: list[tuple[list, list, list]], ids: list[str] | None = None) -> dict:
    evaluator = DetectionEvaluator()
    ids = ids or [f"{i:03d}" for i in range(len(images))]
    for image_id, (boxes, scores, gts) in zip(ids, images, strict=True):
        evaluator.add(
            image_id, np.array(boxes).reshape(-1, 4), np.array(scores), np.array(gts).reshape(-1, 4)
        )
    return evaluator.compute()


@settings(max_examples=150, deadline=None)
@given(images_strategy)
def test_matches_independent_reference(images: list) -> None:
    result = _evaluate(images)
    for legacy, prefix in ((True, ""), (False, "strict_")):
        ap11, area, recall = _reference_ap(images, legacy)
        if result["num_gt"] == 0:
            ap11 = area = 0.0
        assert result[f"{prefix}mAP07"] == pytest.approx(ap11, abs=1e-9)
        assert result[f"{prefix}mAP12"] == pytest.approx(area, abs=1e-9)
        assert result[f"{prefix}recall"] == pytest.approx(recall, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(images_strategy)
def test_ap_in_unit_interval_and_order_invariant(images: list) -> None:
    result = _evaluate(images)
    for key in ("mAP07", "mAP12", "recall", "strict_mAP07", "strict_mAP12", "strict_recall"):
        assert 0.0 <= result[key] <= 1.0
    reversed_result = _evaluate(images[::-1], [f"{i:03d}" for i in range(len(images))][::-1])
    assert reversed_result == result


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(box, min_size=1, max_size=5, unique_by=tuple), min_size=1, max_size=5))
def test_perfect_predictions_give_one(gt_lists: list) -> None:
    # distinct boxes: two identical targets would compete for one prediction (a VOC rule)
    images = [(gts, [0.9] * len(gts), gts) for gts in gt_lists]
    result = _evaluate(images)
    for key in ("mAP07", "mAP12", "recall", "strict_mAP07", "strict_mAP12", "strict_recall"):
        assert result[key] == pytest.approx(1.0)


@settings(max_examples=100, deadline=None)
@given(images_strategy, st.integers(0, 5))
def test_lower_scored_false_positive_never_raises_ap(images: list, target_image: int) -> None:
    before = _evaluate(images)
    index = target_image % len(images)
    boxes, scores, gts = images[index]
    far_away = [500.0, 500.0, 503.0, 503.0]  # overlaps nothing: always a FP
    lowest = min([s for _, ss, _ in images for s in ss], default=1.0) / 2
    changed = list(images)
    changed[index] = (boxes + [far_away], scores + [lowest], gts)
    after = _evaluate(changed)
    for key in ("mAP07", "mAP12", "strict_mAP07", "strict_mAP12"):
        assert after[key] <= before[key] + 1e-12
    assert after["recall"] == before["recall"]


def test_best_f1_point_by_hand() -> None:
    # thresholds 0.9 / 0.8 / 0.7 / 0.6 give F1 2/3, 1/2, 4/5, 2/3: the best keeps three predictions
    best = best_f1_point(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, False]), num_gt=2)
    assert best["score_thr"] == 0.7
    assert best["f1"] == pytest.approx(0.8) and best["recall"] == 1.0
    assert best["precision"] == pytest.approx(2 / 3)


def test_best_f1_point_never_splits_equal_scores() -> None:
    # a threshold of 0.9 keeps both predictions: precision 1/2, not the 1.0 of the first alone
    best = best_f1_point(np.array([0.9, 0.9]), np.array([True, False]), num_gt=1)
    assert best["score_thr"] == 0.9 and best["precision"] == 0.5 and best["f1"] == pytest.approx(2 / 3)


def test_best_f1_point_without_predictions_or_targets() -> None:
    for scores, num_gt in ((np.zeros(0), 3), (np.array([0.5]), 0)):
        best = best_f1_point(scores, np.zeros(len(scores), bool), num_gt=num_gt)
        assert best["score_thr"] is None and best["f1"] == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.booleans()), min_size=1, max_size=25), st.integers(1, 12))
def test_best_f1_point_matches_brute_force(rows: list[tuple[int, bool]], extra_gt: int) -> None:
    scores = np.array([s / 6 for s, _ in rows])
    is_tp = np.array([t for _, t in rows])
    order = np.argsort(-scores, kind="stable")
    scores, is_tp = scores[order], is_tp[order]
    num_gt = int(is_tp.sum()) + extra_gt
    best = best_f1_point(scores, is_tp, num_gt)
    f1s = {}
    for thr in np.unique(scores):
        tp = int(is_tp[scores >= thr].sum())
        kept = int((scores >= thr).sum())
        f1s[thr] = 2 * tp / (kept + num_gt)  # F1 = 2 TP / (predicted + actual)
    assert best["f1"] == pytest.approx(max(f1s.values()))
    assert f1s[best["score_thr"]] == pytest.approx(best["f1"])


def test_evaluator_reports_its_operating_point() -> None:
    ev = DetectionEvaluator()
    gt = np.array([[0, 0, 4, 4], [10, 10, 14, 14]], float)
    ev.add(
        "a",
        np.array([[0, 0, 4, 4], [20, 20, 24, 24], [10, 10, 14, 14]], float),
        np.array([0.9, 0.8, 0.4]),
        gt,
    )
    m = ev.compute()
    assert m["best_f1_score_thr"] == pytest.approx(0.4) and m["best_f1"] == pytest.approx(0.8)
    assert m["best_f1_recall"] == 1.0 and m["best_f1_precision"] == pytest.approx(2 / 3)
