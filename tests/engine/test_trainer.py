"""End-to-end training at tiny size: a run, exact resume after SIGKILL, 2-process gloo torchrun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.checkpoint import load_checkpoint

TINY = [
    "fcos_r50",
    "model.name=fcos_r18",
    "model.weights_backbone=null",
    "data.train_split=train",
    "data.val_split=val",
    "eval.split=val",
    "data.input.size=64",
    "data.repeat=2",
    "data.workers=0",
    "train.device=cpu",
    "train.optimizer=adamw",
    "train.lr=0.0005",
    "train.warmup_iters=2",
    "train.milestones=[2]",
]


@pytest.fixture(scope="module")
def tiny_devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "devkit"
    return write_synthetic_devkit(root, n=10, seed=3, sizes=((96, 80), (112, 96)))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONHASHSEED"] = "0"
    return env


def _train_cmd(devkit: Path, project: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bafenet",
        "train",
        *TINY,
        f"data.root={devkit}",
        "--project",
        str(project),
        "--name",
        name,
        "--no-progress",
        *extra,
    ]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_train_writes_run_folder(tiny_devkit: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        _train_cmd(tiny_devkit, tmp_path, "a", "train.epochs=1"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    run = tmp_path / "a"
    for name in ("config.yaml", "last.pt", "best.pt", "epochs.csv", "summary.json"):
        assert (run / name).is_file(), name
    assert "images/s" in out.stdout and "waiting for data" in out.stdout
    ckpt = load_checkpoint(run / "best.pt", expected_model="fcos_r18")
    assert ckpt["epoch"] == 1 and "mAP07" in ckpt["metadata"]["metrics"]
    assert ckpt["metadata"]["metrics"]["num_images"] == 2 and ckpt["metadata"]["metrics"]["num_gt"] > 0
    # a second run with the same name never overwrites the first
    out = subprocess.run(
        _train_cmd(tiny_devkit, tmp_path, "a", "train.epochs=1", "train.max_time_minutes=0.001"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "a-2" / "last.pt").is_file()


def test_unknown_override_is_a_clear_error(tiny_devkit: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        _train_cmd(tiny_devkit, tmp_path, "b", "train.epochz=1"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "epochz" in out.stderr and "epochs" in out.stderr and "Traceback" not in out.stderr


def test_resume_after_sigkill_matches_uninterrupted_run(tiny_devkit: Path, tmp_path: Path) -> None:
    epochs = ["train.epochs=3"]
    ref = subprocess.run(
        _train_cmd(tiny_devkit, tmp_path, "ref", *epochs),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ref.returncode == 0, ref.stderr[-2000:]

    proc = subprocess.Popen(
        _train_cmd(tiny_devkit, tmp_path, "cut", *epochs),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = tmp_path / "cut" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last.exists(), "the first epoch never finished"
    time.sleep(0.5)  # well into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(last)["epoch"] < 3, "the run ended before it could be killed"

    resumed = subprocess.run(
        [sys.executable, "-m", "bafenet", "train", "--resume", str(last), "--no-progress"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _weights(tmp_path / "ref" / "last.pt"), _weights(last)
    assert load_checkpoint(last)["epoch"] == 3
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_torchrun_two_gloo_processes(tiny_devkit: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29561",
        "-m",
        "bafenet",
        "train",
        *TINY,
        f"data.root={tiny_devkit}",
        "train.epochs=1",
        "--project",
        str(tmp_path),
        "--name",
        "ddp",
        "--no-progress",
    ]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "ddp"
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    assert not (tmp_path / "ddp-2").exists(), "only rank 0 creates the run folder"
    metrics = load_checkpoint(run / "last.pt")["metadata"]["metrics"]
    assert metrics["num_images"] == 2  # both ranks' validation images merged


def test_time_milestones_decay_the_lr_after_their_share_of_the_budget() -> None:
    from bafenet.config import ConfigError, load_config
    from bafenet.engine.trainer import _budget_step

    cfg = load_config(
        None, ["train.max_time_minutes=10", "train.time_milestones=[0.5, 0.9]", "train.gamma=0.1"]
    )
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    now = time.monotonic()
    assert _budget_step(optimizer, cfg, 600.0, now) < 0.01
    assert optimizer.param_groups[0]["lr"] == 1.0
    used = _budget_step(optimizer, cfg, 600.0, now - 360.0)  # 60 % of the budget used
    assert 0.6 <= used < 0.61 and optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    optimizer.param_groups[0]["lr"] = 1.0  # what the epoch scheduler sets at each step
    assert _budget_step(optimizer, cfg, 600.0, now - 580.0) < 1.0
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    assert _budget_step(optimizer, cfg, None, now) == 0.0
    with pytest.raises(ConfigError, match="time_milestones need"):
        load_config(None, ["train.time_milestones=[0.8]"])
    with pytest.raises(ConfigError, match="fractions"):
        load_config(None, ["train.max_time_minutes=1", "train.time_milestones=[1.5]"])
