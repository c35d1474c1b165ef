"""The user-facing exceptions."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from bafenet.errors import DataError


def _raise_data_error(path: str) -> None:
    raise DataError(path, "broken header")


def test_data_error_survives_pickling_with_its_file_and_problem() -> None:
    error = pickle.loads(pickle.dumps(DataError("frames/a.png", "broken header")))
    assert isinstance(error, DataError)
    assert (error.path, error.problem, str(error)) == (
        Path("frames/a.png"),
        "broken header",
        "frames/a.png: broken header",
    )


def test_data_error_comes_back_from_a_worker_process() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_raise_data_error, "frames/b.png")
        with pytest.raises(DataError, match=r"^frames/b\.png: broken header$"):
            future.result()
