"""Turn a finished run into a released checkpoint under ``weights/`` with its model card.

    python scripts/release_weights.py benchmarks/work/budget_hr/bafenet_hr/last.pt \
        --results benchmarks/results/budget_hr/bafenet_hr.json --name bafenet_hr_densesirst

Writes ``weights/NAME.pt`` (weights, model name and resolved config only: no optimizer or RNG
state; machine paths removed; float32 unless ``--half``) and ``weights/NAME.md`` (data,
split, recipe, budget, metrics, operating point, command, sha256). The file loads with
``torch.load(weights_only=True)`` and ``bafenet val --weights weights/NAME.pt``.

The operating point (the score threshold ``bafenet predict`` uses by default) is the F1-best
threshold on val_v2: taken from the results when they hold it, or measured by evaluating the
released file with ``--data DEVKIT``, which also checks that it reproduces the results' mAP07
(the card's metrics, by frame size too, are then those measured on the released file).

``--sky-gate`` (a sky model's budget run, with ``--data``) releases the model with its
post-hoc sky gate on: ``model.kwargs.sky_gate_thr`` is set to the threshold the results chose
on train_v2, so ``bafenet val`` / ``predict`` apply it by default; the released file must
reproduce the *gated* mAP07, and the card states the ungated numbers and how to turn it off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import numbers
import tempfile
from pathlib import Path
from typing import Any

import torch

from bafenet.config import config_to_dict
from bafenet.data import open_dataset
from bafenet.engine.checkpoint import load_checkpoint, save_checkpoint
from bafenet.engine.evaluate import evaluate_with_config, group_counts, metrics_by_frame_size, operating_point
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
    ("irstd_fa_per_mpix_at_pd_0.85", "false alarms per megapixel at Pd 0.85 (interpolated)"),
    ("irstd_fa_off_sky_share_at_best_f1", "share of false alarms off the annotated sky (F1-best score)"),
    ("sky_iou", "sky IoU of the model's own sky map"),
]
FA_AT_PD = "irstd_fa_per_mpix_at_pd_0.85"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _portable(override: str) -> str:
    """An override as a reader can reuse it: the training machine's data path becomes DEVKIT."""
    return "data.root=DEVKIT" if override.startswith("data.root=") else override


def measure(path: Path, data: Path, split: str, expected_map07: float) -> tuple[dict, dict]:
    """Evaluate the released file on ``split`` (its own eval settings, its sky gate included) and
    return its metrics and metrics by frame size; stop when its mAP07 differs from the results'."""
    model, cfg, _ = load_trained_model(path, torch.device("cpu"))
    dataset = open_dataset(data, split)
    metrics, details = evaluate_with_config(model, dataset, cfg, torch.device("cpu"), keep_predictions=True)
    if abs(metrics["mAP07"] - expected_map07) > 2e-3:
        raise SystemExit(
            f"{path}: {split} mAP07 {metrics['mAP07']:.4f} differs from the results' {expected_map07:.4f}"
        )
    print(f"{path}: {split} mAP07 {metrics['mAP07']:.4f} (results {expected_map07:.4f})")
    return metrics, metrics_by_frame_size(details["predictions"], cfg.eval)


def parse_args() -> argparse.Namespace:
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
        "--data", type=Path, default=None, help="devkit: measure the metrics and operating point on --split"
    )
    parser.add_argument("--split", default="val_v2", help="split the results were measured on")
    parser.add_argument(
        "--sky-gate",
        action="store_true",
        help="release with the run's post-hoc sky gate on (its threshold from the results; needs --data)",
    )
    parser.add_argument("--note", default="", help="a paragraph for the card (e.g. other seeds' results)")
    args = parser.parse_args()
    if args.sky_gate and args.data is None:
        parser.error("--sky-gate needs --data: the gated metrics by frame size are measured on the file")
    return args


def sky_gate_of(record: dict[str, Any], results: Path) -> dict[str, Any]:
    """The results' post-hoc sky gate (threshold, where it was chosen, gated metrics)."""
    gate = record.get("gate")
    if not gate or "threshold" not in gate:
        raise SystemExit(f"{results}: no sky gate in these results (a sky model's budget run has one)")
    return gate


def check_round_trip(path: Path, ckpt: dict[str, Any], half: bool) -> None:
    """The released file loads the safe way and holds the run's weights."""
    check = load_checkpoint(path, expected_model=ckpt["model_name"])
    for key, value in ckpt["model"].items():
        if not torch.allclose(check["model"][key].float(), value.float(), atol=1e-3 if half else 0.0):
            raise SystemExit(f"{path}: weight {key} differs after the round trip")


def main() -> None:
    args = parse_args()
    record = json.loads(args.results.read_text())
    gate = sky_gate_of(record, args.results) if args.sky_gate else None
    # the training machine's data path and backbone initialisation do not travel with the release
    overrides = ["data.root=null", "model.weights_backbone=null"]
    if gate is not None:
        overrides.append(f"model.kwargs.sky_gate_thr={gate['threshold']}")
    model, cfg, ckpt = load_trained_model(args.checkpoint, torch.device("cpu"), overrides)
    path = args.out / f"{args.name}.pt"
    expected = gate["metrics"] if gate is not None else record["metrics"]
    # without a measurement, the results' numbers (older gate records have none by frame size)
    metrics = expected
    by_size = (gate if gate is not None else record).get("by_frame_size", {})
    metadata = {"source_run": args.checkpoint.parent.name, "metrics_val_v2": metrics}
    metadata["by_frame_size"] = by_size
    save = dict(model_name=ckpt["model_name"], config=config_to_dict(cfg), epoch=ckpt["epoch"])
    save["half"] = args.half
    if args.data is not None:  # measured on the very weights to be released (float16 included)
        with tempfile.TemporaryDirectory() as tmp:
            probe = save_checkpoint(Path(tmp) / path.name, model, metadata=metadata, **save)
            metrics, by_size = measure(probe, args.data, args.split, expected["mAP07"])
        metadata["metrics_val_v2"] = _plain_numbers(metrics)
        metadata["by_frame_size"] = {group: _plain_numbers(m) for group, m in by_size.items()}
    operating = operating_point(metrics)
    if operating is not None:
        metadata["operating_score_thr"] = operating["score_thr"]
        metadata["operating_point"] = operating
    save_checkpoint(path, model, metadata=metadata, **save)
    check_round_trip(path, ckpt, args.half)
    card = model_card(args, path, cfg, ckpt["model_name"], record, metrics, by_size, operating, gate)
    write_text(args.out / f"{args.name}.md", "\n".join(card) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {args.out / (args.name + '.md')}")


def _plain_numbers(metrics: dict[str, Any]) -> dict[str, Any]:
    """The plain values of a metrics dict (numbers as Python ``int`` / ``float``, strings, None):
    what a weights-only checkpoint can hold. Curves and other containers are left out."""
    plain: dict[str, Any] = {}
    for key, value in metrics.items():
        if value is None or isinstance(value, (bool, str)):
            plain[key] = value
        elif isinstance(value, numbers.Integral):
            plain[key] = int(value)
        elif isinstance(value, numbers.Real):
            plain[key] = float(value)
    return plain


def model_card(
    args: argparse.Namespace,
    path: Path,
    cfg: Any,
    model_name: str,
    record: dict[str, Any],
    metrics: dict[str, Any],
    by_size: dict[str, Any],
    operating: dict[str, float] | None,
    gate: dict[str, Any] | None,
) -> list[str]:
    """The model card's lines: file, recipe, metrics, operating point, sky gate, speed, limits."""
    size_mb = path.stat().st_size / 1e6
    measured = " (measured on the released file)" if args.data is not None else ""
    lines = [
        f"# {args.name}",
        "",
        f"`{model_name}` trained on DenseSIRST `train_v2` (512 images) from random initialisation,",
        f"evaluated on `val_v2` (256 images, never used for training). File `{path.name}`, {size_mb:.1f} MB,",
        f"{record.get('threads', 2)}-thread CPU training, {'float16' if args.half else 'float32'} weights.",
        "",
        f"- sha256: `{sha256(path)}`",
        "- loads with `torch.load(path, weights_only=True)`; evaluate with",
        f"  `bafenet val --weights weights/{path.name} --data DEVKIT` (the checkpoint's eval settings:",
        f"  protocol `{cfg.eval.protocol}`, scale {cfg.eval.scale}, autocast {cfg.eval.amp}: bf16 only on a",
        "  CPU with native bf16, fp16 on CUDA).",
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
        budget_line(record),
        "",
        f"## Metrics on val_v2 (official protocol, final weights{', sky gate on' if gate else ''}){measured}",
        "",
        "| metric | value | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {metrics[k]:.4f} | {text} |" for k, text in METRICS if metrics.get(k) is not None]
    for group, values in by_size.items():
        side = "long side <= 640 px" if group == "small" else "long side > 640 px"
        lines.append(
            f"| mAP07 / recall, {group} frames | {values['mAP07']:.4f} / {values['recall']:.4f} | "
            f"{side}, {group_counts(values)} |"
        )
    if gate is not None:
        ungated = record["metrics"]
        fa = f", FA per Mpx at Pd 0.85 {ungated[FA_AT_PD]:.2f}" if ungated.get(FA_AT_PD) is not None else ""
        lines += [
            "",
            f"Sky gate: detections whose own sky probability at the box centre is below"
            f" {gate['threshold']:g}",
            f"are dropped (`model.kwargs.sky_gate_thr`; threshold chosen on {gate['chosen_on']}).",
            f"Without it the same weights score mAP07 {ungated['mAP07']:.4f}{fa}",
            "(`bafenet val --weights FILE model.kwargs.sky_gate_thr=null`). Targets off the sky are lost",
            "with the gate: turn it off for ground or sea backgrounds.",
        ]
    if operating is not None:
        lines += operating_lines(operating)
    lines += [
        "",
        f"Inference: {record['frame_1280x1024_s']:.2f} s per 1280 x 1024 frame on the training CPU"
        " (2 threads).",
        "",
        *([args.note, ""] if args.note else []),
        "Limits: trained on DenseSIRST only (mostly 3-5 px targets in sky backgrounds); large frames",
        "(1280 x 1024) score lower than small ones; test_v2 numbers are not reported here.",
    ]
    return lines


def budget_line(record: dict[str, Any]) -> str:
    """The card's sentence on the training budget: wall-clock minutes, or an image budget."""
    seen = (
        f"{record['images_seen']} training crops at {record['images_per_s']:.2f} images/s, "
        f"{record['epochs_done']} epochs of train_v2"
    )
    tail = f"seed {record['seed']}, torch {record.get('torch', '?')}."
    images = (record.get("budget") or {}).get("images")
    if not images:
        return f"Budget: {record['minutes']:.1f} minutes of training wall time, 2 threads ({seen}), {tail}"
    return (
        f"Budget: {images['max_images']} training crops, the configuration's share of 40 minutes at a "
        f"calibration of 638 ms ({images['minutes']:.1f} minutes on the {images['cpu_model']} that set it, "
        f"calibration {images['calibration_ms']:.0f} ms); trained on {record.get('cpu_model') or 'a CPU'}"
        f" with 2 threads ({seen}), {tail}"
    )


def operating_lines(operating: dict[str, float]) -> list[str]:
    """The card's paragraph on the operating point ``bafenet predict`` uses by default."""
    pd_fa = ""
    if "pd" in operating and "fa_per_mpix" in operating:
        pd_fa = f", Pd {operating['pd']:.3f} at {operating['fa_per_mpix']:.2f} false alarms per Mpx"
    return [
        "",
        f"Operating point: score >= {operating['score_thr']:.3f} (the F1-best threshold on val_v2;",
        f"precision {operating['precision']:.3f}, recall {operating['recall']:.3f}, "
        f"F1 {operating['f1']:.3f}{pd_fa}).",
        "`bafenet predict` keeps detections at this threshold unless `--score-thr` is given.",
    ]


if __name__ == "__main__":
    main()
