"""Seconds per 1280 x 1024 frame: the released models against the general detector, on one machine.

    pip install ultralytics   # in an environment of its own: only this script uses it
    python benchmarks/general_detector_speed.py [--rounds 5] [--weights weights/*.pt]

The general detector is the comparison of the sky issue: an ultralytics YOLOv8n-P2
(``yolov8n-p2.yaml``: P2-P5 heads, 2.9 M parameters) predicting the frame upsampled x2
(2560 x 2048, ``imgsz=2560``), the way it was evaluated on val_v2. It is built untrained:
its layers and its pre- and post-processing are what costs time; at the default confidence
(0.25) only a handful of candidates reach NMS, trained or not. Each released file runs with its
own evaluation geometry (x2, its precision on this CPU, post-processing, the sky map and gate).

After a warm-up of each model, ``--rounds`` rounds time one frame per model in a rotating
order, so a slow phase of the machine hits every model alike; the table gives each model's
median and range, the general detector's time over each model's, and the calibration of
the same window (:func:`budget_common.calibrate`). Writes
``benchmarks/results/general_detector_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bafenet.engine.inference import load_trained_model
from bafenet.fileio import write_json, write_text
from budget_common import calibrate, eval_precision, frame_pass_s, rotating_rounds

RESULTS = Path(__file__).parent / "results"
GENERAL = "YOLOv8n-P2 (ultralytics, x2, imgsz 2560)"


def general_detector():
    """A callable timing one x2 prediction of the general detector; exits with one line when
    ultralytics is missing."""
    try:
        from ultralytics import YOLO
    except ImportError:
        raise SystemExit("general_detector_speed: needs ultralytics (pip install ultralytics)") from None
    model = YOLO("yolov8n-p2.yaml")
    frame = (np.random.default_rng(0).uniform(0, 255, size=(1024, 1280))).astype(np.uint8)

    def one_frame() -> float:
        start = time.perf_counter()
        image = Image.fromarray(frame).resize((2560, 2048), Image.BILINEAR).convert("RGB")
        model.predict(np.asarray(image)[:, :, ::-1], imgsz=2560, device="cpu", verbose=False)
        return time.perf_counter() - start

    return one_frame


def released_model(path: Path):
    """A callable timing one frame of a released file, and its precision on this CPU."""
    model, cfg, _ = load_trained_model(path, torch.device("cpu"))
    return (lambda: frame_pass_s(cfg, model)), eval_precision(cfg)


def table(record: dict) -> list[str]:
    general = record["models"][GENERAL]["median_s"]
    cal = record["calibration"]
    lines = [
        "# Seconds per 1280 x 1024 frame, one machine",
        "",
        f"`python benchmarks/general_detector_speed.py`, {record['measured_at']}, {cal['cpu_model']}, "
        f"{record['threads']} threads, calibration {cal['ms']:.0f} ms (reference 638 ms); median (min-max) "
        f"of {record['rounds']} rounds in a rotating order.",
        "",
        "| model | precision | s / frame | general detector / model |",
        "|---|---|---|---|",
    ]
    for name, m in record["models"].items():
        lines.append(
            f"| {name} | {m['precision']} | {m['median_s']:.2f} ({m['min_s']:.2f}-{m['max_s']:.2f}) | "
            f"{general / m['median_s']:.2f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, nargs="+", default=sorted(Path("weights").glob("*.pt")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    timers, precision = {GENERAL: general_detector()}, {GENERAL: "torch.float32"}
    for path in args.weights:
        timers[path.name], precision[path.name] = released_model(path)
    times = rotating_rounds(timers, args.rounds)
    record = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rounds": args.rounds,
        "threads": args.threads,
        "calibration": calibrate(),
        "models": {
            name: {
                "median_s": statistics.median(t),
                "min_s": min(t),
                "max_s": max(t),
                "precision": precision[name],
            }
            for name, t in times.items()
        },
    }
    write_json(args.results / "general_detector_speed.json", record)
    write_text(args.results / "general_detector_speed.md", "\n".join(table(record)) + "\n")
    print("\n".join(table(record)))


if __name__ == "__main__":
    main()
