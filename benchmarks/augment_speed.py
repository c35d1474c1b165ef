"""Speed of the data augmentation on one CPU core.

* BAG-CP alone at 512 x 512 (faithful, improved and plain presets), on real DenseSIRST
  train_v2 pairs resized to 512 x 512 and kept in memory: images per second (target: >= 100
  for the faithful mode) and targets pasted per call;
* the single transforms on a real 1280 x 1024 frame (resize with and without antialiasing,
  horizontal flip, crop, collate of a batch of 2);
* the whole training pipeline per image, as a data-loader worker runs it
  (:class:`bafenet.data.pipeline.AugmentedDataset`: PNG decode of the image and of its
  copy-paste source, resize, flip, BAG-CP), split into decode / geometry / BAG-CP.

Times are medians of repeated passes; ``torch.set_num_threads(1)``.

    python benchmarks/augment_speed.py [--data DEVKIT] [--split train_v2] [--pairs 64] [--n 100]

Without the real devkit it runs on a generated synthetic one (and says so).
Writes ``benchmarks/results/augment_speed.json`` and ``.md`` (atomically).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from bafenet.data import open_dataset
from bafenet.data.bagcp import MODES, BackgroundAwareCopyPaste
from bafenet.data.collate import collate_samples
from bafenet.data.pipeline import AugmentedDataset, build_train_pipeline, sample_rng
from bafenet.data.transforms import crop, hflip, resize
from bafenet.fileio import write_json, write_text

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DEVKIT = Path(__file__).resolve().parents[2] / "shared" / "data" / "DenseSIRST" / "SIRSTdevkit"


def median_time(fn: Callable[[], Any], reps: int) -> float:
    """Median wall time of ``fn()`` in seconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_bagcp(dataset: Any, pairs: int, passes: int) -> dict[str, Any]:
    pick = np.random.default_rng(0)
    ids = pick.choice(len(dataset), size=(min(pairs, len(dataset)), 2))
    samples = [(resize(dataset[int(i)], 512), resize(dataset[int(j)], 512)) for i, j in ids]
    results = {}
    for mode in MODES:
        cp = BackgroundAwareCopyPaste.from_mode(mode)
        pasted = [0]

        def run(cp: BackgroundAwareCopyPaste = cp, pasted: list[int] = pasted) -> None:
            pasted[0] = 0
            for k, (dst, src) in enumerate(samples):
                pasted[0] += len(cp.paste(dst, src, sample_rng(0, 0, k))[1])

        seconds = median_time(run, passes)
        results[mode] = {
            "images_per_s": round(len(samples) / seconds, 1),
            "ms_per_image": round(1000 * seconds / len(samples), 3),
            "pasted_per_call": round(pasted[0] / len(samples), 2),
        }
    return {"pairs": len(samples), "passes": passes, "modes": results}


def bench_transforms(dataset: Any, reps: int) -> dict[str, float]:
    sizes = [(dataset[i].height * dataset[i].width, i) for i in range(min(len(dataset), 64))]
    sample = dataset[max(sizes)[1]]  # the largest frame among the first 64
    resized = resize(sample, 512)
    ms = {
        f"resize {sample.height}x{sample.width} -> 512x512 (no antialias)": median_time(
            lambda: resize(sample, 512), reps
        ),
        f"resize {sample.height}x{sample.width} -> 512x512 (antialias)": median_time(
            lambda: resize(sample, 512, antialias=True), reps
        ),
        "hflip 512x512": median_time(lambda: hflip(resized), reps),
        "crop 256x256 of 512x512": median_time(lambda: crop(resized, 100, 120, 256, 256), reps),
        "collate 2 x 512x512": median_time(lambda: collate_samples([resized, resized]), reps),
    }
    return {k: round(1000 * v, 3) for k, v in ms.items()}


def bench_pipeline(dataset: Any, n: int) -> dict[str, Any]:
    pipeline = build_train_pipeline()  # the official recipe: 512x512, flip 0.5, faithful BAG-CP
    data = AugmentedDataset(dataset, pipeline, seed=0)
    n = min(n, len(data))
    data[0]  # warm-up
    decode, geometry, bagcp, total = [], [], [], []
    for i in range(n):
        start = time.perf_counter()
        data[i]
        total.append(time.perf_counter() - start)
        # the same work, split into its parts
        rng = sample_rng(0, 0, i)
        t0 = time.perf_counter()
        sample = dataset[i]
        source = dataset[int(rng.integers(len(data)))]
        t1 = time.perf_counter()
        dst = pipeline.geometric(sample, rng)
        src = pipeline.geometric(source, rng)
        t2 = time.perf_counter()
        pipeline.copy_paste.paste(dst, src, rng)
        t3 = time.perf_counter()
        decode.append(t1 - t0)
        geometry.append(t2 - t1)
        bagcp.append(t3 - t2)

    def ms(values: list[float]) -> float:
        return round(1000 * statistics.median(values), 2)

    return {
        "images": n,
        "total_ms_median": ms(total),
        "total_ms_mean": round(1000 * statistics.fmean(total), 2),
        "images_per_s_per_worker": round(1 / statistics.fmean(total), 1),
        "decode_two_images_ms": ms(decode),
        "resize_flip_two_images_ms": ms(geometry),
        "bagcp_ms": ms(bagcp),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Augmentation speed (one CPU core)",
        "",
        f"Data: {report['data']} ({report['split']}); {report['machine']}; torch {report['torch']}, "
        f"torchvision {report['torchvision']}, `torch.set_num_threads(1)`; load average at start "
        f"{report['load_average_1min_at_start']} (a shared machine: other jobs slow these numbers).",
        "",
        f"## BAG-CP at 512 x 512 ({report['bagcp']['pairs']} real pairs in memory, median of "
        f"{report['bagcp']['passes']} passes)",
        "",
        "| mode | images/s | ms/image | targets pasted/call |",
        "|---|---|---|---|",
    ]
    for mode, r in report["bagcp"]["modes"].items():
        lines.append(f"| {mode} | {r['images_per_s']} | {r['ms_per_image']} | {r['pasted_per_call']} |")
    lines += ["", "## Single transforms", "", "| transform | ms |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["transforms_ms"].items()]
    p = report["pipeline"]
    lines += [
        "",
        f"## Whole training pipeline per image ({p['images']} images, official recipe)",
        "",
        "| part | ms (median) |",
        "|---|---|",
        f"| decode image + copy-paste source (PNG) | {p['decode_two_images_ms']} |",
        f"| resize 512 + flip, both images | {p['resize_flip_two_images_ms']} |",
        f"| BAG-CP (faithful) | {p['bagcp_ms']} |",
        f"| **total** (`AugmentedDataset[i]`) | **{p['total_ms_median']}** "
        f"(mean {p['total_ms_mean']}; {p['images_per_s_per_worker']} images/s per worker) |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DEVKIT, help="DenseSIRST devkit folder")
    parser.add_argument("--split", default="train_v2")
    parser.add_argument("--pairs", type=int, default=64, help="image pairs for the BAG-CP timing")
    parser.add_argument("--passes", type=int, default=5, help="timed passes over the pairs")
    parser.add_argument("--n", type=int, default=100, help="images for the whole-pipeline timing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)

    data_label, split = str(args.data), args.split
    tmp = None
    if not (args.data / "PNGImages").is_dir():
        from bafenet.data.synthetic import write_synthetic_devkit

        tmp = tempfile.TemporaryDirectory()
        args.data = write_synthetic_devkit(Path(tmp.name) / "devkit", n=64, seed=0)
        data_label, split = "synthetic devkit (real data not found)", "train"
    dataset = open_dataset(args.data, split)

    report = {
        "data": data_label,
        "split": split,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "bagcp": bench_bagcp(dataset, args.pairs, args.passes),
        "transforms_ms": bench_transforms(dataset, reps=20),
        "pipeline": bench_pipeline(dataset, args.n),
    }
    write_json(args.out / "augment_speed.json", report)
    text = markdown(report)
    write_text(args.out / "augment_speed.md", text)
    print(text)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
