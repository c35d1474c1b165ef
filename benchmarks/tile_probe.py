"""Whole-frame vs tiled evaluation of one checkpoint on the first N large val_v2 frames.

Diagnoses models whose features use a global mean over the input (BAFE-Net's channel
selector): trained on 384-px crops, they see other statistics on a whole 2560 x 2048 frame.
One CPU thread, so it can run beside a training job.

    python benchmarks/tile_probe.py WEIGHTS --data DEVKIT [--n 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from bafenet.data import open_dataset
from bafenet.engine.evaluate import evaluate_with_config, frame_size_group
from bafenet.engine.inference import load_trained_model


def first_frames_by_size(dataset: torch.utils.data.Dataset, n: int) -> dict[str, list[int]]:
    """Indices of the first ``n`` small and the first ``n`` large frames (reads no further)."""
    picked: dict[str, list[int]] = {"small": [], "large": []}
    for i in range(len(dataset)):
        group = frame_size_group(dataset[i].image.shape)
        if len(picked[group]) < n:
            picked[group].append(i)
        if all(len(indices) == n for indices in picked.values()):
            break
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights")
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=8, help="number of large frames")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, cfg, _ = load_trained_model(args.weights, torch.device("cpu"))
    dataset = open_dataset(args.data, "val_v2")
    subset = torch.utils.data.Subset(dataset, first_frames_by_size(dataset, args.n)["large"])
    for protocol, tile in (("native", 0), ("tiles", 384), ("tiles", 768)):
        eval_cfg = dataclasses.replace(cfg.eval, protocol=protocol, tile_size=tile or 1024, tile_overlap=32)
        start = time.time()
        metrics, _ = evaluate_with_config(
            model, subset, dataclasses.replace(cfg, eval=eval_cfg), torch.device("cpu"), progress=False
        )
        print(
            protocol,
            tile,
            f"mAP07 {metrics['mAP07']:.3f} recall {metrics['recall']:.3f} n {metrics['num_images']}"
            f" {time.time() - start:.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
