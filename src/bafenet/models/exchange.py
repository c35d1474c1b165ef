"""BAFE-Net's cross-task modules between the sky-segmentation and classification features.

Per pyramid level, in the official order (reference §1.6):

1. :class:`LSKAttention`, one set of weights applied to both tasks. Faithful form: the
   task feature is *replaced* by the attention response (``residual=False``); the original
   large-selective-kernel design multiplies the input by it (``residual=True``, a switch).
2. Per-task refinement (:func:`refinement_block`): 3x3 conv 256->128 + BN + ReLU,
   3x3 conv 128->256 + BN + ReLU (ordinary BatchNorm, shared over the levels).
3. :class:`ChannelExchange`, the dynamic channel hard-exchange: per sample and per task a
   score for every channel, the top ``k = C * ratio`` channels (ascending channel order),
   one MLP ``k -> 64 -> k`` shared by both directions, and each task's selected slots
   overwritten by the MLP of the *other* task's selected channels.

The exchange is vectorised: channels are gathered and scattered with (B, k) index tensors
(:func:`gather_channels`, :func:`replace_channels`), one output buffer per task, no loop
over the batch. The two tasks go through the shared
LSK and the shared MLP as one doubled batch (same result, one call).

Selector modes:

* ``"fixed"`` (faithful default): the official model uses only the *indices* of the top-k
  scores, so its selector never receives a gradient and keeps its random initialisation.
  Here its parameters are frozen explicitly (``requires_grad=False``) and scored without
  autograd: same behaviour, no unused trainable parameters (DDP-safe).
* ``"learned"`` (improvement): each exchanged slot becomes a blend
  ``g * exchanged + (1 - g) * original`` with ``g`` the sigmoid score of the receiving
  channel, so the selector is trained through the gates.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

SelectorMode = Literal["fixed", "learned"]


def dilated_depthwise_conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv(x)`` for a stride-1, "same"-padded, dilated depthwise conv, computed faster on CPU.

    oneDNN's dilated depthwise kernel is several times slower than its plain one. A dilation-d
    convolution only combines pixels of the same phase ``(y mod d, x mod d)``, so the input is
    split into its d x d phase images (stacked along the batch), convolved with the *undilated*
    kernel (padding / d), and interleaved back: the same taps and weights, only another memory
    order. Off CPU, during ONNX export, or when the conv does not have that form, ``conv(x)``
    is used as is.
    """
    d = conv.dilation[0]
    pad = conv.padding[0]
    channels = x.shape[1]
    usable = (
        x.device.type == "cpu"
        and not torch.onnx.is_in_onnx_export()  # export the plain conv
        and d > 1
        and conv.dilation == (d, d)
        and conv.stride == (1, 1)
        and conv.groups == channels == conv.out_channels
        and conv.padding == (pad, pad)
        and conv.kernel_size[0] == conv.kernel_size[1]
        and 2 * pad == d * (conv.kernel_size[0] - 1)
        and pad % d == 0
    )
    if not usable:
        return conv(x)
    batch, _, height, width = x.shape
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    extra_h, extra_w = (-height) % d, (-width) % d  # zeros, as the conv's own padding
    if extra_h or extra_w:
        x = F.pad(x, (0, extra_w, 0, extra_h))
    rows, cols = x.shape[-2] // d, x.shape[-1] // d
    # (B, C, rows*d, cols*d) -> channels-last (d*d*B, C, rows, cols); phase (i, j) = pixels [i::d, j::d]
    phases = (
        x.permute(0, 2, 3, 1)
        .reshape(batch, rows, d, cols, d, channels)
        .permute(2, 4, 0, 1, 3, 5)
        .reshape(d * d * batch, rows, cols, channels)
        .permute(0, 3, 1, 2)
    )
    out = F.conv2d(
        phases, conv.weight, conv.bias, padding=pad // d, groups=channels
    )  # (d*d*B, C, rows, cols)
    out = (
        out.permute(0, 2, 3, 1)
        .reshape(d, d, batch, rows, cols, channels)
        .permute(2, 3, 0, 4, 1, 5)
        .reshape(batch, rows * d, cols * d, channels)
    )  # (B, H', W', C)
    if extra_h or extra_w:
        out = out[:, :height, :width].contiguous()
    out = out.permute(0, 3, 1, 2)  # (B, C, H, W) in channels-last memory
    return out if channels_last else out.contiguous()


class LSKAttention(nn.Module):
    """Large-selective-kernel spatial attention (``LSKModule`` of the official head).

    ``a = dw5x5(f)``, ``b = dw7x7_dilation3(a)``, both squeezed to C/2 by 1x1 convs; the
    channel mean and max of ``[a', b']`` give two spatial weights (7x7 conv + sigmoid);
    ``out = 1x1conv(a' * w0 + b' * w1)``. Returns ``out`` (faithful) or ``f * out``.
    """

    def __init__(self, channels: int, residual: bool = False) -> None:
        super().__init__()
        half = channels // 2
        self.residual = residual
        self.conv0 = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.conv_spatial = nn.Conv2d(channels, channels, 7, padding=9, dilation=3, groups=channels)
        self.conv1 = nn.Conv2d(channels, half, 1)
        self.conv2 = nn.Conv2d(channels, half, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(half, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        a = self.conv0(x)
        b = dilated_depthwise_conv(a, self.conv_spatial)  # = self.conv_spatial(a)
        a = self.conv1(a)  # (B, C/2, H, W)
        b = self.conv2(b)  # (B, C/2, H, W)
        both = torch.cat([a, b], dim=1)  # (B, C, H, W)
        pooled = torch.cat([both.mean(dim=1, keepdim=True), both.amax(dim=1, keepdim=True)], dim=1)
        weights = self.conv_squeeze(pooled).sigmoid()  # (B, 2, H, W)
        out = self.conv(a * weights[:, 0:1] + b * weights[:, 1:2])
        return x * out if self.residual else out


def refinement_block(channels: int, hidden: int = 128) -> nn.Sequential:
    """Per-task refinement: 3x3 conv C->hidden + BN + ReLU, 3x3 conv hidden->C + BN + ReLU."""
    return nn.Sequential(
        Conv2dNormActivation(channels, hidden, 3, norm_layer=nn.BatchNorm2d, bias=True),
        Conv2dNormActivation(hidden, channels, 3, norm_layer=nn.BatchNorm2d, bias=True),
    )


def select_channels(scores: Tensor, k: int) -> Tensor:
    """(B, C) scores -> (B, k) indices of the k largest per row, in ascending channel order.

    Ties (e.g. channels that are entirely zero after a ReLU) go to the lower channel index,
    so that every runtime (eager, ONNX) selects the same channels: a channel is selected
    when fewer than k channels rank above it.
    """
    channels = scores.shape[1]
    index = torch.arange(channels, device=scores.device)
    higher = scores[:, :, None] > scores[:, None, :]  # (B, C, C): [b, j, c] = channel j beats c
    tie_lower = (scores[:, :, None] == scores[:, None, :]) & (index[:, None] < index[None, :])
    rank = (higher | tie_lower).sum(dim=1)  # (B, C): channels ranked above each channel
    selected = rank < k
    # distinct keys, larger for lower channels: top-k returns the selection in ascending order
    key = selected.to(scores.dtype) * (channels - index).to(scores.dtype)
    return key.topk(k, dim=1).indices


def _is_channels_last(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def gather_channels(x: Tensor, index: Tensor) -> Tensor:
    """Per-sample channel selection: (B, C, H, W), (B, k) -> (B, k, H, W), ``out[b, j] = x[b, index[b, j]]``.

    In channels-last memory every pixel's channels are contiguous, so the gather runs on the
    (B, H*W, C) view along its last axis (several times faster than along dim 1).
    """
    batch, channels, height, width = x.shape
    k = index.shape[1]
    if _is_channels_last(x):
        rows = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # a view
        picked = rows.gather(2, index[:, None, :].expand(-1, height * width, -1))  # (B, H*W, k)
        return picked.view(batch, height, width, k).permute(0, 3, 1, 2)
    return x.gather(1, index[:, :, None, None].expand(-1, -1, height, width))


def replace_channels(x: Tensor, index: Tensor, values: Tensor) -> Tensor:
    """A copy of ``x`` (one new buffer, same layout) with ``out[b, index[b, j]] = values[b, j]``."""
    batch, channels, height, width = x.shape
    k = index.shape[1]
    values = values.to(x.dtype)  # dtypes may differ under autocast
    if _is_channels_last(x):
        rows = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # a view
        source = values.permute(0, 2, 3, 1).reshape(batch, height * width, k)
        out = rows.scatter(2, index[:, None, :].expand(-1, height * width, -1), source)
        return out.view(batch, height, width, channels).permute(0, 3, 1, 2)
    return x.scatter(1, index[:, :, None, None].expand(-1, -1, height, width), values)


def _pointwise(x: Tensor, linear: nn.Linear) -> Tensor:
    """Apply ``linear`` to the channel vector of every pixel: (B, k_in, H, W) -> (B, k_out, H, W)."""
    return F.conv2d(x, linear.weight[:, :, None, None], linear.bias)


class ChannelExchange(nn.Module):
    """Dynamic channel hard-exchange between two task features of the same shape.

    Args:
        channels: C, channels of each task feature.
        ratio: p, fraction of channels exchanged (k = int(C * p); 0 gives the identity).
        hidden: width of the shared MLP (64).
        selector: ``"fixed"`` (faithful, un-learned) or ``"learned"`` (see the module docstring).
    """

    def __init__(
        self, channels: int, ratio: float = 0.5, hidden: int = 64, selector: SelectorMode = "fixed"
    ) -> None:
        super().__init__()
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"exchange ratio must be in [0, 1], got {ratio}")
        if selector not in ("fixed", "learned"):
            raise ValueError(f"selector must be 'fixed' or 'learned', got {selector!r}")
        self.k = int(channels * ratio)
        self.selector_mode = selector
        # nothing to build for k = 0 (the identity)
        self.selector = LSKAttention(channels, residual=True) if self.k else None
        self.fc1 = nn.Linear(self.k, hidden) if self.k else None
        self.fc2 = nn.Linear(hidden, self.k) if self.k else None
        if self.selector is not None and selector == "fixed":
            self.selector.requires_grad_(False)

    def channel_scores(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C) selection logits: spatial mean of ``x * LSK(x)``."""
        if self.selector_mode == "fixed":
            with torch.no_grad():
                return self.selector(x).mean(dim=(2, 3))
        return self.selector(x).mean(dim=(2, 3))

    def mix(self, x: Tensor) -> Tensor:
        """The shared MLP over the k selected channels of every pixel: (N, k, H, W) -> same."""
        return _pointwise(F.relu(_pointwise(x, self.fc1)), self.fc2)

    def forward(self, seg: Tensor, cls: Tensor) -> tuple[Tensor, Tensor]:
        """Exchange channels: (B, C, H, W) x 2 -> (B, C, H, W) x 2."""
        if self.k == 0:
            return seg, cls
        logits_seg, logits_cls = self.channel_scores(seg), self.channel_scores(cls)  # (B, C) each
        index_seg = select_channels(logits_seg, self.k)  # (B, k)
        index_cls = select_channels(logits_cls, self.k)
        selected_seg = gather_channels(seg, index_seg)  # (B, k, H, W)
        selected_cls = gather_channels(cls, index_cls)
        # one MLP for both directions: seg slots receive MLP(cls selection) and vice versa
        # (chunk, not split(batch): an ONNX export then takes any batch size)
        to_seg, to_cls = self.mix(torch.cat([selected_cls, selected_seg], dim=0)).chunk(2)
        if self.selector_mode == "learned":
            gate_seg = logits_seg.sigmoid().gather(1, index_seg)[:, :, None, None]  # (B, k, 1, 1)
            gate_cls = logits_cls.sigmoid().gather(1, index_cls)[:, :, None, None]
            to_seg = gate_seg * to_seg + (1.0 - gate_seg) * selected_seg
            to_cls = gate_cls * to_cls + (1.0 - gate_cls) * selected_cls
        return replace_channels(seg, index_seg, to_seg), replace_channels(cls, index_cls, to_cls)


class CrossTaskExchange(nn.Module):
    """LSK attention (shared) -> per-task refinement -> channel exchange, for seg and cls features.

    Args:
        channels: feature channels (256).
        lsk: use the shared LSK attention (ablation switch).
        lsk_residual: multiply the input by the LSK response (improvement; faithful False).
        exchange: use the channel exchange (ablation switch).
        ratio: exchange ratio p (1/2).
        selector: ``"fixed"`` (faithful) or ``"learned"``.
        mlp_hidden: width of the exchange MLP (64).
        refine_hidden: hidden width of the refinement blocks (128).
    """

    def __init__(
        self,
        channels: int = 256,
        lsk: bool = True,
        lsk_residual: bool = False,
        exchange: bool = True,
        ratio: float = 0.5,
        selector: SelectorMode = "fixed",
        mlp_hidden: int = 64,
        refine_hidden: int = 128,
    ) -> None:
        super().__init__()
        self.lsk = LSKAttention(channels, residual=lsk_residual) if lsk else None
        self.refine_seg = refinement_block(channels, refine_hidden)
        self.refine_cls = refinement_block(channels, refine_hidden)
        self.exchange = ChannelExchange(channels, ratio, mlp_hidden, selector) if exchange else None

    def forward(self, seg: Tensor, cls: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) seg and cls tower outputs -> exchanged (B, C, H, W) features."""
        if self.lsk is not None:
            seg, cls = self.lsk(torch.cat([seg, cls], dim=0)).chunk(2, dim=0)
        seg, cls = self.refine_seg(seg), self.refine_cls(cls)
        if self.exchange is not None:
            seg, cls = self.exchange(seg, cls)
        return seg, cls
