"""End-to-end training at tiny size: a run, one-line errors, 2-process gloo torchrun.

Exact resume after SIGKILL is in test_crash_safety.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_training import TINY_RECIPE, train_env

from bafenet.cli import main
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[2]

TINY = [*TINY_RECIPE, "data.repeat=2"]


@pytest.fixture(scope="module")
def tiny_devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "devkit"
    return write_synthetic_devkit(root, n=10, seed=3, sizes=((96, 80), (112, 96)))


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


def test_train_writes_run_folder(tiny_devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = subprocess.run(
        _train_cmd(tiny_devkit, tmp_path, "a", "train.epochs=1"),
        env=train_env(),
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
    assert ckpt["metadata"]["budget_seconds"] > 0  # a resumed run continues this budget
    assert ckpt["metadata"]["metrics"]["num_images"] == 2 and ckpt["metadata"]["metrics"]["num_gt"] > 0
    # best.pt holds weights only: it cannot continue the run
    assert main(["train", "--resume", str(run / "best.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run / 'best.pt'}: holds weights only" in err
    # a second run with the same name never overwrites the first
    out = subprocess.run(
        _train_cmd(tiny_devkit, tmp_path, "a", "train.epochs=1", "train.max_time_minutes=0.001"),
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "a-2" / "last.pt").is_file()


def test_an_image_budget_stops_at_the_step_that_reaches_it(tiny_devkit: Path, tmp_path: Path) -> None:
    # batch 2: the budget of 7 images is reached by the 4th step (8 images), in the first epoch
    out = subprocess.run(
        _train_cmd(
            tiny_devkit, tmp_path, "img", "train.epochs=5", "train.batch_size=2", "train.max_images=7"
        ),
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "img" / "summary.json").read_text())
    assert summary["images_seen"] == 8 and summary["stopped_by_budget"] and summary["epochs_done"] == 1
    assert "mAP07" in summary["last_metrics"]  # the final weights were validated


def test_unknown_override_is_a_clear_error(tiny_devkit: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        _train_cmd(tiny_devkit, tmp_path, "b", "train.epochz=1"),
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "epochz" in out.stderr and "epochs" in out.stderr and "Traceback" not in out.stderr


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
    out = subprocess.run(cmd, env=train_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "ddp"
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    assert not (tmp_path / "ddp-2").exists(), "only rank 0 creates the run folder"
    metrics = load_checkpoint(run / "last.pt")["metadata"]["metrics"]
    assert metrics["num_images"] == 2  # both ranks' validation images merged


def test_resume_refuses_weights_only_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    export = save_checkpoint(tmp_path / "export.pt", torch.nn.Linear(2, 1), "fcos_hr", {}, half=True)
    for weights in [export, *sorted((REPO / "weights").glob("*.pt"))]:  # and the released files
        assert main(["train", "--resume", str(weights)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith(f"bafenet: error: {weights}: holds weights only") and "new run" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.pt"]


@pytest.mark.parametrize("workers", [0, 1])
def test_bad_training_file_is_one_line_and_leaves_no_run(
    tiny_devkit: Path, tmp_path: Path, workers: int
) -> None:
    devkit = shutil.copytree(tiny_devkit, tmp_path / "devkit")
    image_id = (devkit / "Splits" / "train.txt").read_text().split()[0]
    png = devkit / "PNGImages" / f"{image_id}.png"
    png.write_bytes(png.read_bytes()[:200])  # truncated: the header reads, the pixels do not
    project = tmp_path / "runs"
    cmd = _train_cmd(devkit, project, "bad", "train.epochs=1", f"data.workers={workers}")
    out = subprocess.run(cmd, env=train_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert out.stderr.startswith(f"bafenet: error: {png}: ") and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr and "worker" not in out.stderr
    # the run folder made by this failed call (config.yaml, TensorBoard events) is gone
    assert "run folder:" in out.stdout and list(project.iterdir()) == []


def test_init_weights_fine_tunes_from_a_checkpoint(
    tiny_devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from bafenet.cli.train import resolve_config
    from bafenet.config import config_to_dict, load_config
    from bafenet.engine.setup import build_model_from_config
    from bafenet.engine.trainer import Trainer

    cfg = load_config(resolve_config(TINY[0]), [*TINY[1:], f"data.root={tiny_devkit}"])
    torch.manual_seed(123)  # not the trainer's seed: other weights than a fresh model's
    source = build_model_from_config(cfg)
    released = save_checkpoint(tmp_path / "released.pt", source, "fcos_r18", config_to_dict(cfg))
    cfg.model.init_weights = str(released)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.logger.close()
    expected = source.state_dict()
    got = trainer.model.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    # a checkpoint of another model: one line naming the file, no run folder left
    other = save_checkpoint(tmp_path / "other.pt", source, "fcos_r50", config_to_dict(cfg))
    argv = ["train", *TINY, f"data.root={tiny_devkit}", "--init-weights", str(other)]
    assert main([*argv, "--project", str(tmp_path / "runs"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(other) in err and "fcos_r50" in err
    assert not any((tmp_path / "runs").glob("*/last.pt"))
