"""Named model builders: ``fcos_r18`` .. ``bafenet_r50`` and ``build_model(name, **kwargs)``.

Variants (reference §1):

* ``fcos_*``: detection only (cls / reg towers), 3 levels P3..P5;
* ``fcos_seg_*``: plus the sky-segmentation tower and logit, no interaction between tasks;
* ``bafenet_*``: plus the cross-task module (shared LSK attention, per-task refinement,
  dynamic channel hard-exchange) between the sky and classification features.

Keyword arguments of every builder (faithful defaults):

* ``weights_backbone``: ``None`` (random), ``"IMAGENET1K_V1"``/``"imagenet"``, or a file;
* ``p2=False``: add a stride-4 level P2 (from C2) for tiny targets; its default regress
  ranges are ``P2_REGRESS_RANGES``;
* ``regress_ranges``: override the per-level ranges (one ``(lo, hi)`` per level);
* ``center_sampling=False``, ``center_radius=1.5``: FCOS centre sampling;
* ``caffe_style=True``: stride on the 1x1 convs of ResNet-50 (no effect on R18/R34);
* ``num_classes=1``;
* ``channels=256``: width of the FPN levels and of the head (a narrower head, e.g. 64, is
  a CPU-sized variant: the towers are 85% of the faithful model's time);
* ``tower_depth=4``: conv blocks per head tower;
* ``backbone_norm="frozen"``: ``"batch"`` trains the backbone's BatchNorm (from random init);
* ``backbone_width=64``: channels of the first ResNet stage (random init only if not 64).

Post-processing of every builder (:data:`POSTPROCESS_OPTIONS`, passed to
:class:`~bafenet.models.detector.FCOSDetector`; a run sets them from ``eval.*``):
``score_thresh=0.05``, ``pre_nms_top_n=1000``, ``nms_thresh=0.5``, ``detections_per_img=100``.

Only the sky models (``fcos_seg_*``, ``bafenet_*``), all off by default
(:mod:`bafenet.models.context`, ``docs/model.md``):

* ``sky_context=False``: a low-resolution whole-frame pass whose sky features are fused into
  the sky branch, ``context_size=256`` its long side;
* ``context_net=False``: that pass by a narrow network of its own
  (:class:`~bafenet.models.context_net.SkyContextNet`, ResNet-18 of width ``context_width=16``)
  instead of the detector's body, which then stays the plain detector's;
* ``sky_scoring=False``: sky-conditioned class logits (learned, starting as the plain detector);
* ``sky_gate_thr=None``: drop detections whose sky probability at the box centre is below it.

Only ``bafenet_*``: ``lsk=True``, ``lsk_residual=False``, ``exchange=True``,
``exchange_ratio=0.5``, ``selector="fixed"`` (or ``"learned"``), ``mlp_hidden=64``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bafenet.models.backbone import ModelOptionError, ResNetBackbone
from bafenet.models.context import DEFAULT_CONTEXT_SIZE
from bafenet.models.context_net import SkyContextNet
from bafenet.models.detector import FCOSDetector
from bafenet.models.exchange import CrossTaskExchange, SelectorMode
from bafenet.models.head import FCOSHead
from bafenet.models.neck import FPN
from bafenet.models.switches import check_switches
from bafenet.models.targets import OFFICIAL_REGRESS_RANGES

COMMON_OPTIONS = (
    "weights_backbone",
    "p2",
    "regress_ranges",
    "center_sampling",
    "center_radius",
    "caffe_style",
    "num_classes",
    "channels",
    "tower_depth",
    "backbone_norm",
    "backbone_width",
)
SKY_OPTIONS = ("sky_context", "context_size", "context_net", "context_width", "sky_scoring", "sky_gate_thr")
BAFENET_OPTIONS = ("lsk", "lsk_residual", "exchange", "exchange_ratio", "selector", "mlp_hidden")
POSTPROCESS_OPTIONS = ("score_thresh", "pre_nms_top_n", "nms_thresh", "detections_per_img")
P2_REGRESS_RANGES: tuple[tuple[float, float], ...] = (
    (-1.0, 32.0),
    (32.0, 64.0),
    (64.0, 128.0),
    (128.0, 256.0),
)


def _detector(
    depth: int,
    with_sky: bool,
    cross_task: CrossTaskExchange | None,
    weights_backbone: str | Path | None = None,
    p2: bool = False,
    regress_ranges: Sequence[tuple[float, float]] | None = None,
    center_sampling: bool = False,
    center_radius: float = 1.5,
    caffe_style: bool = True,
    num_classes: int = 1,
    channels: int = 256,
    tower_depth: int = 4,
    backbone_norm: str = "frozen",
    backbone_width: int = 64,
    sky_context: bool = False,
    context_size: int = DEFAULT_CONTEXT_SIZE,
    context_net: bool = False,
    context_width: int = 16,
    sky_scoring: bool = False,
    sky_gate_thr: float | None = None,
    score_thresh: float = 0.05,
    pre_nms_top_n: int = 1000,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
) -> FCOSDetector:
    if not with_sky and (sky_context or sky_scoring or sky_gate_thr is not None):
        raise ValueError("sky_context, sky_scoring and sky_gate_thr need a model with a sky branch")
    if context_net and not sky_context:
        raise ValueError("context_net is the sky context's own network: it needs sky_context")
    backbone = ResNetBackbone(
        depth, weights_backbone, caffe_style=caffe_style, norm=backbone_norm, width=backbone_width
    )
    first_level = 0 if p2 else 1  # index of the finest backbone map used: C2 or C3
    strides = [4, 8, 16, 32][first_level:]
    if regress_ranges is None:
        regress_ranges = P2_REGRESS_RANGES if p2 else OFFICIAL_REGRESS_RANGES
    if len(regress_ranges) != len(strides):
        raise ModelOptionError(
            f"{len(strides)} levels need {len(strides)} regress ranges, got {len(regress_ranges)}"
        )
    neck = FPN(backbone.out_channels[first_level:], channels)
    head = FCOSHead(
        len(strides),
        channels,
        num_classes,
        with_sky=with_sky,
        cross_task=cross_task,
        tower_depth=tower_depth,
        sky_context=sky_context,
        sky_scoring=sky_scoring,
        context_predictor=not context_net,
    )
    model = FCOSDetector(
        backbone,
        neck,
        head,
        strides,
        regress_ranges,
        first_level,
        center_sampling,
        center_radius,
        score_thresh=score_thresh,
        pre_nms_top_n=pre_nms_top_n,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
        context_size=context_size if sky_context else None,
        sky_gate_thr=sky_gate_thr,
        context_net=SkyContextNet(stride=strides[0], width=context_width) if context_net else None,
    )
    return model.to(memory_format=torch.channels_last)  # layout only: measured faster on CPU


def _bafenet(
    depth: int,
    lsk: bool = True,
    lsk_residual: bool = False,
    exchange: bool = True,
    exchange_ratio: float = 0.5,
    selector: SelectorMode = "fixed",
    mlp_hidden: int = 64,
    **common,
) -> FCOSDetector:
    channels = common.get("channels", 256)
    cross_task = CrossTaskExchange(
        channels, lsk, lsk_residual, exchange, exchange_ratio, selector, mlp_hidden, channels // 2
    )
    return _detector(depth, True, cross_task, **common)


def fcos_r18(**kwargs) -> FCOSDetector:
    """FCOS, ResNet-18, P3-P5, detection only."""
    return _detector(18, False, None, **kwargs)


def fcos_r34(**kwargs) -> FCOSDetector:
    """FCOS, ResNet-34, P3-P5, detection only."""
    return _detector(34, False, None, **kwargs)


def fcos_r50(**kwargs) -> FCOSDetector:
    """FCOS, ResNet-50, P3-P5, detection only."""
    return _detector(50, False, None, **kwargs)


def fcos_seg_r18(**kwargs) -> FCOSDetector:
    """FCOS + sky segmentation branch, ResNet-18, no exchange."""
    return _detector(18, True, None, **kwargs)


def fcos_seg_r34(**kwargs) -> FCOSDetector:
    """FCOS + sky segmentation branch, ResNet-34, no exchange."""
    return _detector(34, True, None, **kwargs)


def fcos_seg_r50(**kwargs) -> FCOSDetector:
    """FCOS + sky segmentation branch, ResNet-50, no exchange."""
    return _detector(50, True, None, **kwargs)


def bafenet_r18(**kwargs) -> FCOSDetector:
    """BAFE-Net, ResNet-18."""
    return _bafenet(18, **kwargs)


def bafenet_r34(**kwargs) -> FCOSDetector:
    """BAFE-Net, ResNet-34."""
    return _bafenet(34, **kwargs)


def bafenet_r50(**kwargs) -> FCOSDetector:
    """BAFE-Net, ResNet-50."""
    return _bafenet(50, **kwargs)


# The high-resolution CPU family (see docs/model.md, "High-resolution models"): the paper's
# model with a finer level and a lighter body, meant for frames upsampled x2 (3-px targets
# become 6 px and get FCOS positives at the stride-4 level P2). Every default can be overridden.
HR_DEFAULTS: dict[str, object] = {
    "p2": True,  # stride-4 level: 98 % of targets get a positive at x2 input (reference §7)
    "channels": 32,  # FPN / head width
    "tower_depth": 2,
    "backbone_norm": "batch",  # trained from random init: frozen BN would be an identity
    "backbone_width": 32,  # ResNet-18 at half width: a quarter of the backbone's MACs
}


def fcos_hr(**kwargs) -> FCOSDetector:
    """High-resolution FCOS (no sky branch): ResNet-18 at half width, P2-P5, 32-channel head."""
    return _detector(18, False, None, **{**HR_DEFAULTS, **kwargs})


def fcos_seg_hr(**kwargs) -> FCOSDetector:
    """High-resolution FCOS + sky segmentation branch, no exchange."""
    return _detector(18, True, None, **{**HR_DEFAULTS, **kwargs})


def bafenet_hr(**kwargs) -> FCOSDetector:
    """High-resolution BAFE-Net: the cross-task exchange on the half-width P2-P5 model."""
    return _bafenet(18, **{**HR_DEFAULTS, **kwargs})


MODELS: dict[str, Callable[..., FCOSDetector]] = {
    fn.__name__: fn
    for fn in (
        fcos_r18, fcos_r34, fcos_r50,
        fcos_seg_r18, fcos_seg_r34, fcos_seg_r50,
        bafenet_r18, bafenet_r34, bafenet_r50,
        fcos_hr, fcos_seg_hr, bafenet_hr,
    )
}  # fmt: skip


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return list(MODELS)


def model_options(name: str) -> tuple[str, ...]:
    """The switches the zoo model ``name`` takes."""
    return (
        COMMON_OPTIONS
        + (SKY_OPTIONS if name.startswith(("fcos_seg", "bafenet")) else ())
        + (BAFENET_OPTIONS if name.startswith("bafenet") else ())
    )


def build_model(name: str, **kwargs) -> FCOSDetector:
    """Build the model called ``name`` with the builder's keyword arguments (switches and
    :data:`POSTPROCESS_OPTIONS`)."""
    if name not in MODELS:
        raise ModelOptionError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    allowed = model_options(name) + POSTPROCESS_OPTIONS
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ModelOptionError(
            f"model {name} has no option {', '.join(unknown)}; options: {', '.join(allowed)}"
        )
    check_switches(name, kwargs)
    try:
        return MODELS[name](**kwargs)
    except ModelOptionError:
        raise
    except (ValueError, TypeError, RuntimeError) as exc:  # a value of the right type the layers refuse
        switches = " ".join(f"{k}={v}" for k, v in kwargs.items() if k not in POSTPROCESS_OPTIONS)
        reason = str(exc).strip().split("\n")[0] or type(exc).__name__
        raise ModelOptionError(f"model {name} cannot be built with {switches}: {reason}") from None
