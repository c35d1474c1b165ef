"""Run folders: ``runs/NAME``, ``runs/NAME-2``, ... never overwriting an existing run.

Also the two clean-ups of a run folder: the temporary files that an interrupted atomic
write leaves (:func:`remove_stale_temp_files`) and the folder of a run that failed before
its first checkpoint (:func:`remove_failed_run`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bafenet.fileio import is_atomic_temp


def new_run_dir(base: str | Path, name: str) -> Path:
    """Create and return a fresh run folder ``base/name`` (or ``name-2``, ``name-3``, ...)."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    candidate = base / name
    n = 2
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            candidate = base / f"{name}-{n}"
            n += 1


def remove_stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Delete the atomic-write temporary files directly inside ``run_dir`` and return them.

    A killed process (SIGKILL, power loss) leaves them behind, e.g. ``.last.*.tmp.pt``. Call
    this only while no other process writes into ``run_dir``. Other files are never touched.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    stale = sorted(p for p in run_dir.iterdir() if p.is_file() and is_atomic_temp(p))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint (a ``*.pt`` file that is not a temporary one)."""
    return any(not is_atomic_temp(p) for p in Path(run_dir).glob("*.pt"))


def remove_failed_run(run_dir: str | Path) -> bool:
    """Delete the folder of a run that failed before writing any checkpoint.

    For the caller that created ``run_dir`` for this run: the config, logs and TensorBoard
    events of a run that produced no weights are worth nothing. A folder holding a
    checkpoint is left as it is. Returns whether the folder was removed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or has_checkpoint(run_dir):
        return False
    shutil.rmtree(run_dir)
    return True
