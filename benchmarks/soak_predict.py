"""Soak: resident memory of the Python API over many predictions on real frames.

``--n`` (default 1,000) calls of ``Detector.__call__`` on the ``val_v2`` frames of a DenseSIRST
devkit, cycled in split order (each call reads its image file, as ``bafenet predict`` does), on
2 threads. Resident memory (``VmRSS`` of ``/proc/self/status``, else psutil's when installed)
is sampled before the first call, after the warm-up (one pass over the frames, so that every
frame size has been seen once), every ``--every`` calls and at the end.

The API fixes glibc's mmap threshold and returns the heap's free pages when resident memory
rose 32 MiB since the last return (``bafenet.engine.allocator``); the record states the
allocator setting it ran with and its key ends with it, so a run under another setting
(``MALLOC_MMAP_THRESHOLD_`` in the environment) is a separate record.

Verdict (:data:`RULE`): no growth beyond noise when the RSS at the end minus the RSS after
the warm-up is below max(5 % of the RSS after the warm-up, 20 MiB).

The record (key ``<weights stem>@<sha256 prefix>/<backend>/n<calls>``) goes to
``<out>/soak_predict.json`` with the table ``<out>/soak_predict.md`` (atomically); a record
that exists is not measured again unless ``--force``.

    python benchmarks/soak_predict.py                      # weights/fcos_hr_densesirst.pt, 1,000 calls
    python benchmarks/soak_predict.py --smoke --out /tmp/soak   # a tiny untrained model, seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bafenet.api import Detector
from bafenet.engine.allocator import TRIM_MARGIN_BYTES, allocator_setting, can_trim, fix_mmap_threshold
from bafenet.errors import BafenetError
from bafenet.fileio import write_json, write_text
from deploy_speed import (
    DEFAULT_DATA,
    DEFAULT_WEIGHTS,
    RESULTS,
    THREADS,
    WORK,
    Checkpoint,
    devkit_split,
    load_records,
    machine,
    peak_rss_mib,
    rss_mib,
    smoke_inputs,
)

NAME = "soak_predict"
OLD_ALLOCATOR = "glibc's default (records from before the fixed threshold)"
GROWTH_SHARE = 0.05
GROWTH_FLOOR_MIB = 20.0
RULE = (
    "no growth beyond noise: RSS at the end - RSS after the warm-up"
    f" < max({GROWTH_SHARE:.0%} of the RSS after the warm-up, {GROWTH_FLOOR_MIB:g} MiB)"
)


def verdict(after_warmup_mib: float, end_mib: float) -> dict[str, Any]:
    """The growth after the warm-up, the growth :data:`RULE` allows, and whether it stays below."""
    growth = end_mib - after_warmup_mib
    allowed = max(GROWTH_SHARE * after_warmup_mib, GROWTH_FLOOR_MIB)
    return {"growth_mib": round(growth, 1), "allowed_mib": round(allowed, 1), "no_growth": growth < allowed}


def soak(detector: Detector, frames: list[Path], calls: int, warmup: int, every: int) -> dict[str, Any]:
    """``calls`` predictions cycling over ``frames``; RSS samples at the start, after ``warmup``
    calls, every ``every`` calls and at the end (a call may carry several labels)."""
    samples = [{"calls": 0, "at": "start", "rss_mib": round(rss_mib(), 1)}]
    detections = 0
    start = time.perf_counter()
    for call in range(1, calls + 1):
        detections += len(detector(frames[(call - 1) % len(frames)]).scores)
        labels = ["after warm-up"] if call == warmup else []
        labels += ["periodic"] if call % every == 0 else []
        labels += ["end"] if call == calls else []
        if labels:
            samples.append({"calls": call, "at": ", ".join(labels), "rss_mib": round(rss_mib(), 1)})
    seconds = time.perf_counter() - start
    rss = {label: s["rss_mib"] for s in samples for label in s["at"].split(", ")}
    return {
        "calls": calls,
        "warmup_calls": warmup,
        "every": every,
        "seconds": seconds,
        "calls_per_s": calls / seconds,
        "detections": detections,
        "samples": samples,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rule": RULE,
        **verdict(rss["after warm-up"], rss["end"]),
    }


def markdown(records: dict[str, dict], smoke: bool) -> str:
    """One section per record: the RSS samples and the verdict."""
    lines = ["# Soak: memory over API predictions", ""]
    if smoke:
        lines += ["**Smoke run** (a tiny untrained model, synthetic frames): the numbers mean nothing.", ""]
    lines += [f"`python benchmarks/soak_predict.py` (see its docstring). Verdict rule: {RULE}.", ""]
    for key, r in records.items():
        m, frames = r["machine"], r["frames"]
        outcome = "no growth beyond noise" if r["no_growth"] else "**memory grew beyond noise**"
        lines += [
            f"## {key}",
            "",
            f"`{r['checkpoint']['path']}` ({r['checkpoint']['model_name']}), backend {r['backend']},"
            f" {r['calls']} calls of `Detector.__call__` on the {frames['count']} {frames['split']} frames"
            f" (image files) cycled, warm-up {r['warmup_calls']} calls; {m['cpu']}, threads: {m['threads']},"
            f" torch {m['torch']}; allocator: {r.get('allocator', OLD_ALLOCATOR)};"
            f" {r['seconds']:.0f} s ({r['calls_per_s']:.2f} calls / s),"
            f" {r['detections']} detections in all.",
            "",
            "| calls | at | RSS (MiB) |",
            "|---|---|---|",
            *(f"| {s['calls']} | {s['at']} | {s['rss_mib']:.1f} |" for s in r["samples"]),
            "",
            f"Verdict: {outcome}: {r['growth_mib']:+.1f} MiB from after the warm-up to the end, allowed"
            f" below {r['allowed_mib']:.1f} MiB; peak RSS {r['peak_rss_mib']:.0f} MiB.",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="checkpoint (default: fcos_hr)")
    parser.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="DenseSIRST devkit (val_v2)")
    parser.add_argument("--n", type=int, default=1000, help="predictions (default 1000)")
    parser.add_argument("--every", type=int, default=100, help="RSS sample every k calls (default 100)")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"threads (default {THREADS})")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--work", type=Path, default=None, help="--smoke: its devkit and model")
    parser.add_argument("--force", action="store_true", help="measure again when the record exists")
    parser.add_argument("--smoke", action="store_true", help="a tiny untrained model on synthetic frames")
    args = parser.parse_args(argv)
    if args.smoke:  # one thread: two on a busy two-core machine spin-wait for each other
        args.n, args.every, args.threads = 12, 4, 1
    for name in ("n", "every", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    args.work = args.work or WORK / f"{NAME}_smoke"
    args.out = args.out or (args.work / "results" if args.smoke else RESULTS)
    return args


def run(args: argparse.Namespace) -> int:
    weights = args.weights
    if args.smoke:
        args.data, weights, _ = smoke_inputs(args.work)
    ckpt = Checkpoint.of(weights)
    val = devkit_split(args.data, "val_v2")
    frames = [val.files(image_id).image for image_id in val.ids]
    if args.n <= len(frames):
        raise BafenetError(
            f"--n {args.n} leaves nothing after the warm-up (one pass over {len(frames)} frames)"
        )
    allocator = "fixed-mmap-threshold" if fix_mmap_threshold() else "default-allocator"  # as Detector does
    allocator += f"+heap-trim-{TRIM_MARGIN_BYTES >> 20}mib" if can_trim() else ""
    key = f"{ckpt.key}/{args.backend}/n{args.n}/{allocator}"
    path = args.out / f"{NAME}.json"
    records = load_records(path)
    if key in records and not args.force:
        print(f"{key}: done before, skipped (--force to measure again)")
    else:
        torch.set_num_threads(args.threads)
        detector = Detector.load(weights, device="cpu", backend=args.backend)
        print(f"{key}: {args.n} predictions on {len(frames)} val_v2 frames", flush=True)
        records[key] = {
            "key": key,
            "checkpoint": ckpt.record(),
            "backend": args.backend,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "smoke": args.smoke,
            "machine": machine(),
            "allocator": allocator_setting(),
            "frames": {"split": "val_v2", "count": len(frames), "data": str(args.data)},
            **soak(detector, frames, args.n, warmup=len(frames), every=args.every),
        }
    write_json(path, records)
    report = markdown(records, args.smoke)
    write_text(path.with_suffix(".md"), report)
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BafenetError as exc:
        print(f"soak_predict: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
