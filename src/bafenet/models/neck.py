"""Feature pyramid (torchvision ``FeaturePyramidNetwork``) on C3..C5 (optionally C2).

As the official neck: 1x1 lateral and 3x3 output convs with bias, no norm, no activation,
nearest upsampling to the exact size of the finer level, no extra levels; 256 channels;
Xavier-uniform weights and zero biases (torchvision's own FPN uses Kaiming, so we re-init).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork


class FPN(FeaturePyramidNetwork):
    """FPN taking and returning plain lists (finest level first).

    Args:
        in_channels: channels of the backbone maps fed to the pyramid, finest first
            (e.g. ``[128, 256, 512]`` for C3..C5 of ResNet-18).
        out_channels: channels of every pyramid level (256).
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256) -> None:
        super().__init__(list(in_channels), out_channels, extra_blocks=None)
        self.out_channels = out_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: list[Tensor]) -> list[Tensor]:  # type: ignore[override]
        """[C_i, ...] (finest first) -> [P_i, ...] with ``out_channels`` channels each."""
        named = OrderedDict((str(i), f) for i, f in enumerate(features))
        return list(super().forward(named).values())
