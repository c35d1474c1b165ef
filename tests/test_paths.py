"""Data-root lookup: the explicit folder, then $BAFENET_DATA, then the cache dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from bafenet.errors import BafenetError
from bafenet.paths import ENV_VAR, cache_dir, find_devkit, resolve_data_root


def _devkit(folder: Path) -> Path:
    (folder / "PNGImages").mkdir(parents=True)
    return folder


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: no $BAFENET_DATA, the cache dir under tmp_path."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_cache_dir_follows_xdg_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "bafenet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "bafenet"


def test_find_devkit_layouts(tmp_path: Path) -> None:
    devkit = _devkit(tmp_path / "a" / "DenseSIRST" / "SIRSTdevkit")
    assert find_devkit(devkit) == devkit
    assert find_devkit(devkit.parent) == devkit
    assert find_devkit(tmp_path / "a") == devkit  # the layout 'bafenet data download' writes
    maskset = tmp_path / "irstd"
    (maskset / "images").mkdir(parents=True)
    (maskset / "masks").mkdir()
    assert find_devkit(maskset) == maskset
    assert find_devkit(tmp_path / "nothing") is None


def test_lookup_order(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = _devkit(env / "explicit")
    from_env = _devkit(env / "env" / "SIRSTdevkit")
    cached = _devkit(env / "xdg" / "bafenet" / "DenseSIRST" / "SIRSTdevkit")
    monkeypatch.setenv(ENV_VAR, str(env / "env"))
    assert resolve_data_root(explicit) == explicit  # 1. --data / ROOT wins
    assert resolve_data_root(str(explicit)) == explicit
    assert resolve_data_root(None) == from_env  # 2. $BAFENET_DATA
    monkeypatch.setenv(ENV_VAR, str(env / "empty"))
    assert resolve_data_root(None) == cached  # 3. the cache dir (an unusable $BAFENET_DATA is skipped)
    monkeypatch.delenv(ENV_VAR)
    assert resolve_data_root(None) == cached


def test_explicit_folder_without_data_is_an_error(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _devkit(env / "xdg" / "bafenet" / "DenseSIRST" / "SIRSTdevkit")
    with pytest.raises(BafenetError, match="no dataset found there") as info:
        resolve_data_root(env / "wrong")  # no silent fallback to the cache
    assert str(env / "wrong") in str(info.value)


def test_no_dataset_anywhere_names_the_three_ways(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(env / "empty"))
    with pytest.raises(BafenetError) as info:
        resolve_data_root(None)
    message = str(info.value)
    assert "--data" in message
    assert f"${ENV_VAR}" in message
    assert "bafenet data download densesirst" in message
    assert str(env / "xdg" / "bafenet") in message
