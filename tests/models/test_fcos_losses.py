from __future__ import annotations

import math

import torch

from bafenet.models.losses import aligned_iou, centerness_targets, detection_losses, sky_loss, sky_targets

LOG2 = math.log(2.0)


def _losses(num_points: int, positives: dict[int, list[float]], pred: torch.Tensor | None = None, cls=None):
    labels = torch.ones(num_points, dtype=torch.int64)  # one class: 1 = background
    targets = torch.zeros(num_points, 4)
    for index, ltrb in positives.items():
        labels[index] = 0
        targets[index] = torch.tensor(ltrb)
    pred = targets.clone() if pred is None else pred
    cls = torch.zeros(num_points, 1) if cls is None else cls
    return detection_losses(cls, pred.clamp(min=1e-3), torch.zeros(num_points), labels, targets)


def test_focal_loss_normalised_by_positives():
    positive_term = 0.25 * 0.5**2 * LOG2  # alpha (1 - p)^gamma (-log p) at p = 0.5
    negative_term = 0.75 * 0.5**2 * LOG2
    losses = _losses(10, {2: [1, 1, 1, 1], 7: [2, 2, 2, 2]})
    torch.testing.assert_close(losses["loss_cls"], torch.tensor((2 * positive_term + 8 * negative_term) / 2))
    none = _losses(10, {})  # no positive: divided by 1
    torch.testing.assert_close(none["loss_cls"], torch.tensor(10 * negative_term))


def test_box_loss_is_centerness_weighted_log_iou():
    assert _losses(4, {0: [1, 2, 3, 4]})["loss_box"].abs() < 1e-6  # perfect prediction
    torch.testing.assert_close(
        centerness_targets(torch.tensor([[1.0, 2.0, 3.0, 4.0]])), torch.tensor([(1 / 6) ** 0.5])
    )
    torch.testing.assert_close(
        aligned_iou(torch.tensor([[1.0, 1.0, 1.0, 1.0]]), torch.tensor([[2.0, 2.0, 2.0, 2.0]])),
        torch.tensor([0.25]),
    )
    pred = torch.zeros(4, 4)
    pred[0] = torch.tensor([1.0, 1.0, 1.0, 1.0])  # IoU 1/4 with (2, 2, 2, 2), centerness 1
    pred[1] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # perfect, centerness sqrt(1/6)
    losses = _losses(4, {0: [2, 2, 2, 2], 1: [1, 2, 3, 4]}, pred=pred)
    weight = (1 / 6) ** 0.5
    torch.testing.assert_close(losses["loss_box"], torch.tensor(-math.log(0.25) * 1.0 / (1.0 + weight)))
    # centerness BCE at logit 0 against targets 1 and sqrt(1/6): log 2 each, mean over positives
    torch.testing.assert_close(losses["loss_centerness"], torch.tensor(LOG2))


def test_no_positive_gives_finite_zero_losses_with_a_graph():
    cls = torch.zeros(6, 1, requires_grad=True)
    pred = torch.ones(6, 4, requires_grad=True)
    losses = detection_losses(cls, pred, torch.zeros(6), torch.ones(6, dtype=torch.int64), torch.zeros(6, 4))
    assert losses["loss_box"] == 0 and losses["loss_centerness"] == 0
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert torch.isfinite(cls.grad).all()


def test_sky_targets_sample_the_top_left_pixel_of_each_cell():
    mask = torch.arange(16, dtype=torch.uint8).reshape(1, 4, 4)
    (level,) = sky_targets(mask, [(2, 2)])
    assert level[0].tolist() == [[0, 2], [8, 10]]


def test_sky_loss_ignores_255_but_averages_over_all_locations():
    masks = torch.tensor([[[1, 0], [255, 255]]], dtype=torch.uint8)  # (1, 2, 2)
    logits = [torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)]  # the 1 x 1 level samples pixel (0, 0) = sky
    loss = sky_loss(logits, masks)
    torch.testing.assert_close(loss, torch.tensor(3 * LOG2 / 5))  # 3 labelled of 5 locations
    confident = [torch.tensor([[[[20.0, -20.0], [5.0, -5.0]]]]), torch.full((1, 1, 1, 1), 20.0)]
    assert sky_loss(confident, masks) < 1e-6  # ignored pixels do not count, whatever their logits
