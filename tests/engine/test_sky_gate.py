"""engine/sky_gate.py: gating saved detections, the threshold sweep and its choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import EvalConfig, load_config
from bafenet.data.sample import Sample
from bafenet.engine.evaluate import Prediction, evaluate, prediction_metrics
from bafenet.engine.inference import EvalGeometry
from bafenet.engine.sky_gate import best_threshold, choose_gate_threshold, gate_predictions, sweep_sky_gate
from bafenet.models.zoo import build_model


def _pred(image_id: str, boxes, scores, sky_prob, gt_boxes, pred_sky=None) -> Prediction:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Prediction(
        image_id,
        boxes,
        np.asarray(scores, np.float32),
        np.asarray(gt_boxes, np.float32).reshape(-1, 4),
        (64, 64),
        pred_sky=None if pred_sky is None else np.asarray(pred_sky, np.uint8),
        model_sky_prob=np.asarray(sky_prob, np.float32),
    )


def test_gate_drops_detections_below_the_threshold_and_keeps_the_ground_truth() -> None:
    p = _pred(
        "a",
        [[0, 0, 4, 4], [10, 10, 14, 14], [20, 20, 24, 24]],
        [0.9, 0.8, 0.7],
        sky_prob=[0.9, 0.2, 0.5],
        gt_boxes=[[0, 0, 4, 4]],
        pred_sky=[1, 0, 255],
    )
    (gated,) = gate_predictions([p], 0.5)
    np.testing.assert_array_equal(gated.boxes, [[0, 0, 4, 4], [20, 20, 24, 24]])  # 0.5 >= 0.5 stays
    np.testing.assert_array_equal(gated.scores, np.float32([0.9, 0.7]))
    np.testing.assert_array_equal(gated.pred_sky, [1, 255])
    np.testing.assert_array_equal(gated.model_sky_prob, np.float32([0.9, 0.5]))
    np.testing.assert_array_equal(gated.gt_boxes, p.gt_boxes)
    assert len(p.boxes) == 3  # the input is not changed
    (everything,) = gate_predictions([p], 0.0)
    assert len(everything.boxes) == 3
    with pytest.raises(ValueError, match="no sky probability"):
        gate_predictions([Prediction("b", p.boxes, p.scores, p.gt_boxes, (64, 64))], 0.5)


def _hand_built_set() -> list[Prediction]:
    """Two frames; each: a target in the sky found with score 0.6 (own sky 0.9) and a higher
    scored false alarm on the ground (own sky 0.1)."""
    return [
        _pred(
            name,
            [[30, 30, 34, 34], [0, 50, 4, 54]],
            [0.6, 0.9],
            sky_prob=[0.9, 0.1],
            gt_boxes=[[30, 30, 34, 34]],
            pred_sky=[1, 0],
        )
        for name in ("a", "b")
    ]


def test_gate_threshold_maximises_map07_and_prefers_the_gentlest_on_a_tie() -> None:
    cfg = EvalConfig()
    threshold, scores = choose_gate_threshold(_hand_built_set(), cfg, grid=(0.0, 0.2, 0.3, 0.95))
    assert threshold == 0.2  # 0.2 and 0.3 both remove only the false alarms
    assert scores["0.2"] == scores["0.3"] == pytest.approx(1.0)
    assert scores["0"] < 1.0 and scores["0.95"] == 0.0  # 0.95 drops the targets too
    gated = prediction_metrics(gate_predictions(_hand_built_set(), threshold), cfg)
    assert gated["mAP07"] == pytest.approx(1.0) and gated["irstd_false_alarms"] == 0
    ungated = prediction_metrics(_hand_built_set(), cfg)
    assert ungated["irstd_false_alarms_off_sky"] == 2 and ungated["irstd_fa_off_sky_share"] == 1.0


def test_filtering_saved_predictions_equals_the_detectors_own_gate() -> None:
    """One inference pass + filtering gives exactly the detections of the model built with
    ``sky_gate_thr`` (the gate reads the same pixel of the same sky map after NMS)."""
    torch.manual_seed(0)
    model = build_model("fcos_seg_hr", backbone_width=8, tower_depth=1)
    with torch.no_grad():
        model.head.cls_pred.bias.fill_(0.0)  # class probability 0.5: plenty of detections
    cfg = load_config(PACKAGED_CONFIGS / "bafenet_hr.yaml", ["data.root=/unused", "eval.amp=false"])
    rng = np.random.default_rng(0)
    sky = np.zeros((48, 72), np.uint8)
    sky[:20] = 1
    frames = [Sample(rng.uniform(0, 255, (48, 72)), sky_mask=sky, image_id=f"f{i}") for i in range(2)]
    geometry = EvalGeometry.from_config(cfg)
    _, details = evaluate(model, frames, geometry, cfg.eval, torch.device("cpu"), False, True)
    saved = details["predictions"]
    probs = np.concatenate([p.model_sky_prob for p in saved])
    threshold = float(np.median(probs))
    assert len(probs) > 20 and (probs < threshold).any()
    model.sky_gate_thr = threshold
    _, gated_details = evaluate(model, frames, geometry, cfg.eval, torch.device("cpu"), False, True)
    for filtered, direct in zip(
        gate_predictions(saved, threshold), gated_details["predictions"], strict=True
    ):
        np.testing.assert_array_equal(filtered.boxes, direct.boxes)
        np.testing.assert_array_equal(filtered.scores, direct.scores)
        np.testing.assert_array_equal(filtered.pred_sky, direct.pred_sky)


def test_sweep_reports_each_threshold_and_the_detections_it_keeps() -> None:
    sweep = sweep_sky_gate(_hand_built_set(), EvalConfig(), grid=(0.0, 0.5, 0.95))
    assert list(sweep) == [0.0, 0.5, 0.95]
    assert [sweep[t]["num_pred"] for t in sweep] == [4, 2, 0]
    assert sweep[0.5]["mAP07"] == pytest.approx(1.0) and sweep[0.0]["mAP07"] < 1.0
    assert sweep[0.0]["irstd_fa_off_sky_share_at_best_f1"] == 1.0  # both false alarms on the ground
    assert best_threshold(sweep) == 0.5
    assert best_threshold({0.1: {"mAP07": 0.5}, 0.3: {"mAP07": 0.5}, 0.2: {"mAP07": 0.4}}) == 0.1
