"""ResNet-18/34/50 backbone (torchvision) with frozen BatchNorm, returning C2..C5.

Two switches beyond the official backbone, for training from random initialisation:
``norm="batch"`` (trainable BatchNorm instead of frozen: a frozen BN on random weights is an
identity, and the network then trains as an unnormalised ResNet) and ``width`` (channels of
the first stage, default 64; the other stages double it, as in ResNet). A width other than 64
builds the same torchvision blocks with scaled channels and cannot load ImageNet weights.

As in the official recipe, every BatchNorm is frozen (running statistics *and* affine
parameters, :class:`torchvision.ops.FrozenBatchNorm2d` computed in one pass, so always in
inference mode) while
every convolution, the stem included, is trainable (no frozen stages).

Initialisation (``weights``):

* ``None`` (default): torchvision's random initialisation;
* ``"IMAGENET1K_V1"`` (alias ``"imagenet"``): torchvision's own ImageNet weights enum,
  downloaded, hash-checked and cached by torchvision on a connected machine;
* a path to a local torchvision-format ResNet state dict (``torch.save(resnet.state_dict())``),
  read with ``torch.load(weights_only=True)``; the ``fc.*`` entries may be absent. Its shapes
  must be those of this backbone: a backbone of another ``width`` (the high-resolution models)
  loads only a state dict of that width; torchvision's pretrained weights are 64 wide.

Stride placement for ResNet-50: the official backbone is "caffe" style (the stride-2 of the
first block of a stage sits on the first 1x1 conv, torchvision puts it on the 3x3) while being
initialised with torchvision's weights. ``caffe_style=True`` (default) reproduces this by moving
the strides after building the torchvision network; parameter count is unchanged, the FLOPs
are slightly lower. ResNet-18/34 (basic blocks) are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops import FrozenBatchNorm2d

from bafenet.errors import BafenetError, DataError

_RESNETS: dict[int, tuple[Callable[..., models.ResNet], type]] = {
    18: (models.resnet18, models.ResNet18_Weights),
    34: (models.resnet34, models.ResNet34_Weights),
    50: (models.resnet50, models.ResNet50_Weights),
}
_WEIGHT_ALIASES = {"imagenet": "IMAGENET1K_V1"}
_LAYERS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}
NORMS = ("frozen", "batch")


class ModelOptionError(BafenetError, ValueError):
    """An unknown model name, or an option the model does not have or cannot take."""


class FrozenBatchNorm(FrozenBatchNorm2d):
    """torchvision's ``FrozenBatchNorm2d`` (same buffers, same state dict) in one pass.

    ``x * scale + shift`` as a single ``addcmul``: one sweep over the feature map instead
    of two (a measurable share of the backbone's time on CPU); identical results.
    """

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return torch.addcmul(shift.reshape(1, -1, 1, 1), x, scale.reshape(1, -1, 1, 1))


def _weights_enum(weights_cls: type, name: str):
    """The torchvision weights enum member called ``name`` (or an alias), else ``None``."""
    name = _WEIGHT_ALIASES.get(name.lower(), name)
    try:
        return weights_cls[name]
    except KeyError:
        return None


def _load_local_weights(net: models.ResNet, path: Path, depth: int, width: int) -> None:
    """Load a torchvision-format ResNet state dict from ``path`` into ``net`` (fc optional)."""
    from bafenet.engine.checkpoint import read_weights_only

    if not path.is_file():
        raise DataError(
            path, "backbone weights: neither a torchvision weights name (IMAGENET1K_V1, imagenet) nor a file"
        )
    state = read_weights_only(path, what="backbone weights file")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise DataError(path, "backbone weights must be a state dict (name -> tensor)")
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith("fc.")]
    unexpected = [
        k for k in state if k not in expected and not k.startswith("fc.") and "num_batches_tracked" not in k
    ]
    wrong_shape = [
        k
        for k in expected
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong_shape),
            )
            if keys
        )
        what = f"ResNet-{depth} state dict" + (f" of width {width}" if width != 64 else "")
        hint = "" if width == 64 else f"; this backbone is {width} wide, torchvision's ResNets 64"
        raise DataError(path, f"not a torchvision {what} ({detail}){hint}")
    net.load_state_dict(state, strict=False)


def _scaled_resnet(depth: int, width: int, norm_layer: Callable[[int], nn.Module]) -> models.ResNet:
    """A torchvision ResNet whose stages have ``width * (1, 2, 4, 8)`` channels (random init).

    Built from torchvision's own blocks, with torchvision's module names and initialisation
    (Kaiming-normal convs, norms weight 1 / bias 0).
    """
    block, counts = _LAYERS[depth]
    net = models.ResNet(block, counts, norm_layer=norm_layer)  # its stem types and layer builder
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = norm_layer(width)
    net.inplanes = width  # torchvision's _make_layer chains the stages from here
    for index, (count, stride) in enumerate(zip(counts, (1, 2, 2, 2), strict=True)):
        setattr(net, f"layer{index + 1}", net._make_layer(block, width * 2**index, count, stride))
    net.fc = nn.Identity()
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return net


def _move_strides_to_1x1(net: models.ResNet) -> None:
    """Caffe-style bottlenecks: stride-2 on the first 1x1 conv instead of on the 3x3."""
    for layer in (net.layer2, net.layer3, net.layer4):
        block = layer[0]
        if isinstance(block, Bottleneck) and block.conv2.stride != (1, 1):
            block.conv1.stride = block.conv2.stride
            block.conv2.stride = (1, 1)


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier; ``forward`` returns ``[C2, C3, C4, C5]``.

    Args:
        depth: 18, 34 or 50.
        weights: ``None``, ``"IMAGENET1K_V1"`` / ``"imagenet"``, or a local state-dict path.
        caffe_style: move the stage strides onto the 1x1 convs (ResNet-50 only; default True).
        norm: ``"frozen"`` (official: frozen BatchNorm) or ``"batch"`` (trainable BatchNorm).
        width: channels of the first stage (64 = the standard ResNet; others need random init).

    Module names follow torchvision (``conv1``, ``bn1``, ``layer1`` .. ``layer4``), so a
    torchvision ResNet state dict (without ``fc``) loads into this module directly.
    """

    def __init__(
        self,
        depth: int = 18,
        weights: str | Path | None = None,
        caffe_style: bool = True,
        norm: str = "frozen",
        width: int = 64,
    ) -> None:
        super().__init__()
        if depth not in _RESNETS:
            raise ModelOptionError(f"ResNet depth must be one of {sorted(_RESNETS)}, got {depth}")
        if norm not in NORMS:
            raise ModelOptionError(f"backbone norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if width < 8:
            raise ModelOptionError(f"backbone width must be >= 8, got {width}")
        norm_layer = FrozenBatchNorm if norm == "frozen" else nn.BatchNorm2d
        builder, weights_cls = _RESNETS[depth]
        enum = _weights_enum(weights_cls, str(weights)) if isinstance(weights, str) else None
        if width != 64 and enum is not None:
            raise ModelOptionError(
                f"pretrained weights {weights} exist for width 64 only, and this backbone is {width} "
                "wide (as in the high-resolution models): train it from random initialisation "
                "(model.weights_backbone=null), or give it width 64 (model.kwargs={backbone_width: 64})"
            )
        try:
            if width == 64:
                net = builder(weights=enum, norm_layer=norm_layer)
            else:
                net = _scaled_resnet(depth, width, norm_layer)
        except OSError as exc:  # URLError, a truncated cache file, no disk space, ...
            raise BafenetError(
                f"cannot get torchvision's {enum} weights for ResNet-{depth} ({exc}); on an offline "
                "machine pass a local torchvision state dict (model.weights_backbone=PATH) or train "
                "from random initialisation (model.weights_backbone=null)"
            ) from None
        if weights is not None and enum is None:
            _load_local_weights(net, Path(weights), depth, width)
        if caffe_style:
            _move_strides_to_1x1(net)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        expansion = 4 if depth >= 50 else 1
        self.out_channels = [width * 2**i * expansion for i in range(4)]

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) normalised image -> [C2, C3, C4, C5] at strides 4, 8, 16, 32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]
