"""Shared fixtures: the real DenseSIRST devkit (skipped when absent) and small synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny tensors run much faster on one thread, and the suite shares two cores.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
REAL_DEVKIT = Path(
    os.environ.get("BAFENET_TEST_DEVKIT", REPO.parent / "shared" / "data" / "DenseSIRST" / "SIRSTdevkit")
)


@pytest.fixture(scope="session")
def real_devkit() -> Path:
    """The real DenseSIRST devkit (trainval_v2 part), or skip when it is not on this machine."""
    if not (REAL_DEVKIT / "PNGImages").is_dir():
        pytest.skip(f"real DenseSIRST devkit not found at {REAL_DEVKIT} (set BAFENET_TEST_DEVKIT)")
    return REAL_DEVKIT
