"""Does the exchange select the same channels on a whole frame as on crops of it?

For the first N small and N large val_v2 frames (at the checkpoint's eval scale), the channel
exchange's selection on the whole frame is compared with its selection on non-overlapping
crops of the training crop size: the mean Jaccard overlap of the selected channel sets, per
pyramid level and task. A selector that pools over the whole input can pick other channels
on a whole large frame than it did on the crops it was trained on. One CPU thread.

    python benchmarks/selector_probe.py WEIGHTS --data DEVKIT [--n 4] [--crop 384]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from bafenet.data import open_dataset
from bafenet.engine.inference import EvalGeometry, load_trained_model
from bafenet.models.exchange import ChannelExchange, select_channels
from tile_probe import first_frames_by_size


def selections(model: torch.nn.Module, image: torch.Tensor) -> list[list[set[int]]]:
    """Per head call (pyramid level): the [seg, cls] selected channel sets of a (1, 1, H, W) image."""
    exchange = next(m for m in model.modules() if isinstance(m, ChannelExchange))
    calls: list[list[set[int]]] = []
    original = exchange.channel_scores

    def recording(x: torch.Tensor) -> torch.Tensor:
        scores = original(x)
        index = select_channels(scores.float(), exchange.k)[0].tolist()
        if not calls or len(calls[-1]) == 2:
            calls.append([])
        calls[-1].append(set(index))
        return scores

    exchange.channel_scores = recording
    try:
        with torch.no_grad():
            model.head_outputs(image)
    finally:
        del exchange.channel_scores
    return calls


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights")
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=4, help="frames per size group")
    parser.add_argument("--crop", type=int, default=384)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, cfg, _ = load_trained_model(args.weights, torch.device("cpu"))
    model.eval()
    geometry = EvalGeometry.from_config(cfg)
    dataset = open_dataset(args.data, "val_v2")
    c = args.crop
    for group, indices in first_frames_by_size(dataset, args.n).items():
        overlap: dict[tuple[int, str], list[float]] = defaultdict(list)
        across: dict[tuple[int, str], list[set[int]]] = defaultdict(list)
        for i in indices:
            sample = geometry.transform(dataset[i])
            image = torch.as_tensor(np.asarray(sample.image, np.float32))[None, None]
            height, width = image.shape[-2:]
            whole = selections(model, image)
            for level, sets in enumerate(whole):
                for task, chosen in zip(("seg", "cls"), sets, strict=True):
                    across[(level, task)].append(chosen)
            for y in range(0, height - c + 1, c):
                for x in range(0, width - c + 1, c):
                    crop = selections(model, image[..., y : y + c, x : x + c])
                    for level, (sets_whole, sets_crop) in enumerate(zip(whole, crop, strict=True)):
                        for task, a, b in zip(("seg", "cls"), sets_whole, sets_crop, strict=True):
                            overlap[(level, task)].append(jaccard(a, b))
        print(f"{group} frames ({len(indices)}, shape of the last {tuple(image.shape[-2:])}):")
        for (level, task), values in sorted(overlap.items()):
            sets = across[(level, task)]
            between = [jaccard(a, b) for j, a in enumerate(sets) for b in sets[j + 1 :]]
            print(
                f"  level {level} {task}: whole vs crops Jaccard {np.mean(values):.2f}"
                f" (min {np.min(values):.2f}, {len(values)} crops);"
                f" whole frames between each other {np.mean(between) if between else float('nan'):.2f}"
            )


if __name__ == "__main__":
    main()
