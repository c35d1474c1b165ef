"""evaluate(): false alarms located on the original frame's sky, fixed-Pd and stated-threshold keys,
and the model's own sky probability at each kept detection's box centre."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bafenet.config import Config, EvalConfig
from bafenet.data.sample import Sample
from bafenet.engine.evaluate import evaluate, metrics_by_frame_size
from bafenet.engine.inference import EvalGeometry


def _box(cx: float, cy: float) -> list[float]:
    return [cx - 1.5, cy - 1.5, cx + 1.5, cy + 1.5]


class FixedDetector(nn.Module):
    """Returns the same detections (original coordinates) for every image, and a sky map."""

    def __init__(self, boxes: list[list[float]], scores: list[float], sky_rows: int) -> None:
        super().__init__()
        self.boxes = torch.tensor(boxes)
        self.scores = torch.tensor(scores)
        self.sky_rows = sky_rows  # the model calls the first rows of its input sky

    def forward(
        self,
        images: torch.Tensor,
        original_sizes: list[tuple[int, int]],
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        outputs = []
        for height, width in image_sizes:
            sky = torch.zeros(height, width)
            sky[: self.sky_rows] = 1.0
            outputs.append({"boxes": self.boxes, "scores": self.scores, "sky_prob": sky})
        return outputs


class Halve(EvalGeometry):
    """Whole frames halved (so input and original coordinates differ)."""

    def transform(self, sample: Sample) -> Sample:
        return sample.replace(
            image=sample.image[::2, ::2],
            boxes=sample.boxes / 2,
            points=sample.points / 2,
            target_mask=sample.target_mask[::2, ::2],
            sky_mask=sample.sky_mask[::2, ::2],
        )


class Unchanged(EvalGeometry):
    """Whole frames as they are."""

    def transform(self, sample: Sample) -> Sample:
        return sample


HALVE = Halve.from_config(Config())
UNCHANGED = Unchanged.from_config(Config())


def test_false_alarms_are_located_on_the_original_frame() -> None:
    # 40 x 64 frame: rows < 20 sky, rows 20..29 not sky, rows >= 30 unknown
    sky = np.zeros((40, 64), np.uint8)
    sky[:20] = 1
    sky[30:] = 255
    sample = Sample(np.zeros((40, 64)), boxes=[_box(10, 5), _box(30, 5)], sky_mask=sky, image_id="a")
    # a hit, alarms at (50, 10) sky, (50, 25) not sky and (50, 35) unknown (original frame).
    # Looked up in the halved input's mask instead, they would read not sky, unknown, unknown.
    model = FixedDetector(
        [_box(10, 5), _box(50, 10), _box(50, 25), _box(50, 35)], [0.9, 0.8, 0.7, 0.6], sky_rows=10
    )
    cfg = EvalConfig(pd_score_thr=0.3)
    metrics, details = evaluate(
        model,
        [sample],
        HALVE,
        cfg,
        torch.device("cpu"),
        progress=False,
        keep_predictions=True,
        stated_score_thr=0.75,
    )
    assert metrics["irstd_pd"] == 0.5 and metrics["irstd_false_alarms"] == 3
    assert metrics["irstd_false_alarms_in_sky"] == 1
    assert metrics["irstd_false_alarms_off_sky"] == 1
    assert metrics["irstd_false_alarms_sky_unknown"] == 1
    assert metrics["irstd_fa_off_sky_share"] == 0.5
    # Pd never exceeds 0.5: no false-alarm figure at the fixed Pd levels
    for level in ("0.80", "0.85", "0.90"):
        assert f"irstd_fa_per_mpix_at_pd_{level}" in metrics
        assert metrics[f"irstd_fa_per_mpix_at_pd_{level}"] is None
    # the stated threshold 0.75 keeps the hit and the sky alarm only
    assert metrics["stated_score_thr"] == 0.75
    assert metrics["irstd_pd_at_stated"] == 0.5
    assert metrics["irstd_false_alarms_at_stated"] == 1
    assert metrics["irstd_fa_per_mpix_at_stated"] == pytest.approx(1 / (40 * 64 / 1e6))
    assert (
        metrics["irstd_false_alarms_in_sky_at_stated"],
        metrics["irstd_false_alarms_off_sky_at_stated"],
    ) == (1, 0)
    assert metrics["irstd_fa_off_sky_share_at_stated"] == 0.0
    # the model's sky map (first 10 input rows = 20 original rows) is exactly the labelled sky
    assert metrics["sky_iou"] == 1.0 and metrics["sky_pixel_accuracy"] == 1.0
    # the same split per frame size, from the kept predictions
    small = metrics_by_frame_size(details["predictions"], cfg, 0.75)["small"]
    assert small["irstd_false_alarms_off_sky"] == 1 and small["irstd_false_alarms_at_stated"] == 1


def test_without_a_stated_threshold_or_sky_annotation() -> None:
    sample = Sample(np.zeros((32, 32)), boxes=[_box(10, 5)], image_id="a")  # sky_mask all unknown
    model = FixedDetector([_box(10, 5), _box(20, 20)], [0.9, 0.8], sky_rows=4)
    metrics, _ = evaluate(model, [sample], UNCHANGED, EvalConfig(), torch.device("cpu"), progress=False)
    assert not any(key.endswith("_at_stated") for key in metrics) and "stated_score_thr" not in metrics
    assert metrics["irstd_false_alarms_sky_unknown"] == 1 and metrics["irstd_fa_off_sky_share"] is None
    assert "sky_iou" not in metrics  # a sky map but no sky annotation: nothing to score
    assert metrics["irstd_false_alarms_at_best_f1"] == 0  # F1-best keeps only the hit


class RampSky(nn.Module):
    """Fixed detections (original coordinates); sky probability = input column / 100."""

    def __init__(self, boxes: list[list[float]], with_sky: bool = True) -> None:
        super().__init__()
        self.boxes = torch.tensor(boxes)
        self.with_sky = with_sky

    def forward(self, images, original_sizes, image_sizes):
        outputs = []
        for height, width in image_sizes:
            out = {"boxes": self.boxes, "scores": torch.full((len(self.boxes),), 0.5)}
            if self.with_sky:
                out["sky_prob"] = (torch.arange(width, dtype=torch.float32) / 100).expand(height, width)
            outputs.append(out)
        return outputs


def test_model_sky_probability_is_read_at_the_box_centre_in_input_pixels() -> None:
    sample = Sample(np.zeros((40, 64)), sky_mask=np.ones((40, 64), np.uint8), image_id="a")
    # centres at original x = 10, 51, 63.9 -> input x = 5, 25.5, 31.95 -> pixels 5, 25, 31
    boxes = [[8, 8, 12, 12], [49, 8, 53, 12], [62.8, 8, 65, 12]]
    _, details = evaluate(RampSky(boxes), [sample], HALVE, EvalConfig(), torch.device("cpu"), False, True)
    np.testing.assert_allclose(details["predictions"][0].model_sky_prob, [0.05, 0.25, 0.31], rtol=1e-6)
    _, details = evaluate(
        RampSky(boxes, with_sky=False), [sample], HALVE, EvalConfig(), torch.device("cpu"), False, True
    )
    assert details["predictions"][0].model_sky_prob is None
