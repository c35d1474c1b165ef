"""``bafenet demo``: the whole pipeline on the built-in synthetic data, in a few CPU minutes.

synthetic data -> check -> statistics -> a short training run -> validation -> predictions
drawn on images -> ``report.md`` and ``report.html`` with the plots, all under ``--out``.

The training run is a fixed amount of work (``--epochs``), so its score does not depend on
how fast or busy the machine is; ``--max-minutes`` is only a safety cap, and a run that hits
it says so. The demo exits 1 when its mAP07 is below :data:`PASS_MAP07`.
"""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from bafenet.cli.arguments import int_at_least

if TYPE_CHECKING:
    import torch

    from bafenet.config import Config
    from bafenet.data.densesirst import DenseSIRST
    from bafenet.engine.trainer import TrainSummary

# The demo recipe: the high-resolution BAFE-Net (bafenet_hr: half-width ResNet-18 with trainable
# BatchNorm, a stride-4 level P2, a 32-channel FPN/head with 2-conv towers) from random
# initialisation (no download needed), trained on synthetic frames upsampled x2 and cropped to
# 256 px so that the 3-5 px targets get FCOS positives at stride 4, evaluated on whole frames at
# the same x2 scale.
MODEL_TEXT = (
    "bafenet_hr (high-resolution BAFE-Net: half-width ResNet-18, stride-4 level, 32-channel head) "
    "on frames upsampled x2, 256 px crops"
)
PASS_MAP07 = 0.5  # the score the default demo must reach on its validation images
DEMO_OVERRIDES = [
    "model.name=bafenet_hr",
    "model.weights_backbone=null",
    "data.train_split=train",
    "data.val_split=val",
    "eval.split=val",
    "data.input.mode=native",
    "data.input.scale=2.0",
    "data.input.crop_size=256",
    "data.repeat=2",
    "data.workers=1",
    "data.cache=true",
    "train.batch_size=4",
    "train.optimizer=adamw",
    "train.lr=0.002",
    "train.weight_decay=0.0001",
    "train.warmup_iters=30",
    "train.warmup_factor=0.1",
    "eval.protocol=native",
    "eval.pd_score_thr=0.3",
]


def _demo(args: argparse.Namespace) -> int:
    from bafenet.engine.runs import new_run_dir

    out = new_run_dir(Path(args.project), "demo") if args.out is None else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, stat_files = _synthetic_data(args, out)
    summary, device, cut_short = _train_demo(args, data, out / "train")
    val_set, metrics, details, eval_files = _validate(data, out, device, progress=not args.no_progress)
    drawings = _draw_predictions(val_set, out, details["predictions"], metrics)

    print("[6/6] report")
    passed = metrics["mAP07"] >= PASS_MAP07
    text = (
        f"Synthetic data ({args.n} images) -> {MODEL_TEXT}, trained {summary.epochs_done} of "
        f"{args.epochs} epoch(s) on the {device.type} ({summary.images_per_s:.2f} images/s, "
        f"{100 * summary.data_wait_share:.1f}% of step time waiting for data) -> validation. "
        + (f"{cut_short} " if cut_short else "")
        + f"mAP07 {metrics['mAP07']:.3f} (expected >= {PASS_MAP07}: {'PASS' if passed else 'FAIL'})."
    )
    _write_report(out, metrics, text, stat_files + eval_files + drawings)
    print(
        f"demo mAP07 {metrics['mAP07']:.3f} (the demo expects >= {PASS_MAP07}: "
        f"{'PASS' if passed else 'FAIL'}); report: {out / 'report.html'}"
    )
    return 0 if passed else 1


def _synthetic_data(args: argparse.Namespace, out: Path) -> tuple[Path, list[Path]]:
    """Steps 1-2: write (or reuse) and check the synthetic devkit, then its statistics.

    Returns the devkit folder and the statistics files written under ``out/stats``.
    """
    from bafenet.data.check import check_dataset
    from bafenet.data.stats import dataset_stats, summary_lines, write_stats_report
    from bafenet.data.synthetic import write_synthetic_devkit
    from bafenet.errors import BafenetError

    data = out / "data"
    print(f"[1/6] synthetic dataset: {args.n} images, seed {args.seed} -> {data}")
    if not (data / "PNGImages").is_dir():
        write_synthetic_devkit(data, n=args.n, seed=args.seed)
    report = check_dataset(data, None)
    if report.problems:
        raise BafenetError(f"{data}: the synthetic dataset failed its check: {report.problems[0]}")
    print(f"      checked {report.n_images} images, {report.n_targets} targets: OK")

    print("[2/6] statistics")
    stats = dataset_stats(data, None, progress=not args.no_progress)
    for line in summary_lines(stats):
        print(f"      {line}")
    return data, write_stats_report(stats, out / "stats")


def _train_demo(
    args: argparse.Namespace, data: Path, run_dir: Path
) -> tuple[TrainSummary, torch.device, str]:
    """Step 3: train the demo recipe on ``data`` into ``run_dir``.

    Returns the training summary, the device used and the cut-short sentence (``""`` if none).
    """
    import torch

    from bafenet.config import load_config
    from bafenet.engine.distributed import local_device, threads_beside_load

    overrides = [
        *DEMO_OVERRIDES,
        f"data.root={data}",
        f"train.epochs={args.epochs}",
        f"train.max_time_minutes={args.max_minutes or 'null'}",
        f"train.seed={args.seed}",
        f"train.milestones=[{max(1, args.epochs - 1)}]",
        f"train.val_interval={args.epochs}",
    ]
    if args.device:
        overrides.append(f"train.device={args.device}")
    cfg = load_config(None, overrides)
    device = local_device(cfg.train.device)
    cap = f"safety cap {args.max_minutes:g} minutes" if args.max_minutes else "no time cap"
    where = device.type
    threads = torch.get_num_threads()
    if device.type == "cpu":
        threads = args.threads or threads_beside_load()
        where = f"cpu, {threads} thread(s)"
    print(f"[3/6] training {MODEL_TEXT}: {args.epochs} epoch(s) on the {where} ({cap})")
    run_dir.mkdir(exist_ok=True)
    summary = _train_with_threads(cfg, run_dir, threads, progress=not args.no_progress)
    cut_short = _cut_short_text(summary, args.epochs, args.max_minutes)
    if cut_short:
        print(f"      {cut_short}")
    return summary, device, cut_short


def _validate(
    data: Path, out: Path, device: torch.device, progress: bool
) -> tuple[DenseSIRST, dict, dict, list[Path]]:
    """Step 4: evaluate ``out/train/last.pt`` on the validation split; write ``out/val``.

    Returns the validation set, the metrics, the evaluation details (with the predictions) and
    the files written.
    """
    from bafenet.data import open_dataset
    from bafenet.engine.evaluate import evaluate_with_config
    from bafenet.engine.inference import load_trained_model
    from bafenet.engine.report import format_table, write_eval_outputs

    print("[4/6] validation of the trained weights")
    model, cfg, _ = load_trained_model(out / "train" / "last.pt", device)
    val_set = open_dataset(data, cfg.eval.split)
    metrics, details = evaluate_with_config(
        model, val_set, cfg, device, progress=progress, keep_predictions=True
    )
    print(format_table(metrics))
    return val_set, metrics, details, write_eval_outputs(out / "val", metrics, details)


def _draw_predictions(val_set: DenseSIRST, out: Path, predictions: list, metrics: dict) -> list[Path]:
    """Step 5: draw truth and detections at the F1-best score on the first 4 validation images.

    Returns the PNG files written under ``out/predictions``.
    """
    from bafenet.engine.inference import DEFAULT_SCORE_THR
    from bafenet.engine.predict import draw_prediction
    from bafenet.viz import save_png

    score_thr = metrics["best_f1_score_thr"]
    if score_thr is None:  # nothing predicted
        score_thr = DEFAULT_SCORE_THR
    print(
        f"[5/6] predictions drawn on validation images (green: truth, red: detections >= {score_thr:.2f},"
        " the F1-best score threshold)"
    )
    by_id = {p.image_id: p for p in predictions}
    drawings = []
    for i in range(min(4, len(val_set))):
        sample = val_set[i]
        pred = by_id[sample.image_id]
        drawings.append(
            save_png(
                out / "predictions" / f"{sample.image_id}.png",
                draw_prediction(sample, pred.boxes, pred.scores, score_thr),
            )
        )
    return drawings


def _train_with_threads(cfg: Config, run_dir: Path, threads: int, progress: bool) -> TrainSummary:
    """Train with ``threads`` CPU threads, then put the caller's thread count back."""
    import torch

    from bafenet.engine.trainer import train

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return train(cfg, run_dir, progress=progress)
    finally:
        torch.set_num_threads(before)


def _cut_short_text(summary: TrainSummary, epochs: int, max_minutes: float | None) -> str:
    """One sentence when the safety cap ended training early, else ``""``."""
    if not summary.stopped_by_budget:
        return ""
    return (
        f"Training was stopped by the {max_minutes:g}-minute safety cap after {summary.epochs_done} "
        f"of {epochs} epochs ({summary.images_per_s:.2f} images/s on this machine): the score below "
        "is that of an unfinished run (raise or disable the cap with --max-minutes)."
    )


def _write_report(out: Path, metrics: dict, text: str, files: list[Path]) -> None:
    """``report.md`` and ``report.html``: ``text``, the metric table and the plots in ``files``."""
    from bafenet.engine.report import format_table
    from bafenet.fileio import write_text

    pngs = [p for p in files if p.suffix == ".png"]
    curves = [out / "train" / name for name in ("loss_curves.png", "metric_curves.png")]
    curves = [p for p in curves if p.exists()]
    rel = [p.relative_to(out).as_posix() for p in curves + pngs]
    table = format_table(metrics)
    md = [
        "# bafenet demo report",
        "",
        text,
        "",
        "```",
        table,
        "```",
        "",
        *[f"![{p}]({p})" for p in rel],
        "",
    ]
    write_text(out / "report.md", "\n".join(md))
    body = "".join(
        f'<figure><img src="{html.escape(p)}"><figcaption>{html.escape(p)}</figcaption></figure>' for p in rel
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>bafenet demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
        "figure{display:inline-block;margin:8px}</style></head><body>"
        f"<h1>bafenet demo report</h1><p>{html.escape(text)}</p><pre>{html.escape(table)}</pre>"
        "<details><summary>all metrics</summary><pre>"
        f"{html.escape(json.dumps(metrics, indent=1, default=str))}</pre></details>{body}</body></html>"
    )
    write_text(out / "report.html", page)


def _minutes(text: str) -> float:
    """``--max-minutes``: a number >= 0 (0: no cap)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of minutes, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of minutes >= 0, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` verb."""
    p = subparsers.add_parser("demo", help="synthetic data -> train -> val -> report, in a few CPU minutes")
    p.add_argument("--out", default=None, help="output folder (default: runs/demo, numbered if it exists)")
    p.add_argument("--project", default="runs", help="folder holding the runs (default: runs)")
    p.add_argument("--n", type=int_at_least(1), default=96, help="synthetic images (default 96)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--epochs", type=int_at_least(1), default=14, help="training epochs: the demo's work (default 14)"
    )
    p.add_argument(
        "--max-minutes",
        type=_minutes,
        default=60.0,
        help="safety cap on the training time; a run that hits it says so (default 60; 0: no cap)",
    )
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--threads",
        type=int_at_least(1),
        default=None,
        help="CPU threads (default: the cores not kept busy by other processes, by the load average)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_demo)
