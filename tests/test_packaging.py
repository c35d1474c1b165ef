"""The training recipes ship inside the package: ``bafenet train NAME`` works without a checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bafenet.cli.train import PACKAGED_CONFIGS, resolve_config
from bafenet.errors import BafenetError

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.name for p in PACKAGED_CONFIGS.glob("*.yaml"))


def test_every_recipe_resolves_to_the_packaged_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./configs here
    assert {"bafenet_r18.yaml", "bafenet_hr.yaml", "bafenet_r18_cpu.yaml"} <= set(RECIPES)
    for name in RECIPES:
        assert resolve_config(name.removesuffix(".yaml")) == PACKAGED_CONFIGS / name
        assert resolve_config(name) == PACKAGED_CONFIGS / name
    with pytest.raises(BafenetError, match="config 'nope' not found .*bafenet_hr, bafenet_r18"):
        resolve_config("nope")


def test_the_users_own_configs_folder_comes_first(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "bafenet_r18.yaml").write_text("train: {epochs: 2}\n")
    assert resolve_config("bafenet_r18") == Path("configs") / "bafenet_r18.yaml"
    assert resolve_config("bafenet_hr") == PACKAGED_CONFIGS / "bafenet_hr.yaml"


def test_wheel_holds_the_recipes_and_train_finds_them_there(tmp_path: Path) -> None:
    """Build a wheel offline from a copy of the project, unpack it, run ``bafenet train`` from it."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "dist"), str(project)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("bafenet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "installed")
        names = set(archive.namelist())
    assert {f"bafenet/configs/{name}" for name in RECIPES} <= names

    # the unpacked wheel, run from a folder without configs/: the recipe is found inside it
    # (train.epochs=0 stops at the config check, after the recipe was found and read)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "installed")}
    run = subprocess.run(
        [sys.executable, "-m", "bafenet", "train", "bafenet_r18", "train.epochs=0"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    recipe = tmp_path / "installed" / "bafenet" / "configs" / "bafenet_r18.yaml"
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"bafenet: error: {recipe} + overrides train.epochs=0: "), run.stderr
    assert "train.epochs must be >= 1" in run.stderr
    assert not (work / "runs").exists()
