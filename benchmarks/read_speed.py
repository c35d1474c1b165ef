"""How fast the DenseSIRST reader reads a split, and where the time goes.

Measured on one split (default ``trainval_v2``, 768 images):

* full read: ``DenseSIRST(root, split)[i]`` for every ``i`` (image, boxes, target mask,
  points matched to boxes, sky mask -> ``Sample``), ``--reps`` passes, no cache;
* the same with ``cache=True``: the filling pass and a pass served from memory;
* the parts alone: image decode, box-file parse, the two masks, point file + matching;
* ``bafenet data check`` on the split (decodes every file and its twin, cross-checks).

The files are read once before timing so that every pass sees the OS file cache warm.

    python benchmarks/read_speed.py [ROOT] [--split trainval_v2] [--reps 3]

Writes ``benchmarks/results/read_speed.json`` and ``.md`` (atomically).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from bafenet.data.check import check_dataset
from bafenet.data.densesirst import DenseSIRST, match_points_to_boxes, read_first_existing, read_point_file
from bafenet.data.imageio import read_raw
from bafenet.data.voc_xml import parse_voc_xml
from bafenet.fileio import write_json, write_text

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "DenseSIRST" / "SIRSTdevkit"


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _pixels(path: Path) -> int:
    with Image.open(path) as image:  # header only
        return image.width * image.height


def _read_all(dataset: DenseSIRST) -> None:
    for index in range(len(dataset)):
        dataset[index]


def _warm_file_cache(dataset: DenseSIRST) -> None:
    for image_id in dataset.ids:
        files = dataset.files(image_id)
        for path in (files.image, files.boxes, files.target_mask, files.points, files.sky_palette):
            path.read_bytes()


def _parts(dataset: DenseSIRST) -> dict[str, float]:
    """Seconds for each kind of file over the whole split."""
    files = [dataset.files(image_id) for image_id in dataset.ids]
    parts = {
        "image decode": lambda: [read_raw(f.image) for f in files],
        "box files": lambda: [parse_voc_xml(f.boxes) for f in files],
        "target masks": lambda: [read_first_existing(f.target_mask, f.target_palette, False) for f in files],
        "sky masks": lambda: [read_first_existing(f.sky_palette, f.sky_mask, True) for f in files],
    }
    timings = {name: _timed(run) for name, run in parts.items()}
    boxes = [parse_voc_xml(f.boxes).boxes for f in files]
    timings["point files + matching"] = _timed(
        lambda: [
            match_points_to_boxes(read_point_file(f.points), b) for f, b in zip(files, boxes, strict=True)
        ]
    )
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT, help="the devkit folder")
    parser.add_argument("--split", default="trainval_v2")
    parser.add_argument("--reps", type=int, default=3, help="timed passes of the full read (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]
    dataset = DenseSIRST(args.root, args.split)
    n_images = len(dataset)
    n_targets = sum(dataset[i].num_targets for i in range(n_images))  # also warms caches
    _warm_file_cache(dataset)
    passes = [_timed(lambda: _read_all(dataset)) for _ in range(args.reps)]
    cached = DenseSIRST(args.root, args.split, cache=True)
    cache_fill = _timed(lambda: _read_all(cached))
    cache_hit = _timed(lambda: _read_all(cached))
    parts = _parts(dataset)
    check_seconds = _timed(lambda: check_dataset(args.root, args.split))
    megapixels = sum(_pixels(dataset.files(image_id).image) for image_id in dataset.ids) / 1e6

    best = min(passes)
    result = {
        "split": args.split,
        "images": n_images,
        "targets": n_targets,
        "megapixels": round(megapixels, 1),
        "full_read_seconds": [round(t, 3) for t in passes],
        "full_read_best_seconds": round(best, 3),
        "ms_per_image": round(1000 * best / n_images, 2),
        "images_per_second": round(n_images / best, 1),
        "cache_fill_seconds": round(cache_fill, 3),
        "cache_hit_seconds": round(cache_hit, 3),
        "parts_seconds": {name: round(t, 3) for name, t in parts.items()},
        "check_seconds": round(check_seconds, 3),
        "budget_seconds": 30.0,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": round(load_at_start, 2),
            "python": platform.python_version(),
            "pillow": PIL.__version__,
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
    }

    def row(what: str, seconds: float) -> str:
        return f"| {what} | {seconds:.2f} | {1000 * seconds / n_images:.1f} |"

    lines = [
        f"# DenseSIRST read speed ({args.split}: {n_images} images, {n_targets} targets, "
        f"{megapixels:.0f} MP)",
        "",
        f"`python benchmarks/read_speed.py --split {args.split} --reps {args.reps}` on "
        f"{os.cpu_count()} CPU cores (load average {load_at_start:.1f} at the start: a shared machine), "
        f"Pillow {PIL.__version__}; one process, warm OS file cache.",
        "",
        "| what | seconds | per image (ms) |",
        "|---|---|---|",
        row(f"full read `DenseSIRST(...)[i]`, best of {args.reps}", best),
        f"| full read, every pass | {', '.join(f'{t:.2f}' for t in passes)} | |",
        row("`cache=True`, first pass (fills the cache)", cache_fill),
        row("`cache=True`, next pass (from memory)", cache_hit),
        row(f"`bafenet data check --split {args.split}`", check_seconds),
        "",
        "Where a full read goes (each part alone over the split):",
        "",
        "| part | seconds |",
        "|---|---|",
        *[f"| {name} | {t:.2f} |" for name, t in parts.items()],
        "",
        f"Budget: a full read must take at most 30 s here; it took {best:.1f} s.",
        "",
    ]
    report = "\n".join(lines)
    write_json(args.out / "read_speed.json", result)
    write_text(args.out / "read_speed.md", report)
    print(report)


if __name__ == "__main__":
    main()
