"""Probe: how much sky and how much ground the training crops show (data only, no model).

For the training pipeline of a budget run (its ``config.yaml`` under
``benchmarks/work/budget_hr/<run>/``; the model is not loaded) it draws ``--items`` training
samples of epoch 0 exactly as the trainer does (crops, flips, BAG-CP) for each
``--background-crop-prob`` and compares them with the whole frames they come from, by frame
size (small: long side <= 640 px, large otherwise):

* ``frame_sky_share``: annotated sky share of the whole frames (ignored pixels left out);
* ``crop_sky_share``: the same over the crops' pixels;
* ``mostly_ground_crops``: share of crops with less than half their pixels on the sky;
* ``ground_rate``: how often a ground pixel is seen relative to a sky pixel of the same frames,
  ``(crop ground / frame ground) / (crop sky / frame sky)``; 1 samples both alike, 0.1 shows a
  ground pixel ten times less often than a sky pixel.

The false alarms that the sky gate removes sit on the ground, mostly of large frames; a
detector (and a learned sky scoring) trained on crops that rarely show that ground learns
little about it. Writes ``benchmarks/results/crop_probe.json`` and ``crop_probe.md``.

    python benchmarks/crop_probe.py fcos_hr_s0 --data DEVKIT
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bafenet.config import Config, load_config
from bafenet.data import open_for_run
from bafenet.data.pipeline import AugmentedDataset
from bafenet.data.sample import SKY, UNKNOWN
from bafenet.engine.setup import build_train_transform
from bafenet.fileio import write_json, write_text

WORK = "benchmarks/work/budget_hr"
RESULTS = Path("benchmarks/results")
SMALL_LONG_SIDE = 640  # the budget tables' small / large split
PARTS = ("small", "large")


def sky_counts(sky_mask: np.ndarray) -> np.ndarray:
    """(sky, ground) pixel counts of a 0 / 1 / 255 mask; ignored pixels count as neither."""
    sky = int((sky_mask == SKY).sum())
    return np.array([sky, int((sky_mask != UNKNOWN).sum()) - sky], dtype=np.float64)


def frame_part(height: int, width: int) -> str:
    return "small" if max(height, width) <= SMALL_LONG_SIDE else "large"


def frame_counts(dataset) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per frame size, summed (sky, ground) pixels of the whole frames and their number; and
    each frame's size part."""
    totals = {part: np.zeros(3) for part in PARTS}
    parts = []
    for i in range(len(dataset)):
        mask = dataset[i].sky_mask
        parts.append(frame_part(*mask.shape))
        totals[parts[-1]] += [*sky_counts(mask), 1]
    return totals, parts


def crop_counts(dataset, cfg: Config, items: np.ndarray, parts: list[str]) -> dict[str, np.ndarray]:
    """Per frame size (``parts``: each frame's), summed (sky, ground) crop pixels, crops mostly
    on the ground, crops."""
    augmented = AugmentedDataset(dataset, build_train_transform(cfg), seed=cfg.train.seed)
    totals = {part: np.zeros(4) for part in PARTS}
    for index in tqdm(items, desc=f"background crops {cfg.data.input.background_crop_prob}", unit="crop"):
        sky, ground = sky_counts(augmented[int(index)].sky_mask)
        totals[parts[int(index)]] += [sky, ground, sky < ground, 1]
    return totals


def summary(frames: np.ndarray, crops: np.ndarray) -> dict:
    """The measures of the module for one frame size (inputs from the two counters)."""
    frame_sky, frame_ground, n_frames = frames
    crop_sky, crop_ground, mostly_ground, n_crops = crops
    rate = (crop_ground / frame_ground) / (crop_sky / frame_sky) if min(frame_ground, crop_sky) > 0 else None
    return {
        "frames": int(n_frames),
        "crops": int(n_crops),
        "frame_sky_share": frame_sky / (frame_sky + frame_ground),
        "crop_sky_share": crop_sky / (crop_sky + crop_ground) if n_crops else None,
        "mostly_ground_crops": mostly_ground / n_crops if n_crops else None,
        "ground_rate": rate,
    }


def probe(run: str, data: str | None, work: str, probs: list[float], n_items: int) -> dict:
    cfg = load_config(Path(work) / run / "config.yaml", [f"data.root={data}"] if data else [])
    dataset, _ = open_for_run(cfg.data, cfg.data.train_split, progress=False)
    items = np.random.default_rng(0).choice(len(dataset), min(n_items, len(dataset)), replace=False)
    frames, parts = frame_counts(dataset)
    by_prob = {}
    for prob in probs:
        cfg.data.input.background_crop_prob = prob
        crops = crop_counts(dataset, cfg, items, parts)
        by_prob[str(prob)] = {part: summary(frames[part], crops[part]) for part in PARTS}
    split = cfg.data.train_split
    return {"run": run, "split": split, "items": len(items), "by_background_crop_prob": by_prob}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f} %"


def table(record: dict) -> str:
    lines = [
        "# What the training crops show (sky vs ground)",
        "",
        f"`python benchmarks/crop_probe.py {record['run']} --data DEVKIT`: {record['items']} training",
        f"samples of epoch 0 of {record['split']} through `{record['run']}`'s pipeline, against their",
        "whole frames.",
        "Ground rate: how often a ground pixel is seen relative to a sky pixel (1 = alike).",
        "",
        "| background crops | frames | sky share: frames | sky share: crops | crops mostly ground"
        " | ground rate |",
        "|---|---|---|---|---|---|",
    ]
    for prob, parts in record["by_background_crop_prob"].items():
        for part, s in parts.items():
            rate = "—" if s["ground_rate"] is None else f"{s['ground_rate']:.2f}"
            lines.append(
                f"| {prob} | {part} ({s['frames']} frames, {s['crops']} crops) "
                f"| {_pct(s['frame_sky_share'])} | {_pct(s['crop_sky_share'])} "
                f"| {_pct(s['mostly_ground_crops'])} | {rate} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a budget run under --work (its config.yaml is read)")
    parser.add_argument("--data", help="the SIRSTdevkit folder (default: the run's data.root)")
    parser.add_argument("--work", default=WORK)
    parser.add_argument("--items", type=int, default=512, help="training samples drawn (default 512)")
    parser.add_argument("--background-crop-prob", type=float, nargs="+", default=[0.0, 0.25])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of crop_probe.json / .md")
    args = parser.parse_args()
    record = probe(args.run, args.data, args.work, args.background_crop_prob, args.items)
    write_json(args.out / "crop_probe.json", record)
    write_text(args.out / "crop_probe.md", table(record))
    print(table(record))


if __name__ == "__main__":
    main()
