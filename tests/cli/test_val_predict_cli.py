"""``bafenet val`` and ``bafenet predict`` on a tiny synthetic devkit: geometry flags, outputs, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bafenet.cli import main
from bafenet.config import config_to_dict, load_config
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.checkpoint import load_checkpoint, save_checkpoint
from bafenet.engine.setup import build_model_from_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("valcli") / "devkit"
    return write_synthetic_devkit(root, n=10, seed=5, sizes=((96, 80), (120, 100)))


@pytest.fixture(scope="module")
def weights(devkit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained bafenet_hr checkpoint whose low score threshold still yields detections."""
    cfg = load_config(
        REPO / "configs" / "bafenet_hr.yaml",
        [f"data.root={devkit}", "eval.split=val", "eval.score_thr=0.005", "eval.amp=false"],
    )
    torch.manual_seed(0)
    model = build_model_from_config(cfg)
    path = tmp_path_factory.mktemp("weights") / "hr.pt"
    return save_checkpoint(path, model, cfg.model.name, config_to_dict(cfg))


def _val(weights: Path, devkit: Path, out: Path, *flags: str) -> dict:
    code = main(["val", "--weights", str(weights), "--data", str(devkit), "--out", str(out), *flags])
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


DETECTION_KEYS = (
    "mAP07", "mAP12", "recall", "strict_mAP07", "num_pred", "irstd_fa_per_mpix",
    "best_f1", "best_f1_score_thr", "irstd_pd_at_best_f1",
)  # fmt: skip


def test_val_outputs_and_batch_size_independence(weights: Path, devkit: Path, tmp_path: Path) -> None:
    one = _val(weights, devkit, tmp_path / "b1", "--batch-size", "1")
    three = _val(weights, devkit, tmp_path / "b3", "--batch-size", "3")
    for name in ("metrics.json", "per_image.json", "predictions.json", "pr_curve.png", "pd_fa_curve.png"):
        assert (tmp_path / "b1" / name).is_file(), name
    assert one["num_pred"] > 0 and one["protocol"] == "native"
    # the F1-best operating point lies on the ranked list, above the eval score threshold
    assert one["best_f1_score_thr"] >= 0.005 and one["best_f1_recall"] <= one["recall"]
    for key in DETECTION_KEYS:
        assert one[key] == three[key], key
    groups = one["by_frame_size"]
    assert set(groups) == {"small"} and groups["small"]["num_images"] == one["num_images"]


def test_tiles_covering_the_frame_equal_whole_frames(weights: Path, devkit: Path, tmp_path: Path) -> None:
    whole = _val(weights, devkit, tmp_path / "native", "--protocol", "native", "--scale", "2")
    one_tile = _val(
        weights, devkit, tmp_path / "tile", "--protocol", "tiles", "--scale", "2", "--tile-size", "256"
    )
    for key in DETECTION_KEYS:
        assert whole[key] == one_tile[key], key
    assert whole["sky_iou"] == pytest.approx(one_tile["sky_iou"])
    # several tiles per frame still evaluate every image (boxes in original coordinates)
    tiled = _val(
        weights,
        devkit,
        tmp_path / "tiles",
        "--protocol",
        "tiles",
        "--scale",
        "2",
        "--tile-size",
        "128",
        "--tile-overlap",
        "32",
    )
    assert tiled["num_images"] == whole["num_images"] and tiled["num_pred"] > 0
    preds = json.loads((tmp_path / "tiles" / "predictions.json").read_text())
    boxes = np.concatenate([np.asarray(p["boxes"]).reshape(-1, 4) for p in preds])
    assert boxes[:, 2].max() <= 120 and boxes[:, 3].max() <= 100  # original frame coordinates


def test_scale_cap_changes_the_input_geometry(weights: Path, devkit: Path, tmp_path: Path) -> None:
    capped = _val(weights, devkit, tmp_path / "capped", "--scale", "2", "--max-side", "120")
    full = _val(weights, devkit, tmp_path / "full", "--scale", "2")
    assert capped["num_pred"] != full["num_pred"] or capped["mAP07"] != full["mAP07"]


def test_val_bad_flag_values_and_files_fail_clearly(
    weights: Path, devkit: Path, tmp_path: Path, capsys
) -> None:
    code = main(["val", "--weights", str(weights), "--data", str(devkit), "--protocol", "tiles",
                 "--tile-size", "64", "--tile-overlap", "64", "--out", str(tmp_path / "a")])  # fmt: skip
    assert code == 1 and "tile_overlap" in capsys.readouterr().err
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    code = main(["val", "--weights", str(broken), "--data", str(devkit), "--out", str(tmp_path / "b")])
    assert code == 1 and "broken.pt" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_predict_with_geometry_flags(weights: Path, devkit: Path, tmp_path: Path) -> None:
    images = sorted((devkit / "PNGImages").glob("*.png"))[:2]
    out = tmp_path / "pred"
    code = main(
        ["predict", "--weights", str(weights), *map(str, images), "--out", str(out), "--score-thr", "0.0",
         "--protocol", "tiles", "--scale", "2", "--tile-size", "128", "--amp"]
    )  # fmt: skip
    assert code == 0
    records = json.loads((out / "predictions.json").read_text())["images"]
    assert len(records) == 2 and all(len(r["boxes"]) > 0 for r in records)
    assert len(list(out.glob("*.png"))) == 2


def test_predict_default_threshold_is_the_checkpoints_operating_point(
    weights: Path, devkit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(sorted((devkit / "PNGImages").glob("*.png"))[0])
    code = main(["predict", "--weights", str(weights), image, "--out", str(tmp_path / "plain")])
    assert code == 0 and "score threshold 0.300 (default" in capsys.readouterr().out
    assert json.loads((tmp_path / "plain" / "predictions.json").read_text())["score_thr"] == 0.3
    ckpt = load_checkpoint(weights)
    ckpt["metadata"]["operating_score_thr"] = 0.0  # every detection of the untrained model
    released = tmp_path / "released.pt"
    torch.save(ckpt, released)
    code = main(["predict", "--weights", str(released), image, "--out", str(tmp_path / "op")])
    assert code == 0 and "score threshold 0.000 (the checkpoint's operating point" in capsys.readouterr().out
    record = json.loads((tmp_path / "op" / "predictions.json").read_text())
    assert record["score_thr"] == 0.0 and len(record["images"][0]["boxes"]) > 0
