from __future__ import annotations

import pytest
import torch
from torch import nn

from bafenet.models.detector import FCOSDetector, sky_probability
from bafenet.models.head import FCOSHead, HeadOutputs
from bafenet.models.zoo import bafenet_r18


@pytest.fixture(scope="module")
def model() -> FCOSDetector:
    torch.manual_seed(0)
    return bafenet_r18()


def test_shapes_for_sizes_not_divisible_by_32(model, tiny_batch):
    images, _ = tiny_batch  # 70 x 90
    model.eval()
    outputs = model.head_outputs(images)
    assert [tuple(x.shape) for x in outputs.cls_logits] == [(2, 1, 9, 12), (2, 1, 5, 6), (2, 1, 3, 3)]
    assert [tuple(x.shape) for x in outputs.box_distances] == [(2, 4, 9, 12), (2, 4, 5, 6), (2, 4, 3, 3)]
    assert [tuple(x.shape) for x in outputs.sky_logits] == [(2, 1, 9, 12), (2, 1, 5, 6), (2, 1, 3, 3)]
    assert all((x > 0).all() for x in outputs.box_distances)
    with torch.no_grad():
        results = model(images, image_sizes=[(70, 90), (61, 77)])
    assert [tuple(r["sky_prob"].shape) for r in results] == [(70, 90), (61, 77)]
    for r in results:
        assert r["boxes"].shape[1] == 4 and r["scores"].shape == r["labels"].shape == r["boxes"].shape[:1]
        assert ((r["sky_prob"] >= 0) & (r["sky_prob"] <= 1)).all()


def test_training_losses_finite_for_empty_and_unassignable_images(model, batch_factory):
    # image 0: only a 3-px box with no stride-8 location strictly inside; image 1: no box at all
    images, targets = batch_factory(64, 64, [[[60.0, 28.0, 63.0, 31.0]], []])
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_cls", "loss_box", "loss_centerness", "loss_sky"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box"] == 0 and losses["loss_centerness"] == 0
    sum(losses.values()).backward()
    model.zero_grad(set_to_none=True)


def test_every_trainable_parameter_gets_a_gradient(model, tiny_batch):
    images, targets = tiny_batch
    model.train()
    model.zero_grad(set_to_none=True)
    sum(model(images, targets).values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    # frozen by design: only the un-learned channel selector (backbone BN is in buffers)
    assert frozen and all(n.startswith("head.cross_task.exchange.selector.") for n in frozen)
    model.zero_grad(set_to_none=True)


def test_eval_is_deterministic(model, tiny_batch):
    images, _ = tiny_batch
    model.eval()
    with torch.no_grad():
        model.head.cls_pred.bias.fill_(2.0)  # enough candidates to exercise post-processing
        first, second = model(images), model(images)
        model.head.cls_pred.bias.fill_(-4.59512)
    for a, b in zip(first, second, strict=True):
        assert len(a["boxes"]) > 0
        for key in a:
            assert torch.equal(a[key], b[key])


def test_postprocess_caps_detections_and_keeps_boxes_inside(model):
    images = torch.rand(1, 1, 96, 128) * 255
    model.eval()
    with torch.no_grad():
        model.head.cls_pred.bias.fill_(5.0)
        (result,) = model(images, image_sizes=[(90, 120)], original_sizes=[(45, 240)])
        model.head.cls_pred.bias.fill_(-4.59512)
    boxes = result["boxes"]
    assert 0 < len(boxes) <= 100
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= 240).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= 45).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert torch.all(result["scores"][:-1] >= result["scores"][1:])
    assert result["labels"].dtype == torch.int64 and (result["labels"] == 0).all()


def _one_level_detector() -> FCOSDetector:
    head = FCOSHead(1, channels=32)
    return FCOSDetector(nn.Identity(), nn.Identity(), head, [8], [(-1.0, 64.0)]).eval()


def _logit(p: float) -> float:
    return torch.logit(torch.tensor(p)).item()


def test_postprocess_on_hand_made_outputs():
    # 2 x 2 locations at (4, 4), (12, 4), (4, 12), (12, 12)
    cls = torch.tensor([_logit(0.9), _logit(0.04), _logit(0.8), _logit(0.7)]).reshape(1, 1, 2, 2)
    ctr = torch.tensor([0.0, 0.0, 30.0, 0.0]).reshape(1, 1, 2, 2)
    dist = (
        torch.tensor(
            [
                [5.0, 5.0, 8.0, 8.0],  # -> (-1, -1, 12, 12), clipped to (0, 0, 12, 10)
                [1.0, 1.0, 1.0, 1.0],  # below the score threshold
                [1.0, 0.0, 1.0, 0.0],  # zero height: dropped although its score is the highest
                [12.0, 12.0, 1.0, 1.0],  # (0, 0, 13, 13): IoU > 0.5 with the first, lower score: suppressed
            ]
        )
        .t()
        .reshape(1, 4, 2, 2)
    )
    outputs = HeadOutputs([cls], [dist], [ctr], None)
    detector = _one_level_detector()
    (result,) = detector.postprocess(outputs, (16, 16), image_sizes=[(10, 16)], original_sizes=[(20, 32)])
    assert set(result) == {"boxes", "scores", "labels"}
    torch.testing.assert_close(result["boxes"], torch.tensor([[0.0, 0.0, 24.0, 20.0]]))
    torch.testing.assert_close(result["scores"], torch.tensor([0.9 * 0.5]))  # product, no square root
    (plain,) = detector.postprocess(outputs, (16, 16))
    torch.testing.assert_close(plain["boxes"], torch.tensor([[0.0, 0.0, 12.0, 12.0]]))


def test_pre_nms_top_k_per_level():
    detector = _one_level_detector()
    outputs = HeadOutputs(
        [torch.randn(1, 1, 40, 40) + 3], [torch.rand(1, 4, 40, 40) + 1], [torch.zeros(1, 1, 40, 40)], None
    )
    points = detector.location_grid(outputs).points.split([1600])
    boxes, scores, _ = detector._detect_one(outputs, points, 0, 320, 320)
    assert len(boxes) == 1000
    probs = outputs.cls_logits[0].sigmoid().flatten()
    torch.testing.assert_close(scores, probs.topk(1000).values * 0.5)


def test_sky_probability_places_cells_on_their_target_pixels():
    logits = torch.tensor([[[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]]])  # (1, 1, 2, 3), stride 4
    prob = sky_probability(logits, 4, (7, 11))
    assert prob.shape == (1, 7, 11)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(prob[0, 4 * i, 4 * j], logits[0, 0, i, j].sigmoid())
    torch.testing.assert_close(prob[0, 6, 10], logits[0, 0, 1, 2].sigmoid())  # replicated border
    torch.testing.assert_close(prob[0, 0, 2], torch.tensor(0.5).sigmoid())  # bilinear between cells


def test_input_contract_errors(model):
    model.eval()  # the module's shared model: another test may have left it training
    with pytest.raises(ValueError, match="B, 1, H, W"):
        model(torch.zeros(1, 3, 64, 64))
    model.train()
    with pytest.raises(ValueError, match="targets"):
        model(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="sky_mask"):
        model(torch.zeros(1, 1, 64, 64), [{"boxes": torch.zeros(0, 4)}])
