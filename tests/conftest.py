"""Shared fixtures: the real DenseSIRST devkit (skipped when absent) and small synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# Tiny tensors run much faster on one thread, and the suite shares two cores.
torch.set_num_threads(1)

# Property tests never depend on machine speed: no per-example deadline, and no failure when
# generating examples is slow on a busy machine (hypothesis's "too_slow" health check).
settings.register_profile("bafenet", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("bafenet")

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
