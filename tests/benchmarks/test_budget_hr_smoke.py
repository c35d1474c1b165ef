"""benchmarks/budget_hr.py --smoke: calibrate, train, evaluate, gate and tabulate end to end;
then resuming (finished runs skipped) and completing older records from their weights."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import budget_common as bc  # noqa: E402
import budget_hr  # noqa: E402

SKY_RUNS = ["fcos_seg_hr_ctx_s0", "bafenet_hr_ctx_s0", "fcos_seg_hr_ctx_scoring_s0"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The work folder of one ``--smoke`` run (one thread)."""
    work = tmp_path_factory.mktemp("budget") / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "budget_hr.py"), "--smoke", "--work", str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return work


def _records(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}


def test_smoke_runs_every_configuration_and_writes_the_tables(smoke: Path) -> None:
    records = _records(smoke / "results")
    assert sorted(records) == sorted(budget_hr.SMOKE_RUNS)
    for name, r in records.items():
        assert r["smoke"] is True and r["run"] == name and r["config"] == name.removesuffix("_s0")
        assert r["cpu_model"] == bc.cpu_model() and r["calibration"]["cpu_model"] == r["cpu_model"]
        calibration = r["calibration"]["ms"]
        assert calibration > 0 and r["calibration"]["threads"] == 2
        assert r["budget"]["reference_minutes"] == 40.0 and r["budget"]["calibration_ms"] == calibration
        assert r["budget"]["minutes"] == pytest.approx(40.0 * calibration / 638.0)
        assert r["images_seen"] == 6 and r["epochs_done"] == 1  # one epoch over the 6 training frames
        assert r["frame_1280x1024_s"] > 0
        assert {"mAP07", "mAP12", "strict_mAP07", bc.NEWER_METRIC} <= set(r["metrics"])
    assert "gate" not in records["fcos_hr_s0"]
    assert "sky_iou" not in records["fcos_hr_s0"]["metrics"]
    for name in SKY_RUNS:
        gate = records[name]["gate"]
        assert "sky_iou" in records[name]["metrics"]
        assert gate["threshold"] in bc.GATE_GRID
        assert sorted(gate["train_mAP07"]) == sorted(f"{t:g}" for t in bc.GATE_GRID)
        assert gate["chosen_on"].startswith("train_v2, every 4th frame (2 frames)")
        assert "mAP07" in gate["metrics"] and "strict_mAP07" in gate["metrics"]
        assert set(gate["by_frame_size"]) == set(records[name]["by_frame_size"])
        assert all("mAP07" in m for m in gate["by_frame_size"].values())
    text = (smoke / "results.md").read_text()
    assert "**Smoke run**" in text and f"## CPU: {bc.cpu_model()}" in text
    for config in ("fcos_seg_hr_ctx", "bafenet_hr_ctx", "fcos_seg_hr_ctx_scoring"):
        assert f"| {config} | " in text and f"| {config} + gate | post-hoc sky gate" in text
    assert "| fcos_hr | no sky branch | 40 min at 638 ms | 0 |" in text
    assert "| fcos_hr + gate" not in text
    assert sorted(json.loads((smoke / "results.json").read_text())) == sorted(records)


def test_finished_runs_are_skipped(smoke: Path) -> None:
    runs = [r for r in budget_hr.RUNS if r.name in budget_hr.SMOKE_RUNS]
    args = argparse.Namespace(data="/no/such/devkit", workers=1, smoke=True, by_images=True, device="cpu")
    budget = bc.Budget(1.0, {"ms": 1.0, "cpu_model": "unused"})
    before = _records(smoke / "results")
    records = bc.run_all(runs, args, smoke / "results", smoke, budget)  # would fail to train
    assert records == before


def test_complete_adds_missing_metrics_and_gate_from_the_weights(smoke: Path) -> None:
    results = smoke / "results"
    runs = [r for r in budget_hr.RUNS if r.name in budget_hr.SMOKE_RUNS]
    full = _records(results)
    stripped = dict(full["fcos_seg_hr_ctx_s0"])
    del stripped["gate"]
    stripped["metrics"] = {k: v for k, v in stripped["metrics"].items() if k != bc.NEWER_METRIC}
    (results / "fcos_seg_hr_ctx_s0.json").write_text(json.dumps(stripped))
    no_weights = {k: v for k, v in full["bafenet_hr_ctx_s0"].items() if k != "gate"}
    (results / "bafenet_hr_ctx_s0.json").write_text(json.dumps(no_weights))
    (smoke / "bafenet_hr_ctx_s0" / "last.pt").rename(smoke / "bafenet_hr_ctx_s0" / "moved.pt")

    bc.complete_records(runs, str(smoke / "devkit"), results, smoke)

    after = _records(results)
    completed = after["fcos_seg_hr_ctx_s0"]
    assert completed["metrics"][bc.NEWER_METRIC] == full["fcos_seg_hr_ctx_s0"]["metrics"][bc.NEWER_METRIC]
    assert completed["metrics_added"].startswith("re-evaluated last.pt")
    assert completed["gate"]["threshold"] == full["fcos_seg_hr_ctx_s0"]["gate"]["threshold"]
    assert completed["gate"]["train_mAP07"] == full["fcos_seg_hr_ctx_s0"]["gate"]["train_mAP07"]
    assert after["bafenet_hr_ctx_s0"] == no_weights  # no weights: left as it is
    assert after["fcos_hr_s0"] == full["fcos_hr_s0"]  # complete already
    assert after["fcos_seg_hr_ctx_scoring_s0"] == full["fcos_seg_hr_ctx_scoring_s0"]


def test_time_frames_times_every_configuration_in_one_window(smoke: Path) -> None:
    trained = next(r for r in budget_hr.RUNS if r.name == "fcos_hr_s0")
    untrained = bc.Run("no_weights_s0", "no run folder", ["model.name=fcos_hr"], config="no_weights")
    timing = bc.time_frames(
        [trained, untrained],
        "/unused",
        smoke,
        rounds=2,
        smoke_overrides=bc.SMOKE_OVERRIDES,
        calibration_reps=1,
    )
    configs = timing["configurations"]
    assert list(configs) == ["fcos_hr", "no_weights"] and timing["rounds"] == 2
    assert configs["fcos_hr"]["weights"] == str(smoke / "fcos_hr_s0" / "last.pt")
    assert configs["no_weights"]["weights"] == "untrained"
    for t in configs.values():
        assert 0 < t["min_s"] <= t["frame_1280x1024_s"] <= t["max_s"]
    assert timing["calibration"]["cpu_model"] == bc.cpu_model()
    lines = bc.frame_timing_lines(timing, "fcos_hr")
    row = next(line for line in lines if line.startswith("| fcos_hr |"))
    assert "| 1.00 | trained |" in row
    other = next(line for line in lines if line.startswith("| no_weights |"))
    ratio = configs["no_weights"]["frame_1280x1024_s"] / configs["fcos_hr"]["frame_1280x1024_s"]
    assert f"| {ratio:.2f} | untrained (same layers) |" in other
