"""Exceptions that the command line turns into one clear message and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class BafenetError(Exception):
    """A problem the user can fix (bad input, missing file, bad option)."""


class DataError(BafenetError):
    """A data file is missing, unreadable or inconsistent.

    The message always names the offending file.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type[DataError], tuple[Path, str]]:
        # rebuilt from both arguments, so it crosses process boundaries (multiprocessing pools)
        return (type(self), (self.path, self.problem))
