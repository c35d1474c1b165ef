"""Sky context, sky-conditioned scoring and the sky gate (all switches off by default)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bafenet.data.collate import collate_samples
from bafenet.data.pipeline import build_train_pipeline
from bafenet.data.sample import Sample
from bafenet.models.complexity import count_parameters
from bafenet.models.context import ContextBatch, resample_context, whole_image_context
from bafenet.models.detector import FCOSDetector
from bafenet.models.head import FCOSHead, HeadOutputs
from bafenet.models.zoo import build_model, fcos_hr

TINY = {"channels": 16, "backbone_width": 8}
SKY_MODELS = ["bafenet_hr", "fcos_seg_hr"]


def context_batch(height: int, width: int, boxes: list[list[float]], seed: int = 0):
    """Crops (B, 1, H, W) with targets carrying contexts of different sizes (odd sides)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(len(boxes), 1, height, width, generator=gen) * 255
    context_sizes = [(37, 49), (49, 30)]
    targets = []
    for i, image_boxes in enumerate(boxes):
        h_c, w_c = context_sizes[i % 2]
        sky = torch.zeros(h_c, w_c, dtype=torch.uint8)
        sky[: h_c // 2] = 1
        targets.append(
            {
                "boxes": torch.tensor(image_boxes, dtype=torch.float32).reshape(-1, 4),
                "sky_mask": torch.randint(0, 2, (height, width), generator=gen, dtype=torch.uint8),
                "context_image": torch.rand(1, h_c, w_c, generator=gen) * 255,
                "context_sky": sky,
                "crop_box": torch.tensor([5.0, 3.0, 5.0 + w_c / 3, 3.0 + h_c / 3]),
            }
        )
    return images, targets


OWN_NET = {"context_net": True, "context_width": 8}


@pytest.mark.parametrize("context_net", [False, True])
@pytest.mark.parametrize("name", SKY_MODELS)
def test_context_model_trains_and_infers_on_an_odd_frame(name, context_net):
    torch.manual_seed(0)
    switches = OWN_NET if context_net else {}
    model = build_model(name, sky_context=True, context_size=64, sky_scoring=True, **switches, **TINY)
    context_pred = model.context_net.pred if context_net else model.head.context_pred
    assert (model.head.context_pred is None) == context_net
    images, targets = context_batch(61, 67, [[[10.0, 12.0, 16.0, 18.0]], []])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(3):
        losses = model(images, targets)
        assert set(losses) == {"loss_cls", "loss_box", "loss_centerness", "loss_sky", "loss_sky_context"}
        assert all(torch.isfinite(v) for v in losses.values())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        if step == 0:
            missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
            assert missing == []
            parts = [context_pred, model.head.sky_scoring]
            parts += [model.head.sky_fuse] if name == "bafenet_hr" else []  # feeds the exchange
            for part in parts:
                assert any(p.grad.abs().sum() > 0 for p in part.parameters())
        optimizer.step()
    model.eval()
    frame = torch.rand(1, 1, 157, 203) * 255  # odd size: the model makes its own context
    with torch.no_grad():
        (result,) = model(frame)
        outputs = model.head_outputs(frame)
    assert result["sky_prob"].shape == (157, 203)
    assert outputs.context_sky_logits[0].shape == (1, 1, 13, 16)  # 49 x 64 context, stride 4
    assert len(outputs.context_sky_logits) == 4  # every context level supervised, the finest resampled
    # a padded batch: each image's context comes from its own un-padded part
    batch = torch.zeros(2, 1, 160, 224)
    batch[0, :, :157, :203] = frame[0]
    batch[1, :, :100, :70] = frame[0, :, :100, :70]
    with torch.no_grad():
        results = model(batch, image_sizes=[(157, 203), (100, 70)])
    assert [r["sky_prob"].shape for r in results] == [(157, 203), (100, 70)]


def test_context_net_leaves_the_detector_body_to_detection():
    """With its own context net (no exchange, no scoring) the detector is the plain fcos_hr:
    same weights from the same seed, same detection losses; the context sky loss reaches the
    context net only."""
    torch.manual_seed(0)
    plain = fcos_hr(**TINY).train()
    torch.manual_seed(0)
    model = build_model("fcos_seg_hr", sky_context=True, context_size=64, **OWN_NET, **TINY).train()
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("context_net.")}
    assert body.keys() == plain.state_dict().keys()
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in body.items())
    images, targets = context_batch(48, 48, [[[10.0, 12.0, 16.0, 18.0]]])
    losses, plain_losses = model(images, targets), plain(images, targets)
    for key in ("loss_cls", "loss_box", "loss_centerness"):
        torch.testing.assert_close(losses[key], plain_losses[key])
    losses["loss_sky_context"].backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("context_net."))
    assert all(p.grad is not None for p in model.context_net.parameters())
    with pytest.raises(ValueError, match="needs sky_context"):
        build_model("fcos_seg_hr", context_net=True, **TINY)


def test_training_pipeline_feeds_the_context_model():
    rng = np.random.default_rng(0)
    frames = []
    for height, width in [(75, 101), (90, 64)]:
        sky = np.zeros((height, width), np.uint8)
        sky[: height // 2] = 1
        image = rng.normal(60, 4, (height, width)).astype(np.float32)
        image[20:23, 30:33] += 80
        frames.append(
            Sample(image, np.array([[30.0, 20.0, 33.0, 23.0]]), points=np.array([[31.5, 21.5]]), sky_mask=sky)
        )
    pipeline = build_train_pipeline(mode="native", scale=2.0, crop_size=48, bagcp=None, context_size=64)
    images, targets = collate_samples([pipeline(f, np.random.default_rng(i)) for i, f in enumerate(frames)])
    torch.manual_seed(0)
    model = build_model("bafenet_hr", sky_context=True, context_size=64, **TINY).train()
    losses = model(images, targets)
    assert torch.isfinite(losses["loss_sky_context"]) and losses["loss_sky_context"] > 0


def test_context_model_needs_the_context_in_training():
    torch.manual_seed(0)
    model = build_model("fcos_seg_hr", sky_context=True, context_size=64, **TINY).train()
    images, targets = context_batch(32, 32, [[]])
    del targets[0]["crop_box"]
    with pytest.raises(ValueError, match="crop_box"):
        model(images, targets)


@pytest.mark.parametrize("name", SKY_MODELS)
def test_context_model_sky_map_is_the_context_map(name):
    """With sky_context the sky logit of every level is the context sky logit resampled onto
    it; no high-resolution sky predictor is built, and the high-resolution sky tower runs only
    to feed an exchange."""
    torch.manual_seed(0)
    model = build_model(name, sky_context=True, context_size=64, **TINY).eval()
    assert model.head.sky_pred is None
    assert (model.head.sky_fuse is not None) == (name == "bafenet_hr")
    frame = torch.rand(1, 1, 96, 128) * 255
    with torch.no_grad():
        outputs = model.head_outputs(frame)
        context = whole_image_context(frame, 64)
        for level, (logit, stride) in enumerate(zip(outputs.sky_logits, model.strides, strict=True)):
            expected = resample_context(
                outputs.context_sky_logits[0], context, tuple(logit.shape[-2:]), stride, model.strides[0]
            )
            torch.testing.assert_close(logit, expected, msg=f"level {level}")


@pytest.mark.parametrize("name", SKY_MODELS)
def test_switches_off_give_the_plain_model(name, batch_factory):
    torch.manual_seed(0)
    plain = build_model(name, **TINY)
    torch.manual_seed(0)
    off = build_model(name, sky_context=False, context_size=96, sky_scoring=False, sky_gate_thr=None, **TINY)
    assert plain.state_dict().keys() == off.state_dict().keys()
    assert all(
        torch.equal(a, b) for a, b in zip(plain.state_dict().values(), off.state_dict().values(), strict=True)
    )
    images, targets = batch_factory(45, 70, [[[8.0, 10.0, 30.0, 30.0]], []])
    for model in (plain, off):
        model.train()
    plain_losses, off_losses = plain(images, targets), off(images, targets)
    assert all(torch.equal(plain_losses[k], off_losses[k]) for k in plain_losses)
    for model in (plain, off):
        model.eval()
        model.score_thresh = 0.0  # keep many detections
    with torch.no_grad():
        raw_plain, raw_off = plain.head_outputs(images), off.head_outputs(images)
        det_plain, det_off = plain(images), off(images)
    assert raw_off.context_sky_logits is None
    for part_plain, part_off in zip(raw_plain, raw_off, strict=True):
        assert part_plain is None or all(torch.equal(a, b) for a, b in zip(part_plain, part_off, strict=True))
    for a, b in zip(det_plain, det_off, strict=True):
        assert a.keys() == b.keys() and len(a["boxes"]) > 0
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_switches_off_build_no_new_parameters():
    # parameter counts of the high-resolution models before the sky switches existed
    assert count_parameters(build_model("bafenet_hr"))["params"] == 2_938_375
    assert count_parameters(build_model("fcos_seg_hr"))["params"] == 2_909_067
    with pytest.raises(ValueError, match="sky branch"):
        fcos_hr(sky_context=True)


def test_context_resampling_puts_the_context_on_the_right_cells():
    # context features = their own cell coordinates: channel 0 = column u, channel 1 = row v
    context_stride = 4
    rows, cols = torch.meshgrid(torch.arange(20.0), torch.arange(30.0), indexing="ij")
    features = torch.stack([cols, rows])[None].expand(2, -1, -1, -1).contiguous()  # (2, 2, 20, 30)
    boxes = torch.tensor([[30.0, 20.0, 62.0, 44.0], [41.5, 9.0, 81.5, 49.0]])  # x1 y1 x2 y2, context px
    sizes = torch.tensor([[96.0, 128.0], [160.0, 160.0]])  # un-padded input (h, w) of each box
    context = ContextBatch(torch.zeros(2, 1, 80, 120), None, boxes, sizes)
    for stride in (4, 8, 16, 32):
        grid = (160 // stride, 160 // stride)  # the padded batch's grid
        out = resample_context(features, context, grid, stride, context_stride)  # (2, 2, h_l, w_l)
        for b in range(2):
            kx = (boxes[b, 2] - boxes[b, 0]) / sizes[b, 1]
            ky = (boxes[b, 3] - boxes[b, 1]) / sizes[b, 0]
            # cell (i, j) sits on input pixel (s i, s j): its centre in context pixels, then cells
            j = torch.arange(grid[1], dtype=torch.float32)
            i = torch.arange(grid[0], dtype=torch.float32)
            u = (boxes[b, 0] + kx * (stride * j + 0.5) - 0.5) / context_stride
            v = (boxes[b, 1] + ky * (stride * i + 0.5) - 0.5) / context_stride
            torch.testing.assert_close(out[b, 0], u[None].expand(grid[0], -1), atol=1e-4, rtol=0)
            torch.testing.assert_close(out[b, 1], v[:, None].expand(-1, grid[1]), atol=1e-4, rtol=0)


def test_context_horizon_lands_on_the_crop_cells_below_it():
    # a context sky map with its horizon at context row 10 (stride-1 "features" for clarity)
    sky = torch.zeros(1, 1, 40, 50)
    sky[:, :, :10] = 1.0
    # the input shows context rows 5..15 at 4 input px per context px: the horizon at input row 20
    context = ContextBatch(sky, None, torch.tensor([[20.0, 5.0, 30.0, 15.0]]), torch.tensor([[40.0, 40.0]]))
    out = resample_context(sky, context, (10, 10), 4, 1)[0, 0]  # input stride 4: cell i on input row 4 i
    # input pixel row 4 i (centre 4 i + 0.5) -> context y = 5 + (4 i + 0.5) / 4, i.e. context
    # pixel row 4.625 + i: sky up to i = 4, half-way between rows 9 and 10 at i = 5, then ground
    assert torch.equal(out[:5], torch.ones(5, 10)) and torch.equal(out[6:], torch.zeros(4, 10))
    torch.testing.assert_close(out[5], torch.full((10,), 0.375))


def test_whole_image_context_scales_the_long_side():
    images = torch.zeros(2, 1, 157, 203)
    images[1, :, :60, :100] = 200.0
    context = whole_image_context(images, 64, image_sizes=[(157, 203), (60, 100)])
    assert context.images.shape == (2, 1, 49, 64)  # 157 * 64 / 203 = 49.5 - 0.003
    torch.testing.assert_close(context.boxes, torch.tensor([[0.0, 0.0, 64.0, 49.0], [0.0, 0.0, 64.0, 38.0]]))
    # only the un-padded part is scaled: no zero padding leaks into the context
    torch.testing.assert_close(context.images[1, 0, :38], torch.full((38, 64), 200.0))
    assert torch.equal(context.images[1, 0, 38:], torch.zeros(11, 64))  # padding


def _hand_made_detector(**options) -> FCOSDetector:
    head = FCOSHead(1, channels=32, with_sky=True)
    return FCOSDetector(nn.Identity(), nn.Identity(), head, [8], [(-1.0, 64.0)], **options).eval()


def test_sky_gate_drops_exactly_the_detections_off_the_sky():
    # 4 x 4 locations at stride 8, each with a 4 x 4 box around its point; sky in the top half
    cls = torch.full((1, 1, 4, 4), 3.0) - torch.arange(16.0).reshape(1, 1, 4, 4) / 10
    dist = torch.full((1, 4, 4, 4), 2.0)
    ctr = torch.zeros(1, 1, 4, 4)
    sky = torch.full((1, 1, 4, 4), -8.0)
    sky[:, :, :2] = 8.0  # cells of rows 0, 1 (on input rows 0, 8) are sky: probability 0.5 at row 12
    outputs = HeadOutputs([cls], [dist], [ctr], [sky])
    (plain,) = _hand_made_detector().postprocess(outputs, (32, 32))
    (gated,) = _hand_made_detector(sky_gate_thr=0.6).postprocess(outputs, (32, 32))
    assert len(plain["boxes"]) == 16
    centres = (plain["boxes"][:, :2] + plain["boxes"][:, 2:]) / 2
    on_sky = plain["sky_prob"][centres[:, 1].long(), centres[:, 0].long()] >= 0.6
    assert on_sky.sum() == 4 and (centres[on_sky, 1] == 4).all()  # the first row of boxes only
    assert torch.equal(gated["boxes"], plain["boxes"][on_sky])
    assert torch.equal(gated["scores"], plain["scores"][on_sky])
    with pytest.raises(ValueError, match="sky branch"):
        FCOSDetector(nn.Identity(), nn.Identity(), FCOSHead(1, 32), [8], [(-1.0, 64.0)], sky_gate_thr=0.5)


@pytest.mark.parametrize("name", SKY_MODELS)
def test_sky_scoring_at_zero_is_the_plain_detector(name, tiny_batch):
    torch.manual_seed(0)
    plain = build_model(name, **TINY).eval()
    scoring = build_model(name, sky_scoring=True, **TINY).eval()
    missing, unexpected = scoring.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["head.sky_scoring.bias", "head.sky_scoring.weight"] and not unexpected
    images, _ = tiny_batch
    with torch.no_grad():
        a, b = plain.head_outputs(images), scoring.head_outputs(images)
        assert all(torch.equal(x, y) for x, y in zip(a.cls_logits, b.cls_logits, strict=True))
        assert all(
            torch.equal(x["scores"], y["scores"]) for x, y in zip(plain(images), scoring(images), strict=True)
        )
        scoring.head.sky_scoring.weight.fill_(0.5)
        scoring.head.sky_scoring.bias.fill_(-1.0)
        c = scoring.head_outputs(images)
    for plain_cls, sky, shifted in zip(a.cls_logits, a.sky_logits, c.cls_logits, strict=True):
        torch.testing.assert_close(shifted, plain_cls + 0.5 * sky - 1.0)


def test_sky_options_only_on_sky_models():
    with pytest.raises(ValueError, match="no option sky_context"):
        build_model("fcos_hr", sky_context=True)
    with pytest.raises(ValueError, match="context_size must be >= 32"):
        build_model("fcos_seg_hr", sky_context=True, context_size=16, **TINY)
