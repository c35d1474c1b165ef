"""A network of its own for the whole-frame sky (the ``context_net`` switch).

With ``sky_context`` alone, the detector's backbone, FPN and sky tower also segment the
whole-frame context image, so one body serves two tasks at two scales, and each training
step pays for both. With ``context_net`` the context sky comes from :class:`SkyContextNet`
instead, a narrow ResNet-18 + FPN of its own: the detector's body stays exactly the plain
detector's and learns detection alone, while the context net learns the sky from whole
frames (``loss_sky_context``). Its sky logits, of stride ``stride`` on the context image,
reach the detector as before (:func:`bafenet.models.context.resample_context`), as the sky
branch's sky map, the exchange's sky features (with ``sky_fuse``) and the sky-conditioned
scoring.
"""

from __future__ import annotations

from torch import Tensor, nn

from bafenet.models.backbone import ResNetBackbone
from bafenet.models.head import conv_tower
from bafenet.models.neck import FPN

STRIDE_LEVEL = {4: 0, 8: 1}
"""Output stride -> index of the finest backbone map (C2, C3) fed to the FPN."""


class SkyContextNet(nn.Module):
    """Whole-frame sky logits from a (B, 3, h, w) normalised context image, on every FPN level
    (one tower and predictor shared over the levels, as the head's context path: the sky loss
    supervises every level, the finest is the one resampled onto the detector's grid).

    Args:
        stride: stride of the output sky logits (the detector's finest stride: 4 or 8).
        width: width of the ResNet-18 body (64 is torchvision's; 16 by default, a
            sixteenth of its MACs), trainable BatchNorm, random initialisation.
        channels: FPN and sky-tower channels.
        tower_depth: 3x3 conv blocks of the sky tower.
    """

    def __init__(self, stride: int = 4, width: int = 16, channels: int = 16, tower_depth: int = 2) -> None:
        super().__init__()
        if stride not in STRIDE_LEVEL:
            raise ValueError(f"the context net's stride must be one of {sorted(STRIDE_LEVEL)}, got {stride}")
        self.stride = stride
        self.first_level = STRIDE_LEVEL[stride]
        self.backbone = ResNetBackbone(18, None, caffe_style=True, norm="batch", width=width)
        self.neck = FPN(self.backbone.out_channels[self.first_level :], channels)
        groups = max(g for g in range(1, 33) if channels % g == 0)
        self.tower = conv_tower(channels, tower_depth, groups)
        self.pred = nn.Conv2d(channels, 1, 3, padding=1)
        for module in [*self.tower.modules(), self.pred]:  # as the detector's head
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, 3, h, w) normalised context images -> sky logits (B, 1, h_l, w_l) per level, finest
        first (stride ``stride``, then x2 each), as :meth:`bafenet.models.head.FCOSHead.context_sky`
        lists them."""
        levels = self.neck(self.backbone(images)[self.first_level :])
        return [self.pred(self.tower(x)) for x in levels]
