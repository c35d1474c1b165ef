"""scripts/release_weights.py: a run's checkpoint -> weights-only release file + model card."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

from bafenet.config import config_to_dict, load_config
from bafenet.engine.checkpoint import load_checkpoint, load_weights, save_checkpoint
from bafenet.engine.setup import build_model_from_config

REPO = Path(__file__).resolve().parents[2]


def test_release_round_trip_and_card(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "bafenet_hr.yaml", ["data.root=/some/machine/path"])
    torch.manual_seed(0)
    model = build_model_from_config(cfg)
    optimizer = torch.optim.AdamW(model.parameters())
    run = tmp_path / "run"
    save_checkpoint(run / "last.pt", model, cfg.model.name, config_to_dict(cfg), optimizer=optimizer, epoch=7)
    record = {
        "overrides": ["model.weights_backbone=null", "train.max_time_minutes=40"],
        "base_config": "bafenet_hr.yaml",
        "minutes": 40,
        "seed": 0,
        "images_seen": 1000,
        "images_per_s": 6.5,
        "epochs_done": 7,
        "frame_1280x1024_s": 1.1,
        "metrics": {"mAP07": 0.25, "recall": 0.5},
        "by_frame_size": {"small": {"mAP07": 0.3, "recall": 0.6, "num_images": 3}},
    }
    (tmp_path / "record.json").write_text(json.dumps(record))
    out = tmp_path / "weights"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "release_weights.py"), str(run / "last.pt"),
         "--results", str(tmp_path / "record.json"), "--name", "hr_test", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    released = out / "hr_test.pt"
    ckpt = load_checkpoint(released, expected_model="bafenet_hr")  # weights_only=True inside
    assert ckpt["optimizer"] is None and ckpt["config"]["data"]["root"] is None
    fresh = build_model_from_config(cfg)
    load_weights(fresh, ckpt)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    card = (out / "hr_test.md").read_text()
    assert hashlib.sha256(released.read_bytes()).hexdigest() in card
    assert "| mAP07 | 0.2500 |" in card and "bafenet val --weights weights/hr_test.pt" in card
