"""Equal-budget CPU ablation on DenseSIRST: fcos, fcos_seg, bafenet and bafenet without BAG-CP.

Protocol (all four runs identical except the named difference):

* data: train on ``train_v2``, evaluate on ``val_v2`` (official protocol: legacy and strict
  VOC mAP07 / mAP12 / recall, Pd / false alarms, sky IoU);
* geometry: the official 512 x 512 resize (ratio not kept, no antialias), flip 0.5,
  faithful BAG-CP (off for the ``bafenet_nobagcp`` run);
* model: ResNet-18 variants from random initialisation (no ImageNet weights are reachable
  here) with a ``--channels``-wide FPN/head (default 64: the faithful 256-channel towers
  are 85 % of the compute, a 64-channel head sees ~4x more images in the same time);
* optimiser: AdamW lr 2e-3, weight decay 1e-4, 30-iteration warm-up (learns faster than
  DAdaptAdam from scratch in short runs), batch 4, seed 0;
* budget: ``--minutes`` of training wall time per run (default 20), then one validation.
  Four runs take about 4 x (20 + 2) minutes on this 2-core machine.

Each finished run writes ``benchmarks/results/budget_train/<run>.json``; a rerun skips
finished runs, so the script can be resumed across sessions. The table goes to
``benchmarks/results/budget_train.md`` and ``budget_train.json``.

    python benchmarks/budget_train.py --data ../shared/data/DenseSIRST/SIRSTdevkit
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from bafenet.config import load_config
from bafenet.engine.trainer import train
from bafenet.fileio import write_json, write_text

RUNS = {
    "fcos_r18": ("fcos_r18", []),
    "fcos_seg_r18": ("fcos_seg_r18", []),
    "bafenet_r18": ("bafenet_r18", []),
    "bafenet_r18_nobagcp": ("bafenet_r18", ["data.bagcp.enabled=false"]),
}
COLUMNS = [
    "mAP07",
    "mAP12",
    "recall",
    "strict_mAP07",
    "strict_mAP12",
    "strict_recall",
    "irstd_pd",
    "irstd_fa_per_mpix",
    "sky_iou",
]


def run_config(model: str, extra: list[str], args: argparse.Namespace) -> list[str]:
    """The overrides of one run."""
    return [
        f"model.name={model}",
        "model.weights_backbone=null",
        f"model.kwargs={{channels: {args.channels}}}",
        f"data.root={args.data}",
        "data.train_split=train_v2",
        "data.val_split=val_v2",
        "eval.split=val_v2",
        "data.repeat=1",
        f"data.workers={args.workers}",
        "data.cache=true",
        "train.batch_size=4",
        "train.optimizer=adamw",
        "train.lr=0.002",
        "train.weight_decay=0.0001",
        "train.warmup_iters=30",
        "train.warmup_factor=0.1",
        "train.epochs=1000",
        "train.milestones=[1000]",
        "train.val_interval=1000",
        f"train.max_time_minutes={args.minutes}",
        "train.device=cpu",
        "train.seed=0",
        *extra,
    ]


def write_table(results: dict[str, dict], out: Path, args: argparse.Namespace) -> None:
    lines = [
        "# Equal-budget ablation on DenseSIRST (train_v2 -> val_v2)",
        "",
        "`python benchmarks/budget_train.py --data DEVKIT "
        f"--minutes {args.minutes} --channels {args.channels}`"
        f" on {torch.get_num_threads()} CPU threads. Protocol: see the script's docstring (512 resize, flip,"
        " faithful BAG-CP, ResNet-18 from random init, AdamW, batch 4, seed 0, equal training wall time).",
        "",
        "| run | images seen | images/s | " + " | ".join(COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for name, r in results.items():
        m = r["metrics"]
        cells = [f"{m.get(c, float('nan')):.4f}" for c in COLUMNS]
        lines.append(f"| {name} | {r['images_seen']} | {r['images_per_s']:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Units: fractions, except irstd_fa_per_mpix (false alarms per megapixel at score 0.3)."]
    write_text(out / "budget_train.md", "\n".join(lines) + "\n")
    write_json(out / "budget_train.json", results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="DenseSIRST devkit")
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall time per run")
    parser.add_argument("--channels", type=int, default=64, help="FPN/head width")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--out", default="benchmarks/results", help="results folder")
    parser.add_argument("--work", default="benchmarks/work/budget_train", help="run folders (not committed)")
    args = parser.parse_args()
    out = Path(args.out)
    per_run = out / "budget_train"
    results: dict[str, dict] = {}
    for name in args.runs:
        done = per_run / f"{name}.json"
        if done.exists():
            print(f"{name}: finished before, skipped")
            results[name] = json.loads(done.read_text())
            continue
        model, extra = RUNS[name]
        cfg = load_config(None, run_config(model, extra, args))
        run_dir = Path(args.work) / name
        shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again from scratch
        run_dir.mkdir(parents=True)
        start = time.monotonic()
        summary = train(cfg, run_dir, progress=True)
        seen = int(summary.images_per_s * 60 * args.minutes)
        results[name] = {
            "model": model,
            "overrides": run_config(model, extra, args),
            "minutes": args.minutes,
            "wall_s": time.monotonic() - start,
            "images_per_s": summary.images_per_s,
            "images_seen": seen,
            "data_wait_share": summary.data_wait_share,
            "metrics": {k: v for k, v in summary.last_metrics.items() if isinstance(v, (int, float))},
        }
        write_json(done, results[name])
        print(f"{name}: mAP07 {results[name]['metrics'].get('mAP07', float('nan')):.4f}")
    write_table(results, out, args)


if __name__ == "__main__":
    main()
