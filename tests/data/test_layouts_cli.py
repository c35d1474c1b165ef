"""``bafenet val`` and ``bafenet train`` on the published layouts as they are (no copying or renaming),
invalid samples refused or left out (and recorded), and the group counts of every per-group line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import layout_replicas
import pytest
import torch
from layout_replicas import BAD_FRAME, write_irstd1k, write_sirst_v1, write_sirst_v2

from bafenet.cli import main
from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import config_to_dict, load_config
from bafenet.engine.checkpoint import save_checkpoint
from bafenet.engine.evaluate import FEW_TARGETS_KEY, MIN_GROUP_TARGETS, group_counts
from bafenet.engine.setup import build_model_from_config

# a small randomly initialised network: each image takes a fraction of a second
TINY_MODEL = [
    "model.name=fcos_r18",
    "model.weights_backbone=null",
    "model.kwargs.channels=32",
    "model.kwargs.tower_depth=1",
    "model.kwargs.backbone_width=16",
    "data.input.size=64",
    "data.workers=0",
    "eval.score_thr=0.005",
]


@pytest.fixture
def real_sirst_v1() -> Path:
    return layout_replicas.real_sirst_v1()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(PACKAGED_CONFIGS / "fcos_r50.yaml", TINY_MODEL)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    return save_checkpoint(path, build_model_from_config(cfg), cfg.model.name, config_to_dict(cfg))


def _val(weights: Path, out: Path, *args: str) -> int:
    return main(["val", "--weights", str(weights), "--out", str(out), "--device", "cpu", *args])


def test_val_on_sirst_v2_as_published(weights: Path, tmp_path: Path, capsys) -> None:
    root = write_sirst_v2(tmp_path / "sirst_v2")
    assert _val(weights, tmp_path / "out", "--data", str(root), "--split", "trainval_full") == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["num_images"], metrics["num_gt"], metrics["skipped_samples"]) == (3, 3, [])
    small = metrics["by_frame_size"]["small"]
    assert (small["num_images"], small["num_gt"], small[FEW_TARGETS_KEY]) == (3, 3, True)
    assert "small frames (long side <= 640 px): 3 images, 3 targets (fewer than 20 targets): mAP07 " in out


def test_val_with_image_and_mask_folders(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_irstd1k(tmp_path / "mine")
    (root / "IRSTD1k_Img").rename(root / "frames")
    (root / "IRSTD1k_Label").rename(root / "truth")
    monkeypatch.chdir(root)  # folders and split list named from the cwd, no --data
    args = ("--images", "frames", "--masks", "truth", "--split", "trainval.txt")
    assert _val(weights, tmp_path / "out", *args) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["num_images"], metrics["num_gt"]) == (3, 3)


def test_val_refuses_or_leaves_out_an_invalid_sample(weights: Path, tmp_path: Path, capsys) -> None:
    root = write_sirst_v1(tmp_path / "sirst_v1")
    split = tmp_path / "three.txt"  # a split list kept outside the dataset folder
    split.write_text(f"Misc_1\n{BAD_FRAME}\nMisc_2")
    assert _val(weights, tmp_path / "refused", "--data", str(root), "--split", str(split)) == 1
    err = capsys.readouterr().err
    assert f"bafenet: error: {root}/masks/{BAD_FRAME}_pixels0.png: size 60x50 differs" in err
    assert (
        f"1 invalid sample(s) in split '{split}': {BAD_FRAME}; leave invalid samples out with --skip-invalid"
        in err
    )
    assert not (tmp_path / "refused").exists()
    with pytest.warns(UserWarning, match="left out 1 invalid sample"):
        code = _val(weights, tmp_path / "out", "--data", str(root), "--split", str(split), "--skip-invalid")
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["num_images"] == 2
    assert metrics["skipped_samples"] == [
        f"{root}/masks/{BAD_FRAME}_pixels0.png: size 60x50 differs from the image's 48x40"
    ]
    assert "left out 1 invalid sample(s): " in capsys.readouterr().out


def test_val_on_the_real_sirst_v1(weights: Path, real_sirst_v1: Path, tmp_path: Path) -> None:
    split = tmp_path / "few.txt"  # four images of idx_427/test, Misc_111 among them
    split.write_text("Misc_70\nMisc_111\nMisc_214\nMisc_96")
    args = ("--data", str(real_sirst_v1), "--split", str(split), "--skip-invalid")
    with pytest.warns(UserWarning, match="left out 1 invalid sample"):
        assert _val(weights, tmp_path / "out", *args) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["num_images"] == 3 and len(metrics["skipped_samples"]) == 1
    assert metrics["skipped_samples"][0].startswith(
        f"{real_sirst_v1}/masks/Misc_111_pixels0.png: size 592x400"
    )


def test_train_records_what_it_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_sirst_v1(tmp_path / "sirst_v1")
    (root / "idx_427" / "train_all.txt").write_text(f"Misc_1\n{BAD_FRAME}\nMisc_2")
    monkeypatch.chdir(tmp_path)
    args = [
        "train",
        "fcos_r50",
        *TINY_MODEL,
        "data.train_split=idx_427/train_all",
        "data.val_split=idx_427/val",
    ]
    args += ["train.epochs=1", "train.device=cpu", "data.repeat=1", "data.bagcp.enabled=false"]
    assert main([*args, "--data", str(root), "--name", "refused", "--no-progress"]) == 1
    assert not (tmp_path / "runs" / "refused").exists()
    with pytest.warns(UserWarning, match="left out 1 invalid sample"):
        code = main([*args, "--data", str(root), "--name", "run", "--no-progress", "--skip-invalid"])
    assert code == 0
    summary = json.loads((tmp_path / "runs" / "run" / "summary.json").read_text())
    assert summary["skipped_samples"] == {
        "train": [f"{root}/masks/{BAD_FRAME}_pixels0.png: size 60x50 differs from the image's 48x40"],
        "val": [],
    }


def test_group_counts_mark_small_groups() -> None:
    assert group_counts({"num_images": 1, "num_gt": 1}) == "1 image, 1 target (fewer than 20 targets)"
    assert group_counts({"num_images": 12, "num_gt": MIN_GROUP_TARGETS}) == "12 images, 20 targets"


def test_the_console_script_prints_a_warning_as_one_line(weights: Path, tmp_path: Path) -> None:
    root = write_sirst_v1(tmp_path / "sirst_v1")
    split = tmp_path / "two.txt"
    split.write_text(f"Misc_1\n{BAD_FRAME}")
    command = [sys.executable, "-m", "bafenet", "val", "--weights", str(weights), "--data", str(root)]
    command += ["--split", str(split), "--skip-invalid", "--out", str(tmp_path / "out"), "--device", "cpu"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    warning = [line for line in out.stderr.splitlines() if "left out 1 invalid sample" in line]
    assert warning == [
        f"bafenet: warning: left out 1 invalid sample(s) of split '{split}' ({BAD_FRAME}):"
        f" {root}/masks/{BAD_FRAME}_pixels0.png: size 60x50 differs from the image's 48x40"
    ]
    assert "UserWarning" not in out.stderr and "screen_samples" not in out.stderr


def test_data_stats_reads_the_published_layouts(tmp_path: Path, capsys) -> None:
    root = write_irstd1k(tmp_path / "irstd1k")
    assert main(["data", "stats", str(root), "--layout", "irstd1k"]) == 0
    by_layout = capsys.readouterr().out
    images, masks = root / "IRSTD1k_Img", root / "IRSTD1k_Label"
    assert main(["data", "stats", "--images", str(images), "--masks", str(masks)]) == 0
    by_folders = capsys.readouterr().out
    assert "targets" in by_layout and by_layout == by_folders
