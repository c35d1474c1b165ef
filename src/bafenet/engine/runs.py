"""Run folders: ``runs/NAME``, ``runs/NAME-2``, ... never overwriting an existing run."""

from __future__ import annotations

from pathlib import Path


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
