from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bafenet.models.exchange import (
    ChannelExchange,
    CrossTaskExchange,
    LSKAttention,
    dilated_depthwise_conv,
    gather_channels,
    replace_channels,
    select_channels,
)


def _mlp_per_pixel(ex: ChannelExchange, values: torch.Tensor) -> torch.Tensor:
    """(k, H, W) -> (k, H, W): the shared MLP as nn.Linear over each pixel's channel vector."""
    pixels = values.permute(1, 2, 0)  # (H, W, k)
    return ex.fc2(F.relu(ex.fc1(pixels))).permute(2, 0, 1)


def naive_exchange(ex: ChannelExchange, seg: torch.Tensor, cls: torch.Tensor):
    """Per-sample reference written from the description: loop, sort, copy slot by slot."""
    seg_out, cls_out = seg.clone(), cls.clone()
    for b in range(seg.shape[0]):
        score_seg = (seg[b : b + 1] * ex.selector.conv(_lsk_mix(ex.selector, seg[b : b + 1]))).mean(
            dim=(2, 3)
        )[0]
        score_cls = (cls[b : b + 1] * ex.selector.conv(_lsk_mix(ex.selector, cls[b : b + 1]))).mean(
            dim=(2, 3)
        )[0]
        chosen_seg = sorted(torch.topk(score_seg, ex.k).indices.tolist())
        chosen_cls = sorted(torch.topk(score_cls, ex.k).indices.tolist())
        to_seg = _mlp_per_pixel(ex, cls[b, chosen_cls])
        to_cls = _mlp_per_pixel(ex, seg[b, chosen_seg])
        if ex.selector_mode == "learned":
            gate_seg = torch.sigmoid(score_seg[chosen_seg])[:, None, None]
            gate_cls = torch.sigmoid(score_cls[chosen_cls])[:, None, None]
            to_seg = gate_seg * to_seg + (1 - gate_seg) * seg[b, chosen_seg]
            to_cls = gate_cls * to_cls + (1 - gate_cls) * cls[b, chosen_cls]
        for slot, channel in enumerate(chosen_seg):
            seg_out[b, channel] = to_seg[slot]
        for slot, channel in enumerate(chosen_cls):
            cls_out[b, channel] = to_cls[slot]
    return seg_out, cls_out


def _lsk_mix(lsk: LSKAttention, x: torch.Tensor) -> torch.Tensor:
    """LSK before its last 1x1 conv, with the plain dilated conv (independent of the fast path)."""
    a = lsk.conv0(x)
    b = F.conv2d(a, lsk.conv_spatial.weight, lsk.conv_spatial.bias, padding=9, dilation=3, groups=x.shape[1])
    a, b = lsk.conv1(a), lsk.conv2(b)
    both = torch.cat([a, b], dim=1)
    weights = torch.sigmoid(
        lsk.conv_squeeze(torch.cat([both.mean(1, keepdim=True), both.amax(1, keepdim=True)], 1))
    )
    return a * weights[:, :1] + b * weights[:, 1:]


def _exchange(channels: int, ratio: float, selector: str) -> ChannelExchange:
    ex = ChannelExchange(channels, ratio, hidden=8, selector=selector)
    for conv in ex.selector.modules():  # larger weights than the N(0, 0.01) head init: well-separated scores
        if isinstance(conv, nn.Conv2d):
            nn.init.normal_(conv.weight, std=0.3)
    return ex


@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("ratio", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("selector", ["fixed", "learned"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_vectorised_exchange_matches_naive_loop(batch, ratio, selector, layout):
    torch.manual_seed(batch * 10 + int(ratio * 4))
    ex = _exchange(16, ratio, selector)
    seg, cls = torch.randn(batch, 16, 7, 9), torch.randn(batch, 16, 7, 9)
    got_seg, got_cls = ex(seg.contiguous(memory_format=layout), cls.contiguous(memory_format=layout))
    assert got_seg.is_contiguous(memory_format=layout) and got_cls.is_contiguous(memory_format=layout)
    want_seg, want_cls = naive_exchange(ex, seg, cls)
    torch.testing.assert_close(got_seg, want_seg, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_cls, want_cls, rtol=1e-5, atol=1e-5)
    # exactly k channels of each sample changed when the MLP output differs from the input
    if selector == "fixed":
        changed = (got_seg != seg).flatten(2).any(dim=2).sum(dim=1)
        assert changed.tolist() == [ex.k] * batch


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gather_and_replace_channels(layout):
    x = torch.arange(2 * 5 * 3 * 4, dtype=torch.float32).reshape(2, 5, 3, 4).contiguous(memory_format=layout)
    index = torch.tensor([[0, 3], [1, 4]])
    picked = gather_channels(x, index)
    assert torch.equal(picked, torch.stack([x[0, [0, 3]], x[1, [1, 4]]]))
    values = -torch.ones(2, 2, 3, 4)
    out = replace_channels(x, index, values)
    expected = x.clone()
    expected[0, [0, 3]] = -1
    expected[1, [1, 4]] = -1
    assert torch.equal(out, expected) and out.is_contiguous(memory_format=layout)
    assert torch.equal(x, torch.arange(120, dtype=torch.float32).reshape(2, 5, 3, 4))  # input untouched


def test_selection_is_sorted_and_breaks_ties_by_lower_index():
    scores = torch.tensor([[0.0, 1.0, 0.0, 0.0, 2.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    assert select_channels(scores, 3).tolist() == [[0, 1, 4], [0, 1, 2]]
    random = torch.randn(4, 32)
    assert torch.equal(select_channels(random, 10), random.topk(10, dim=1).indices.sort(dim=1).values)


def test_ratio_zero_is_identity_and_builds_nothing():
    ex = ChannelExchange(16, 0.0)
    seg, cls = torch.randn(2, 16, 5, 5), torch.randn(2, 16, 5, 5)
    out_seg, out_cls = ex(seg, cls)
    assert torch.equal(out_seg, seg) and torch.equal(out_cls, cls)
    assert sum(p.numel() for p in ex.parameters()) == 0


def test_selector_gets_no_gradient_unless_learned():
    seg = torch.randn(2, 16, 6, 6, requires_grad=True)
    cls = torch.randn(2, 16, 6, 6, requires_grad=True)
    fixed = _exchange(16, 0.5, "fixed")
    assert not any(p.requires_grad for p in fixed.selector.parameters())
    out = fixed(seg, cls)
    (out[0].sum() + out[1].sum()).backward()
    assert fixed.fc1.weight.grad is not None and seg.grad is not None
    assert all(p.grad is None for p in fixed.selector.parameters())

    learned = _exchange(16, 0.5, "learned")
    out = learned(seg, cls)
    (out[0].square().sum() + out[1].square().sum()).backward()
    grads = [p.grad for p in learned.selector.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_lsk_returns_its_response_or_the_residual_product():
    torch.manual_seed(0)
    plain, residual = LSKAttention(8), LSKAttention(8, residual=True)
    residual.load_state_dict(plain.state_dict())
    x = torch.randn(2, 8, 11, 13)
    response = plain(x)
    assert response.shape == x.shape
    torch.testing.assert_close(residual(x), x * response)
    torch.testing.assert_close(response, plain.conv(_lsk_mix(plain, x)))


@pytest.mark.parametrize("size", [(13, 17), (5, 6), (1, 1), (64, 64)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_dilated_depthwise_conv_equals_the_conv(size, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 7, padding=9, dilation=3, groups=8)
    x = torch.randn(2, 8, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    fast = dilated_depthwise_conv(x, conv)
    torch.testing.assert_close(fast, conv(x), rtol=1e-5, atol=1e-5)
    assert fast.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    grad_fast = torch.autograd.grad(
        dilated_depthwise_conv(x.requires_grad_(), conv).square().sum(), conv.weight
    )[0]
    grad_ref = torch.autograd.grad(conv(x).square().sum(), conv.weight)[0]
    torch.testing.assert_close(grad_fast, grad_ref, rtol=1e-4, atol=1e-4)


def test_cross_task_switches():
    seg, cls = torch.randn(2, 32, 6, 7), torch.randn(2, 32, 6, 7)
    full = CrossTaskExchange(32, refine_hidden=16, mlp_hidden=8)
    assert full.lsk is not None and full.exchange is not None
    assert [t.shape for t in full(seg, cls)] == [seg.shape, cls.shape]
    bare = CrossTaskExchange(32, lsk=False, exchange=False, refine_hidden=16)
    assert bare.lsk is None and bare.exchange is None
    bare.eval()
    out_seg, out_cls = bare(seg, cls)
    torch.testing.assert_close(out_seg, bare.refine_seg(seg))
    torch.testing.assert_close(out_cls, bare.refine_cls(cls))
    with pytest.raises(ValueError, match="ratio"):
        CrossTaskExchange(32, ratio=1.5)
    with pytest.raises(ValueError, match="selector"):
        CrossTaskExchange(32, selector="soft")
