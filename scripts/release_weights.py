"""Turn a finished run into a released checkpoint under ``weights/`` with its model card.

    python scripts/release_weights.py benchmarks/work/budget_hr/bafenet_hr/last.pt \
        --results benchmarks/results/budget_hr/bafenet_hr.json --name bafenet_hr_densesirst

Writes ``weights/NAME.pt`` (weights, model name and resolved config only: no optimizer or RNG
state; machine paths removed; float32 unless ``--half``) and ``weights/NAME.md`` (data,
split, recipe, budget, metrics, operating point, command, sha256). The file loads with
``torch.load(weights_only=True)`` and ``bafenet val --weights weights/NAME.pt``.

The operating point (the score threshold ``bafenet predict`` uses by default) is the F1-best
threshold on val_v2: taken from the results when they hold it, or measured by evaluating the
released file with ``--data DEVKIT``, which also checks that it reproduces the results' mAP07.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import torch

from bafenet.config import config_to_dict
from bafenet.data import open_dataset
from bafenet.engine.checkpoint import load_checkpoint, save_checkpoint
from bafenet.engine.evaluate import evaluate_with_config, group_counts, operating_point
from bafenet.engine.inference import load_trained_model
from bafenet.fileio import write_text

METRICS = [
    ("mAP07", "VOC AP@0.5, 11-point, legacy +1 widths (official protocol)"),
    ("mAP12", "VOC AP@0.5, area, legacy widths"),
    ("recall", "recall at the end of the ranked list, legacy widths"),
    ("strict_mAP07", "the same with strict widths (w = x2 - x1)"),
    ("strict_mAP12", "area AP, strict widths"),
    ("strict_recall", "recall, strict widths"),
    ("irstd_pd", "IRSTD Pd at score 0.3 (centroid within 3 px)"),
    ("irstd_fa_per_mpix", "false alarms per megapixel at score 0.3"),
    ("sky_iou", "sky IoU of the segmentation branch"),
]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _portable(override: str) -> str:
    """An override as a reader can reuse it: the training machine's data path becomes DEVKIT."""
    return "data.root=DEVKIT" if override.startswith("data.root=") else override


def measure_operating_point(path: Path, data: Path, split: str, expected_map07: float) -> dict[str, float]:
    """Evaluate the released file on ``split`` (its own eval settings) and return its operating point."""
    model, cfg, _ = load_trained_model(path, torch.device("cpu"))
    dataset = open_dataset(data, split)
    metrics, _ = evaluate_with_config(model, dataset, cfg, torch.device("cpu"))
    if abs(metrics["mAP07"] - expected_map07) > 2e-3:
        raise SystemExit(
            f"{path}: {split} mAP07 {metrics['mAP07']:.4f} differs from the results' {expected_map07:.4f}"
        )
    print(f"{path}: {split} mAP07 {metrics['mAP07']:.4f} (results {expected_map07:.4f})")
    return operating_point(metrics)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a run's last.pt / best.pt")
    parser.add_argument(
        "--results", type=Path, required=True, help="the run's benchmark JSON (metrics, command)"
    )
    parser.add_argument("--name", required=True, help="file stem under weights/")
    parser.add_argument("--out", type=Path, default=Path("weights"))
    parser.add_argument("--half", action="store_true", help="store float16 weights (half the size)")
    parser.add_argument(
        "--data", type=Path, default=None, help="devkit: measure the operating point on --split"
    )
    parser.add_argument("--split", default="val_v2", help="split the results were measured on")
    parser.add_argument("--note", default="", help="a paragraph for the card (e.g. other seeds' results)")
    args = parser.parse_args()

    # the training machine's data path and backbone initialisation do not travel with the release
    model, cfg, ckpt = load_trained_model(
        args.checkpoint, torch.device("cpu"), ["data.root=null", "model.weights_backbone=null"]
    )
    record = json.loads(args.results.read_text())
    raw = config_to_dict(cfg)
    path = args.out / f"{args.name}.pt"
    metadata = {
        "source_run": str(args.checkpoint.parent.name),
        "metrics_val_v2": record["metrics"],
        "by_frame_size": record.get("by_frame_size", {}),
    }
    save = dict(model_name=ckpt["model_name"], config=raw, epoch=ckpt["epoch"], half=args.half)
    operating = operating_point(record["metrics"])
    if args.data is not None:  # measured on the very weights to be released (float16 included)
        with tempfile.TemporaryDirectory() as tmp:
            probe = save_checkpoint(Path(tmp) / path.name, model, metadata=metadata, **save)
            operating = measure_operating_point(probe, args.data, args.split, record["metrics"]["mAP07"])
    if operating is not None:
        metadata["operating_score_thr"] = operating["score_thr"]
        metadata["operating_point"] = operating
    save_checkpoint(path, model, metadata=metadata, **save)
    # it loads the safe way and reproduces the weights
    check = load_checkpoint(path, expected_model=ckpt["model_name"])
    for key, value in ckpt["model"].items():
        if not torch.allclose(check["model"][key].float(), value.float(), atol=1e-3 if args.half else 0.0):
            raise SystemExit(f"{path}: weight {key} differs after the round trip")

    m = record["metrics"]
    by = record.get("by_frame_size", {})
    size_mb = path.stat().st_size / 1e6
    lines = [
        f"# {args.name}",
        "",
        f"`{ckpt['model_name']}` trained on DenseSIRST `train_v2` (512 images) from random initialisation,",
        f"evaluated on `val_v2` (256 images, never used for training). File `{path.name}`, {size_mb:.1f} MB,",
        f"{record.get('threads', 2)}-thread CPU training, {'float16' if args.half else 'float32'} weights.",
        "",
        f"- sha256: `{sha256(path)}`",
        "- loads with `torch.load(path, weights_only=True)`; evaluate with",
        f"  `bafenet val --weights weights/{path.name} --data DEVKIT` (the checkpoint's eval settings:",
        f"  protocol `{cfg.eval.protocol}`, scale {cfg.eval.scale}, bf16 autocast {cfg.eval.amp}).",
        "",
        "## Recipe",
        "",
        f"`src/bafenet/configs/{record.get('base_config') or 'bafenet_hr.yaml'}` with these overrides",
        "(budget run of `benchmarks/budget_hr.py`):",
        "",
        "```",
        " ".join(_portable(o) for o in record["overrides"]),
        "```",
        "",
        f"Budget: {record['minutes']:g} minutes of training wall time on a 2-core CPU "
        f"({record['images_seen']} training crops at {record['images_per_s']:.2f} images/s, "
        f"{record['epochs_done']} epochs of train_v2), seed {record['seed']}, "
        f"torch {record.get('torch', '?')}.",
        "",
        "## Metrics on val_v2 (official protocol, final weights)",
        "",
        "| metric | value | meaning |",
        "|---|---|---|",
    ]
    for key, meaning in METRICS:
        if key in m:
            lines.append(f"| {key} | {m[key]:.4f} | {meaning} |")
    for group, values in by.items():
        side = "long side <= 640 px" if group == "small" else "long side > 640 px"
        lines.append(
            f"| mAP07 / recall, {group} frames | {values['mAP07']:.4f} / {values['recall']:.4f} | "
            f"{side}, {group_counts(values)} |"
        )
    if operating is not None:
        pd_fa = ""
        if "pd" in operating and "fa_per_mpix" in operating:
            pd_fa = f", Pd {operating['pd']:.3f} at {operating['fa_per_mpix']:.2f} false alarms per Mpx"
        lines += [
            "",
            f"Operating point: score >= {operating['score_thr']:.3f} (the F1-best threshold on val_v2;",
            f"precision {operating['precision']:.3f}, recall {operating['recall']:.3f}, "
            f"F1 {operating['f1']:.3f}{pd_fa}).",
            "`bafenet predict` keeps detections at this threshold unless `--score-thr` is given.",
        ]
    lines += [
        "",
        f"Inference: {record['frame_1280x1024_s']:.2f} s per 1280 x 1024 frame on the same CPU (2 threads).",
        "",
        *([args.note, ""] if args.note else []),
        "Limits: trained on DenseSIRST only (mostly 3-5 px targets in sky backgrounds); large frames",
        "(1280 x 1024) score lower than small ones; test_v2 numbers are not reported here.",
    ]
    write_text(args.out / f"{args.name}.md", "\n".join(lines) + "\n")
    print(f"wrote {path} ({size_mb:.1f} MB) and {args.out / (args.name + '.md')}")


if __name__ == "__main__":
    main()
