"""benchmarks/sirst_v1.py: Pd by target size on a hand-built case, and a --smoke run of both
recipes (fine-tuning from the released weights, the operating point chosen on val, tables)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import sirst_v1  # noqa: E402
from bafenet.engine.evaluate import Prediction  # noqa: E402

SMOKE_RUNS = ["scratch_val", "finetune_val", "scratch_s0", "finetune_s0"]


def test_pd_by_target_size_counts_each_group_at_the_threshold() -> None:
    gt = np.array([[10, 10, 13, 13], [30, 30, 36, 34], [50, 50, 62, 55]], np.float32)  # sides 3, 6, 12
    found_two = Prediction(
        "a",
        boxes=np.array([[10, 10, 13, 13], [50, 50, 62, 55], [31, 31, 35, 33]], np.float32),
        scores=np.array([0.9, 0.6, 0.2], np.float32),  # the 6-px target only below 0.5
        gt_boxes=gt,
        image_size=(80, 80),
    )
    empty = Prediction("b", np.zeros((0, 4), np.float32), np.zeros(0, np.float32), gt[:1], (80, 80))
    groups = sirst_v1.pd_by_target_size([found_two, empty], score_thr=0.5)
    assert groups == {
        "<= 4 px": {"targets": 2, "found": 1, "pd": 0.5},
        "5-9 px": {"targets": 1, "found": 0, "pd": 0.0},
        ">= 10 px": {"targets": 1, "found": 1, "pd": 1.0},
    }
    assert sirst_v1.pd_by_target_size([found_two], score_thr=0.1)["5-9 px"]["found"] == 1


def test_smoke_runs_both_recipes_and_reports_the_operating_point(tmp_path: Path) -> None:
    work = tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    script = str(REPO / "benchmarks" / "sirst_v1.py")
    out = subprocess.run(
        [sys.executable, script, "--smoke", "--work", str(work), "--runs", *SMOKE_RUNS],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = {p.stem: json.loads(p.read_text()) for p in (work / "results").glob("*.json")}
    source = records.pop(sirst_v1.SOURCE)  # fine-tuning started from it, trained first
    assert source["dropped"] == {"train_v2": 0, "val_v2": 0}  # no SIRST v1 frame in the smoke devkit
    assert (work / sirst_v1.SOURCE / "last.pt").is_file() and source["images_seen"] > 0
    assert sorted(records) == sorted(SMOKE_RUNS)
    for name, record in records.items():
        finetuned = name.startswith("finetune")
        init = f"model.init_weights={work / sirst_v1.SOURCE / 'last.pt'}"
        assert (init in record["overrides"]) == finetuned
        assert record["budget"]["reference_minutes"] == 20.0 and record["epochs_done"] == 1
    for recipe in ("scratch", "finetune"):
        chosen = records[f"{recipe}_val"]["metrics"].get("best_f1_score_thr")
        operating = records[f"{recipe}_s0"].get("operating")
        if chosen is None:  # a smoke model may find nothing on val: no operating point then
            assert operating is None
            continue
        assert operating["score_thr"] == chosen
        assert set(operating["pd_at_fa"]) == set(sirst_v1.FIXED_FA)
        assert (
            sum(g["targets"] for g in operating["pd_by_size"].values())
            == records[f"{recipe}_s0"]["metrics"]["num_gt"]
        )
    table = (work / "results").with_suffix(".md").read_text()
    assert "## trainval -> test" in table and "| scratch: random initialisation |" in table
    assert "finetune: fine-tuned from a DenseSIRST model that never saw the test frames" in table
    assert f"Source of the fine-tuned recipe ({sirst_v1.SOURCE})" in table
    assert "DRPCA-Net" in table  # the published numbers beside ours
