"""engine/inference.py: the evaluation geometry, post-processing from the config, loading, and
tiled validation under a 2-process gloo torchrun."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_training import TINY_RECIPE, train_env
from torch import nn

from bafenet.config import ConfigError, config_to_dict, load_config
from bafenet.data import transforms
from bafenet.data.sample import Sample
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine import inference
from bafenet.engine.checkpoint import load_checkpoint
from bafenet.engine.inference import EvalGeometry, checkpoint_config, load_trained_model
from bafenet.engine.setup import build_model_from_config
from bafenet.errors import BafenetError, DataError


def _native_x2(*overrides: str) -> EvalGeometry:
    return EvalGeometry.from_config(load_config(None, ["eval.protocol=native", "eval.scale=2", *overrides]))


class PrecisionProbe(nn.Module):
    """Records the dtype its convolution computes in under the caller's autocast."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.dtypes: list[torch.dtype] = []

    def forward(self, images, original_sizes, image_sizes):
        self.dtypes.append(self.conv(images).dtype)
        return [{} for _ in original_sizes]


@pytest.mark.parametrize("native", [True, False])
def test_amp_on_cpu_uses_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: native)
    frame = Sample(image=np.zeros((20, 24), np.float32), image_id="f")
    probe = PrecisionProbe()
    for amp in (True, False):
        geometry = _native_x2(f"eval.amp={str(amp).lower()}")
        geometry.predict(probe, [frame], [geometry.transform(frame)], torch.device("cpu"))
    assert probe.dtypes == [torch.bfloat16 if native else torch.float32, torch.float32]
    assert inference.autocast_dtype(torch.device("cuda"), amp=True) == torch.float16
    assert inference.autocast_dtype(torch.device("cuda"), amp=False) is None


def test_frames_too_small_for_the_detector_are_refused_with_the_minimum() -> None:
    geometry = _native_x2()
    tiny = Sample(image=np.zeros((16, 12), np.float32), image_id="tiny", path=Path("tiny.png"))
    with pytest.raises(DataError) as info:
        geometry.transform(tiny)
    assert str(info.value) == (
        "tiny.png: frame of 12x16 px is too small: its network input would be 24x32 px and the detector "
        "needs at least 33 px on the long side (frames of at least 17 px at this scale)"
    )
    assert geometry.transform(Sample(image=np.zeros((17, 4), np.float32))).image.shape == (34, 8)
    # the resize protocol gives every frame the training size
    resized = EvalGeometry.from_config(load_config(None, ["data.input.size=64"]))
    assert resized.protocol == "resize" and resized.transform(tiny).image.shape == (64, 64)


def test_network_inputs_above_the_pixel_limit_are_refused_before_resizing(monkeypatch) -> None:
    geometry = _native_x2("eval.max_pixels=10000")
    frame = Sample(image=np.zeros((50, 60), np.float32), image_id="f", path=Path("big.png"))

    def no_resizing(*args, **kwargs):
        raise AssertionError("the frame was resized")

    monkeypatch.setattr(transforms, "resize", no_resizing)
    with pytest.raises(DataError) as info:
        geometry.transform(frame)
    assert str(info.value) == (
        "big.png: frame of 60x50 px would become a 120x100 px network input (12000 px), above the "
        "limit of 10000 px (eval.max_pixels); lower eval.scale or set eval.max_side"
    )
    capped = _native_x2("eval.max_pixels=10000", "eval.max_side=100")
    assert capped.input_shape(50, 60) == (83, 100)
    monkeypatch.undo()
    assert capped.transform(frame).image.shape == (83, 100)


def test_post_processing_is_built_into_the_model_from_eval_settings() -> None:
    cfg = load_config(
        None,
        [
            "model.name=fcos_hr",
            "model.weights_backbone=null",
            "eval.score_thr=0.2",
            "eval.nms_iou=0.3",
            "eval.max_per_img=7",
            "eval.nms_pre=50",
        ],
    )
    model = build_model_from_config(cfg)
    postprocess = (model.score_thresh, model.nms_thresh, model.detections_per_img, model.pre_nms_top_n)
    assert postprocess == (0.2, 0.3, 7, 50)
    cfg = load_config(None, ["model.weights_backbone=null", "model.kwargs={nms_thresh: 0.1}"])
    with pytest.raises(
        ConfigError, match=r"^model.kwargs.nms_thresh: post-processing is set by eval.nms_iou$"
    ):
        build_model_from_config(cfg)


def test_checkpoint_config_applies_overrides_and_checks_the_stated_threshold() -> None:
    stored = config_to_dict(load_config(None, ["model.weights_backbone=imagenet"]))
    ckpt = {"config": stored, "metadata": {"operating_score_thr": 0.4}}
    cfg = checkpoint_config(ckpt, "w.pt", ["eval.scale=3"])
    assert cfg.eval.scale == 3 and cfg.model.weights_backbone is None  # the file holds every weight
    assert ckpt["config"] == stored  # the stored config is left as it is
    with pytest.raises(ConfigError, match=r"^w.onnx \+ overrides eval.scale=-1: "):
        checkpoint_config(ckpt, "w.onnx", ["eval.scale=-1"])
    ckpt["metadata"]["operating_score_thr"] = 2
    with pytest.raises(DataError, match="w.onnx: checkpoint metadata.operating_score_thr 2 is not a score"):
        checkpoint_config(ckpt, "w.onnx")


def test_unknown_backend_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(
        BafenetError, match=r"^unknown backend 'tensorrt'; choose one of: torch, onnxruntime$"
    ):
        load_trained_model(tmp_path / "w.pt", "cpu", backend="tensorrt")


def test_tiled_validation_under_torchrun_two_gloo_processes(tmp_path: Path) -> None:
    """Validation of a DDP-wrapped model with the tiles protocol (4 tiles of 64 px per frame)."""
    devkit = write_synthetic_devkit(tmp_path / "devkit", n=10, seed=3, sizes=((96, 80), (112, 96)))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29563",
        "-m",
        "bafenet",
        "train",
        *TINY_RECIPE,
        "data.repeat=2",
        f"data.root={devkit}",
        "train.epochs=1",
        "eval.protocol=tiles",
        "eval.tile_size=64",
        "eval.tile_overlap=16",
        "--project",
        str(tmp_path),
        "--name",
        "tiles",
        "--no-progress",
    ]
    out = subprocess.run(cmd, env=train_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "tiles" / "last.pt")
    assert ckpt["config"]["eval"]["protocol"] == "tiles"
    metrics = ckpt["metadata"]["metrics"]
    assert metrics["num_images"] == 2  # both ranks' validation images merged
