"""evaluate(): each kept detection carries the model's own sky probability at its box centre."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bafenet.config import EvalConfig
from bafenet.data.sample import Sample
from bafenet.engine.evaluate import evaluate


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


def _halve(sample: Sample) -> Sample:
    return sample.replace(
        image=sample.image[::2, ::2],
        boxes=sample.boxes / 2,
        points=sample.points / 2,
        target_mask=sample.target_mask[::2, ::2],
        sky_mask=sample.sky_mask[::2, ::2],
    )


def test_model_sky_probability_is_read_at_the_box_centre_in_input_pixels() -> None:
    sample = Sample(np.zeros((40, 64)), sky_mask=np.ones((40, 64), np.uint8), image_id="a")
    # centres at original x = 10, 51, 63.9 -> input x = 5, 25.5, 31.95 -> pixels 5, 25, 31
    boxes = [[8, 8, 12, 12], [49, 8, 53, 12], [62.8, 8, 65, 12]]
    _, details = evaluate(RampSky(boxes), [sample], _halve, EvalConfig(), torch.device("cpu"), False, True)
    np.testing.assert_allclose(details["predictions"][0].model_sky_prob, [0.05, 0.25, 0.31], rtol=1e-6)
    _, details = evaluate(
        RampSky(boxes, with_sky=False), [sample], _halve, EvalConfig(), torch.device("cpu"), False, True
    )
    assert details["predictions"][0].model_sky_prob is None
