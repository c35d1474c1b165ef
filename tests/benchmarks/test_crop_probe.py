"""benchmarks/crop_probe.py: sky / ground counts of crops against their frames."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bafenet.config import load_config, save_config
from bafenet.data.synthetic import write_synthetic_devkit

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import crop_probe as probe  # noqa: E402


def test_sky_counts_leave_ignored_pixels_out() -> None:
    mask = np.array([[1, 1, 0], [0, 255, 255]], dtype=np.uint8)
    assert probe.sky_counts(mask).tolist() == [2.0, 2.0]


def test_summary_of_hand_counts() -> None:
    # frames: half sky; crops: 90 % sky, one of two crops mostly ground
    s = probe.summary(np.array([50.0, 50.0, 1.0]), np.array([90.0, 10.0, 1.0, 2.0]))
    assert s["frames"] == 1 and s["crops"] == 2
    assert s["frame_sky_share"] == 0.5
    assert s["crop_sky_share"] == pytest.approx(0.9)
    assert s["mostly_ground_crops"] == 0.5
    assert s["ground_rate"] == pytest.approx((10 / 50) / (90 / 50))
    empty = probe.summary(np.array([50.0, 50.0, 1.0]), np.zeros(4))
    assert empty["crops"] == 0 and empty["crop_sky_share"] is None and empty["ground_rate"] is None


def test_probe_end_to_end_on_a_synthetic_devkit(tmp_path: Path) -> None:
    devkit = write_synthetic_devkit(tmp_path / "devkit", n=12, seed=5, sizes=((96, 80), (720, 120)))
    cfg = load_config(
        None,
        [
            f"data.root={devkit}",
            "data.train_split=train",
            "data.input.mode=native",
            "data.input.scale=2.0",
            "data.input.crop_size=48",
            "data.cache=false",
        ],
    )
    save_config(cfg, tmp_path / "work" / "run" / "config.yaml")
    out = tmp_path / "results"
    sys.argv = ["crop_probe.py", "run", "--work", str(tmp_path / "work"), "--items", "9", "--out", str(out)]
    sys.argv += ["--background-crop-prob", "0.0", "1.0"]
    probe.main()

    record = json.loads((out / "crop_probe.json").read_text())
    assert record["split"] == "train" and record["items"] == 9
    for parts in record["by_background_crop_prob"].values():
        assert set(parts) == {"small", "large"}
        assert sum(p["crops"] for p in parts.values()) == 9
        assert sum(p["frames"] for p in parts.values()) == 9  # the train split of 12
        for p in parts.values():
            assert 0.0 <= p["frame_sky_share"] <= 1.0
    # crops cut around targets (which sit in the sky) show the ground less than crops anywhere
    near, anywhere = (record["by_background_crop_prob"][p]["large"] for p in ("0.0", "1.0"))
    assert near["crop_sky_share"] > anywhere["crop_sky_share"]
    assert "| 1.0 | large" in (out / "crop_probe.md").read_text()
