"""Run folders: fresh names, stale temporary files, failed runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bafenet.engine.runs import (
    has_checkpoint,
    new_run_dir,
    remove_failed_run,
    remove_stale_temp_files,
)
from bafenet.fileio import atomic_path, is_atomic_temp


def test_new_run_dir_never_reuses_a_folder(tmp_path: Path) -> None:
    assert new_run_dir(tmp_path, "a") == tmp_path / "a"
    assert new_run_dir(tmp_path, "a") == tmp_path / "a-2"
    assert new_run_dir(tmp_path, "a") == tmp_path / "a-3"


@pytest.mark.parametrize("name", ["last.pt", "metrics.json", "epochs.csv", "config.yaml", "README"])
def test_the_temporary_files_of_atomic_path_are_recognised(tmp_path: Path, name: str) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / name) as tmp:
        tmp.write_bytes(b"half")
        assert is_atomic_temp(tmp)
        assert remove_stale_temp_files(tmp_path) == [tmp]  # as if the writer had been killed
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_only_temporary_files_are_removed(tmp_path: Path) -> None:
    keep = ["last.pt", ".hidden", "notes.tmp.txt", ".last.short.tmp.pt", "last.abcd1234.tmp.pt"]
    stale = [".last.k2j_9x0a.tmp.pt", ".metrics.abcdefgh.tmp.json", ".README.12345678.tmp"]
    for name in keep + stale:
        (tmp_path / name).write_text("x")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / ".events.abcdefgh.tmp.pt").write_text("x")  # not in the run folder itself
    assert [p.name for p in remove_stale_temp_files(tmp_path)] == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*keep, "tensorboard"])
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_a_failed_run_is_removed_unless_it_holds_a_checkpoint(tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    (failed / "tensorboard").mkdir(parents=True)
    (failed / "config.yaml").write_text("model: {}\n")
    (failed / ".last.abcdefgh.tmp.pt").write_bytes(b"torn")  # not a checkpoint
    assert not has_checkpoint(failed)
    assert remove_failed_run(failed) and not failed.exists()
    assert not remove_failed_run(failed)

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "config.yaml").write_text("model: {}\n")
    (kept / "best.pt").write_bytes(b"weights")
    assert has_checkpoint(kept) and not remove_failed_run(kept)
    assert sorted(p.name for p in kept.iterdir()) == ["best.pt", "config.yaml"]
