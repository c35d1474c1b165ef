"""Shared machinery of the equal-budget benchmarks (``budget_train.py``, ``budget_hr.py``).

A *run* is a name, a base config file (or none) and dotted overrides. Each run trains for a
fixed wall-clock budget on this machine, then its final weights are evaluated once on
``val_v2``; the result (metrics overall and by frame size, throughput, inference time of a
1280 x 1024 frame, the exact overrides) is written to ``<results>/<run>.json``. A rerun skips
runs whose JSON exists, so a benchmark can be continued across sessions; an interrupted run
starts again from scratch.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import Config, load_config
from bafenet.data import open_dataset
from bafenet.data.sample import Sample
from bafenet.engine.evaluate import (
    OPERATING_POINT_KEYS,
    SIZE_GROUPS,
    evaluate,
    metrics_by_frame_size,
    predict_samples,
)
from bafenet.engine.predict import load_trained_model
from bafenet.engine.setup import build_eval_transform
from bafenet.engine.trainer import train
from bafenet.fileio import write_json, write_text

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["mAP07", "mAP12", "recall", "strict_mAP07", "strict_mAP12", "strict_recall"]


@dataclass
class Run:
    """One benchmark run: what differs from the protocol, and why."""

    name: str
    what: str
    overrides: list[str]
    base: str = "bafenet_hr.yaml"  # the packaged recipe (src/bafenet/configs/) that the overrides modify
    seed: int = 0


def budget_overrides(data: str, minutes: float, seed: int, workers: int = 1) -> list[str]:
    """What every budget run sets on top of its config file: data, budget, seed, CPU.

    Training stops after ``minutes`` of wall time (the lr drops x0.1 after 80 % of it), the
    final weights are validated once on ``val_v2``.
    """
    return [
        "model.weights_backbone=null",
        f"data.root={data}",
        "data.train_split=train_v2",
        "data.val_split=val_v2",
        "eval.split=val_v2",
        f"data.workers={workers}",
        "train.epochs=100000",
        "train.milestones=[100000]",
        "train.val_interval=100000",
        f"train.max_time_minutes={minutes}",
        "train.time_milestones=[0.8]",
        "train.device=cpu",
        f"train.seed={seed}",
    ]


def frame_seconds(cfg: Config, model: torch.nn.Module, reps: int = 3) -> float:
    """Median seconds to predict one 1280 x 1024 frame with ``cfg``'s evaluation geometry."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(1024, 1280)).astype(np.float32)
    sample = Sample(
        image=image,
        boxes=np.zeros((0, 4), np.float32),
        points=np.zeros((0, 2), np.float32),
        sky_mask=np.ones((1024, 1280), np.uint8),
        target_mask=np.zeros((1024, 1280), np.uint8),
        image_id="timing",
    )
    transform = build_eval_transform(cfg)
    device = torch.device("cpu")
    model.eval()
    times = []
    for _ in range(reps + 1):
        start = time.perf_counter()
        predict_samples(model, [sample], [transform(sample)], device, cfg.eval)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def run_one(run: Run, overrides: list[str], work: Path) -> dict:
    """Train ``run`` for its budget, evaluate the final weights, return the result record."""
    base = PACKAGED_CONFIGS / run.base
    all_overrides = [*overrides, *run.overrides]
    cfg = load_config(base, all_overrides)
    run_dir = work / run.name
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again from scratch
    run_dir.mkdir(parents=True)
    start = time.monotonic()
    summary = train(cfg, run_dir, progress=True)
    wall = time.monotonic() - start
    model, cfg, _ = load_trained_model(run_dir / "last.pt", torch.device("cpu"))
    by_size = metrics_by_frame_size(summary.last_predictions, cfg.eval)
    metrics = {k: v for k, v in summary.last_metrics.items() if isinstance(v, (int, float))}
    return {
        "run": run.name,
        "what": run.what,
        "model": cfg.model.name,
        "base_config": run.base,
        "overrides": all_overrides,
        "minutes": cfg.train.max_time_minutes,
        "seed": cfg.train.seed,
        "wall_s": wall,
        "epochs_done": summary.epochs_done,
        "images_seen": summary.images_seen,
        "images_per_s": summary.images_per_s,
        "data_wait_share": summary.data_wait_share,
        "frame_1280x1024_s": frame_seconds(cfg, model),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "metrics": metrics,
        "by_frame_size": {
            g: {k: v for k, v in m.items() if isinstance(v, (int, float))} for g, m in by_size.items()
        },
    }


def run_all(runs: list[Run], args, results_dir: Path, work: Path) -> dict[str, dict]:
    """Run (or skip, when finished before) every run; return all records in ``runs`` order."""
    results_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict] = {}
    for run in runs:
        done = results_dir / f"{run.name}.json"
        if done.exists():
            print(f"{run.name}: finished before, skipped ({done})")
            records[run.name] = json.loads(done.read_text())
            continue
        record = run_one(run, budget_overrides(args.data, args.minutes, run.seed, args.workers), work)
        write_json(done, record)
        records[run.name] = record
        print(f"{run.name}: mAP07 {record['metrics'].get('mAP07', math.nan):.4f} -> {done}")
    return records


def add_operating_points(runs: list[Run], data: str, results_dir: Path, work: Path) -> None:
    """Give finished runs evaluated before the F1-best point was recorded their operating point.

    Re-evaluates each such run's ``last.pt`` on ``val_v2`` with its own eval settings; the point
    is added only when the re-evaluation reproduces the recorded mAP07 (within 0.002), and the
    record says it was added afterwards. Runs without weights in ``work`` are left as they are.
    """
    val_set = open_dataset(data, "val_v2")
    for run in runs:
        done = results_dir / f"{run.name}.json"
        weights = work / run.name / "last.pt"
        if not done.exists():
            continue
        record = json.loads(done.read_text())
        if record["metrics"].get("best_f1_score_thr") is not None:
            continue
        if not weights.exists():
            print(f"{run.name}: no {weights}, operating point left out")
            continue
        model, cfg, _ = load_trained_model(weights, torch.device("cpu"))
        metrics, _ = evaluate(model, val_set, build_eval_transform(cfg), cfg.eval, torch.device("cpu"))
        recorded = record["metrics"]["mAP07"]
        if abs(metrics["mAP07"] - recorded) > 2e-3:
            print(
                f"{run.name}: re-evaluated mAP07 {metrics['mAP07']:.4f} != recorded {recorded:.4f}, left out"
            )
            continue
        record["metrics"].update(
            {k: metrics[k] for k in OPERATING_POINT_KEYS.values() if metrics.get(k) is not None}
        )
        record["operating_point_added"] = f"re-evaluated {weights.name} (mAP07 {metrics['mAP07']:.4f})"
        write_json(done, record)
        print(f"{run.name}: operating point score >= {metrics['best_f1_score_thr']:.3f} -> {done}")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(records: dict[str, dict]) -> list[str]:
    """The results as Markdown: overall, by frame size, Pd / false alarms, speed."""
    lines = [
        "| run | what | mAP07 | mAP12 | recall | strict mAP07 / mAP12 / recall | mAP07 small / large "
        "| Pd | FA / Mpx | F1-best score: thr / Pd / FA per Mpx | train img/s | images seen "
        "| s / 1280x1024 frame |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in records.items():
        m = r["metrics"]
        by = r.get("by_frame_size", {})
        small = by.get("small", {}).get("mAP07")
        large = by.get("large", {}).get("mAP07")
        cells = [
            name,
            r["what"],
            _fmt(m.get("mAP07")),
            _fmt(m.get("mAP12")),
            _fmt(m.get("recall")),
            " / ".join(_fmt(m.get(k)) for k in ("strict_mAP07", "strict_mAP12", "strict_recall")),
            f"{_fmt(small)} / {_fmt(large)}",
            _fmt(m.get("irstd_pd")),
            _fmt(m.get("irstd_fa_per_mpix"), 2),
            f"{_fmt(m.get('best_f1_score_thr'), 2)} / {_fmt(m.get('irstd_pd_at_best_f1'))}"
            f" / {_fmt(m.get('irstd_fa_per_mpix_at_best_f1'), 2)}",
            _fmt(r["images_per_s"], 2),
            str(r["images_seen"]),
            _fmt(r["frame_1280x1024_s"], 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Frame groups: small = {SIZE_GROUPS['small']}, large = {SIZE_GROUPS['large']}. Pd and false alarms"
        " at score 0.3 (a detection is a hit when its centre is within 3 px of a target's centroid), and at"
        " the score threshold that maximises F1 (legacy widths; '—' for runs evaluated before it was"
        " recorded, which `--add-operating-points` re-evaluates from their weights); FA per megapixel"
        " of the original frames. 'images seen' counts training crops /"
        " frames in the budget.",
    ]
    return lines


def write_report(records: dict[str, dict], results_dir: Path, title: str, header: list[str]) -> None:
    """``<results_dir>.md`` and ``<results_dir>.json`` next to the per-run folder."""
    lines = [f"# {title}", "", *header, "", *markdown_table(records)]
    write_text(results_dir.with_suffix(".md"), "\n".join(lines) + "\n")
    write_json(results_dir.with_suffix(".json"), records)


def budget_main(doc: str, runs: list[Run], name: str, minutes: float, title: str, header: str) -> None:
    """Command line of a budget benchmark: run (or skip) the chosen runs, then write the table
    of every finished run. ``header`` may use ``{minutes}``."""
    names = [r.name for r in runs]
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="DenseSIRST devkit")
    parser.add_argument("--minutes", type=float, default=minutes, help="training wall time per run")
    parser.add_argument("--workers", type=int, default=1, help="data-loader processes")
    parser.add_argument("--runs", nargs="*", default=names, choices=names, help="runs to do (default: all)")
    parser.add_argument("--results", default=f"benchmarks/results/{name}", help="per-run results folder")
    parser.add_argument("--work", default=f"benchmarks/work/{name}", help="run folders (not committed)")
    parser.add_argument(
        "--add-operating-points",
        action="store_true",
        help="re-evaluate finished runs that lack the F1-best point (their weights must be in --work)",
    )
    args = parser.parse_args()
    results = Path(args.results)
    chosen = [r for r in runs if r.name in args.runs]
    run_all(chosen, args, results, Path(args.work))
    if args.add_operating_points:
        add_operating_points(chosen, args.data, results, Path(args.work))
    finished = {
        r.name: json.loads((results / f"{r.name}.json").read_text())
        for r in runs
        if (results / f"{r.name}.json").exists()
    }
    write_report(finished, results, title, [header.format(minutes=f"{args.minutes:g}")])
