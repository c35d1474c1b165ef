"""Model size and cost: parameter counts and FLOPs.

Parameter count convention: the reference counts a random-init build of the official code,
where the frozen BatchNorm affine weights of the backbone are (non-trainable) parameters.
:class:`torchvision.ops.FrozenBatchNorm2d` stores them as buffers, so ``params`` adds the
``weight`` and ``bias`` buffers of every frozen BatchNorm (their running statistics are not
counted, as in the reference). ``trainable`` counts the parameters that receive gradients.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode` on the network forward
(backbone, FPN, head; post-processing excluded); it counts convolutions and matrix products,
not norms, activations or element-wise ops. Torch counts 2 FLOPs per multiply-add;
the paper's table (mmengine's counter) counts one multiply-add as one FLOP, so both are given.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import FrozenBatchNorm2d


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"params", "trainable", "frozen", "frozen_bn_affine"}`` element counts (see module docstring)."""
    frozen_bn_affine = sum(
        m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, FrozenBatchNorm2d)
    )
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = parameters + frozen_bn_affine
    return {
        "params": total,
        "trainable": trainable,
        "frozen": total - trainable,
        "frozen_bn_affine": frozen_bn_affine,
    }


def count_flops(model: nn.Module, size: int | tuple[int, int] = 512, batch: int = 1) -> int:
    """FLOPs (torch convention, 2 per multiply-add) of one forward of a (batch, 1, H, W) input.

    Counted on a weightless copy of ``model`` on the ``meta`` device: no computation, and
    the count follows the architecture rather than a device-specific kernel choice.
    ``model`` must have a ``head_outputs(images)`` method (every zoo model does).
    """
    height, width = (size, size) if isinstance(size, int) else size
    shadow = copy.deepcopy(model).to("meta").eval()
    images = torch.zeros(batch, 1, height, width, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        shadow.head_outputs(images)
    return int(counter.get_total_flops())
