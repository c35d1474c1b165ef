from __future__ import annotations

import pytest
import torch
from torchvision import models

from bafenet.config import load_config
from bafenet.engine.setup import build_model_from_config
from bafenet.errors import BafenetError, DataError
from bafenet.models.complexity import count_flops, count_parameters
from bafenet.models.zoo import MODELS, build_model, list_models

# the official layers used by the forward pass (reference §1.7)
REFERENCE_PARAMS = {
    "fcos_r18": 17_913_417,
    "fcos_seg_r18": 20_277_066,
    "bafenet_r18": 21_712_534,
    "fcos_r50": 30_933_065,
    "fcos_seg_r50": 33_296_714,
    "bafenet_r50": 34_732_182,
}

VARIANTS = [(name, {}) for name in MODELS] + [
    ("bafenet_r18", {"p2": True}),
    ("bafenet_r18", {"lsk": False}),
    ("bafenet_r18", {"exchange": False}),
    ("bafenet_r18", {"exchange_ratio": 0.25, "selector": "learned", "lsk_residual": True}),
    ("fcos_r18", {"center_sampling": True}),
    ("bafenet_r18", {"channels": 64, "tower_depth": 2}),
    ("bafenet_hr", {"exchange": False, "channels": 48}),
    ("fcos_r18", {"backbone_norm": "batch", "backbone_width": 16}),
]


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=lambda v: v if isinstance(v, str) else str(v))
def test_variant_trains_and_predicts(name, options, batch_factory):
    torch.manual_seed(0)
    model = build_model(name, **options)
    images, targets = batch_factory(64, 64, [[[8.0, 10.0, 40.0, 44.0], [50.0, 50.0, 53.0, 53.0]], []])
    model.train()
    losses = model(images, targets)
    expected = {"loss_cls", "loss_box", "loss_centerness"} | (
        {"loss_sky"} if not name.startswith("fcos_r") and name != "fcos_hr" else set()
    )
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    model.eval()
    with torch.no_grad():
        results = model(images)
    assert len(results) == 2
    assert ("sky_prob" in results[0]) == model.head.with_sky
    levels = 4 if options.get("p2") or name.endswith("_hr") else 3
    assert len(model.strides) == levels == len(model.head.scales)


@pytest.mark.parametrize("name", list(REFERENCE_PARAMS))
def test_parameter_counts_match_the_reference(name):
    counts = count_parameters(build_model(name))
    assert counts["params"] == REFERENCE_PARAMS[name]
    assert counts["trainable"] < counts["params"]


def test_flops_of_bafenet_r18_are_those_of_its_layers():
    flops = count_flops(build_model("bafenet_r18"), 64)
    # 3 towers of 4 3x3 convs 256->256 over 8x8 + 4x4 + 2x2 locations alone: 2 FLOPs per MAC
    towers = 3 * 4 * 256 * 256 * 9 * (64 + 16 + 4) * 2
    assert towers < flops < 3 * towers


def test_unknown_names_and_options_are_clear_errors():
    assert list_models() == list(MODELS) and "bafenet_r50" in list_models()
    with pytest.raises(BafenetError, match="unknown model 'bafenet_r101'"):
        build_model("bafenet_r101")
    with pytest.raises(BafenetError, match="has no option exchange"):
        build_model("fcos_r18", exchange=False)
    with pytest.raises(ValueError, match="regress ranges"):
        build_model("fcos_r18", regress_ranges=[(-1, 64)])


@pytest.mark.parametrize("name", ["bafenet_hr", "fcos_hr", "fcos_seg_hr"])
def test_backbone_weights_of_the_high_resolution_models(name, tmp_path):
    # torchvision's pretrained weights are 64 wide; these backbones are 32 wide
    with pytest.raises(BafenetError, match=r"width 64 only.*model\.weights_backbone=null"):
        build_model(name, weights_backbone="imagenet")
    standard = tmp_path / "resnet18.pth"
    torch.save(models.resnet18().state_dict(), standard)
    with pytest.raises(DataError, match=r"resnet18\.pth: not a torchvision ResNet-18 state dict of width 32"):
        build_model(name, weights_backbone=str(standard))
    # a state dict of the same width loads (e.g. the backbone of an earlier run)
    source = build_model(name).backbone
    torch.nn.init.normal_(source.layer3[0].conv1.weight)
    half = tmp_path / "half.pth"
    torch.save(source.state_dict(), half)
    model = build_model(name, weights_backbone=str(half))
    assert torch.equal(model.backbone.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    # a config with the 64-wide backbone takes torchvision's weights
    assert build_model(name, weights_backbone=str(standard), backbone_width=64).backbone.out_channels[0] == 64


def test_builder_errors_from_a_config_are_one_line():
    cfg = load_config(None, ["model.weights_backbone=null", "model.kwargs={regress_ranges: [[-1, 64]]}"])
    with pytest.raises(BafenetError, match="3 levels need 3 regress ranges"):
        build_model_from_config(cfg)
    cfg = load_config(None, ["model.weights_backbone=null", "model.kwargs={channels: -4}"])
    with pytest.raises(BafenetError, match=r"model switch channels=-4: expected an integer >= 0"):
        build_model_from_config(cfg)  # the same type check as `bafenet info`
    cfg = load_config(None, ["model.weights_backbone=null", "model.kwargs={exchange: notabool}"])
    with pytest.raises(BafenetError, match=r"model switch exchange='notabool': expected true or false"):
        build_model_from_config(cfg)
    cfg = load_config(None, ["model.weights_backbone=null", "model.kwargs={channels: 0}"])
    with pytest.raises(BafenetError, match=r"model bafenet_r18 cannot be built with .*channels=0: "):
        build_model_from_config(cfg)
