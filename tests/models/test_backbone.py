from __future__ import annotations

import pytest
import torch
from torchvision import models
from torchvision.ops import FrozenBatchNorm2d

from bafenet.errors import DataError
from bafenet.models.backbone import ResNetBackbone
from bafenet.models.neck import FPN


def test_resnet18_levels_for_odd_sizes():
    backbone = ResNetBackbone(18)
    feats = backbone(torch.randn(1, 3, 70, 90))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512] == backbone.out_channels
    # every stride-2 layer rounds up: sizes are ceil(H / s)
    assert [tuple(f.shape[-2:]) for f in feats] == [(18, 23), (9, 12), (5, 6), (3, 3)]


def test_batchnorm_frozen_and_every_conv_trainable():
    backbone = ResNetBackbone(18)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    frozen = [m for m in backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen) == 20  # stem + 8 blocks x 2 + 3 downsample
    convs = [m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.weight.requires_grad for m in convs)
    # frozen BN: training mode does not change its statistics or output
    x = torch.randn(2, 3, 64, 64)
    backbone.eval()
    expected = backbone(x)[-1]
    backbone.train()
    assert torch.equal(backbone(x)[-1], expected)


def test_resnet50_caffe_style_moves_strides():
    caffe = ResNetBackbone(50, caffe_style=True)
    torch_style = ResNetBackbone(50, caffe_style=False)
    for layer in ("layer2", "layer3", "layer4"):
        assert getattr(caffe, layer)[0].conv1.stride == (2, 2)
        assert getattr(caffe, layer)[0].conv2.stride == (1, 1)
        assert getattr(torch_style, layer)[0].conv2.stride == (2, 2)
    x = torch.randn(1, 3, 64, 96)
    assert [f.shape for f in caffe(x)] == [f.shape for f in torch_style(x)]
    assert caffe.out_channels == [256, 512, 1024, 2048]


def test_local_torchvision_weights_load(tmp_path):
    reference = models.resnet18()
    torch.nn.init.normal_(reference.layer3[1].conv2.weight)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    backbone = ResNetBackbone(18, weights=path)
    assert torch.equal(backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert torch.equal(backbone.bn1.running_var, reference.bn1.running_var)
    # without the classifier too
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    torch.save(state, path)
    assert torch.equal(ResNetBackbone(18, weights=path).conv1.weight, reference.conv1.weight)


def test_bad_weights_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.pth"):
        ResNetBackbone(18, weights=tmp_path / "missing.pth")
    wrong = tmp_path / "r34.pth"
    torch.save(models.resnet34().state_dict(), wrong)
    with pytest.raises(DataError, match="not a torchvision ResNet-18"):
        ResNetBackbone(18, weights=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="garbage.pth"):
        ResNetBackbone(18, weights=garbage)


def test_fpn_levels_and_xavier_init():
    fpn = FPN([128, 256, 512], 256)
    out = fpn([torch.randn(2, 128, 9, 12), torch.randn(2, 256, 5, 6), torch.randn(2, 512, 3, 3)])
    assert [tuple(p.shape) for p in out] == [(2, 256, 9, 12), (2, 256, 5, 6), (2, 256, 3, 3)]
    convs = [m for m in fpn.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 6
    for conv in convs:
        assert torch.count_nonzero(conv.bias) == 0
        fan_in = conv.weight.shape[1] * conv.weight[0, 0].numel()
        fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
        bound = (6 / (fan_in + fan_out)) ** 0.5  # Xavier-uniform
        assert conv.weight.abs().max() <= bound
        assert conv.weight.abs().max() > 0.9 * bound


def test_weight_names_resolve_to_torchvision_enums():
    from bafenet.models.backbone import _weights_enum

    assert _weights_enum(models.ResNet18_Weights, "IMAGENET1K_V1") is models.ResNet18_Weights.IMAGENET1K_V1
    assert _weights_enum(models.ResNet50_Weights, "imagenet") is models.ResNet50_Weights.IMAGENET1K_V1
    assert _weights_enum(models.ResNet18_Weights, "/some/file.pth") is None


def test_offline_imagenet_weights_give_a_clear_error(monkeypatch) -> None:
    import urllib.error

    import torchvision.models._api as api

    from bafenet.errors import BafenetError

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(BafenetError, match="weights_backbone=null"):
        ResNetBackbone(18, "imagenet")


def test_trainable_batchnorm_and_scaled_width():
    backbone = ResNetBackbone(18, norm="batch", width=32)
    assert backbone.out_channels == [32, 64, 128, 256]
    feats = backbone(torch.randn(2, 3, 64, 96))
    assert [f.shape[1] for f in feats] == backbone.out_channels
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 20 and all(m.weight.requires_grad for m in norms)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
    # training mode updates the running statistics (unlike the frozen default)
    before = norms[0].running_mean.clone()
    backbone.train()
    backbone(torch.randn(2, 3, 64, 96) * 5 + 3)
    assert not torch.equal(norms[0].running_mean, before)
    # torchvision's blocks at a quarter of the parameters of the standard width
    standard = sum(p.numel() for p in ResNetBackbone(18).parameters())
    assert sum(p.numel() for p in backbone.parameters()) < standard / 3.5


def test_backbone_option_errors():
    with pytest.raises(ValueError, match="norm"):
        ResNetBackbone(18, norm="group")
    with pytest.raises(ValueError, match="width 64 only"):
        ResNetBackbone(18, weights="imagenet", width=32)
