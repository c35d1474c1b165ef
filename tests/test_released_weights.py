"""The released checkpoints under weights/: card, hash, size, safe loading, and real detections."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

from bafenet.data import open_dataset
from bafenet.engine.evaluate import evaluate
from bafenet.engine.inference import EvalGeometry, load_trained_model

REPO = Path(__file__).resolve().parents[1]
RELEASED = sorted((REPO / "weights").glob("*.pt"))


@pytest.mark.skipif(not RELEASED, reason="no released checkpoint in weights/")
@pytest.mark.parametrize("path", RELEASED, ids=lambda p: p.name)
def test_release_file_matches_its_card(path: Path) -> None:
    card = path.with_suffix(".md").read_text()
    match = re.search(r"sha256: `([0-9a-f]{64})`", card)
    assert match, "the model card states the sha256"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == match.group(1)
    assert path.stat().st_size <= 25e6
    model, cfg, ckpt = load_trained_model(path, torch.device("cpu"))  # torch.load(weights_only=True)
    assert ckpt["model_name"] in card and cfg.data.root is None


@pytest.mark.skipif(not RELEASED, reason="no released checkpoint in weights/")
@pytest.mark.parametrize("path", RELEASED, ids=lambda p: p.name)
def test_release_detects_real_targets(path: Path, real_devkit: Path) -> None:
    """On the first 24 val_v2 images (never trained on) the release finds most targets."""
    model, cfg, _ = load_trained_model(path, torch.device("cpu"))
    dataset = open_dataset(real_devkit, "val_v2")
    subset = torch.utils.data.Subset(dataset, range(24))
    metrics, _ = evaluate(
        model, subset, EvalGeometry.from_config(cfg), cfg.eval, torch.device("cpu"), progress=False
    )
    assert metrics["num_images"] == 24
    assert metrics["recall"] > 0.6 and metrics["mAP07"] > 0.35, metrics
