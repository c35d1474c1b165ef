"""Cost of the sky context: a high-resolution model with and without ``sky_context``.

* inference: one 1280 x 1024 frame at x2 (a 2560 x 2048 input), bf16 autocast on CPU as
  ``bafenet val`` runs it (``eval.amp``), post-processing included; the context model makes
  its own 256-px context from the input;
* train step: a batch of 384 x 384 crops (forward with losses, backward, AdamW step), each
  with the 256 x 205 context of a 1280 x 1024 frame (float32, as the CPU training runs).

After one untimed warm-up of each, the models are timed in turns (their order alternating
every repetition), so a slow phase of a shared machine hits both alike. Wall-clock seconds and
process CPU seconds (all threads) are printed for every run; the table gives the minima. On
a machine shared with other work the CPU seconds are the steadier measure of the cost.

    python benchmarks/sky_context_cost.py [--model bafenet_hr] [--reps 2] [--batch 4]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from bafenet.models.zoo import build_model


def crops_with_context(batch: int, seed: int = 0) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """384-px crops with DenseSIRST-like boxes, sky maps and the context of a 1280 x 1024 frame."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 1, 384, 384, generator=gen) * 255
    targets = []
    for _ in range(batch):
        corner = torch.rand(8, 2, generator=gen) * 370
        boxes = torch.cat([corner, corner + 6 + torch.rand(8, 2, generator=gen) * 4], dim=1)
        sky = torch.zeros(205, 256, dtype=torch.uint8)
        sky[:120] = 1
        x1, y1 = (torch.rand(2, generator=gen) * torch.tensor([200.0, 150.0])).tolist()
        targets.append(
            {
                "boxes": boxes,
                "sky_mask": (torch.rand(384, 384, generator=gen) > 0.5).to(torch.uint8),
                "context_image": torch.rand(1, 205, 256, generator=gen) * 255,
                "context_sky": sky,
                "crop_box": torch.tensor([x1, y1, x1 + 38.4, y1 + 38.4]),  # 192 native px at 0.2
            }
        )
    return images, targets


def time_inference(model: torch.nn.Module, frame: torch.Tensor) -> tuple[float, float]:
    """(wall, CPU) seconds of one bf16 inference with post-processing."""
    model.eval()
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(frame, image_sizes=[tuple(frame.shape[-2:])], original_sizes=[(1024, 1280)])
    return time.perf_counter() - wall, time.process_time() - cpu


def time_train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch) -> tuple[float, float]:
    """(wall, CPU) seconds of one training step."""
    model.train()
    images, targets = batch
    wall, cpu = time.perf_counter(), time.process_time()
    loss = sum(model(images, targets).values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bafenet_hr", choices=["bafenet_hr", "fcos_seg_hr"])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    models = {}
    for name, options in (("plain", {}), ("sky_context", {"sky_context": True})):
        torch.manual_seed(0)
        model = build_model(args.model, **options)
        models[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))
    frame = torch.rand(1, 1, 2048, 2560) * 255
    batch = crops_with_context(args.batch)
    for model, optimizer in models.values():  # warm-up: first calls at a new shape are slower
        time_inference(model, frame)
        time_train_step(model, optimizer, batch)
    times: dict[str, dict[str, list[tuple[float, float]]]] = {n: {"infer": [], "train": []} for n in models}
    for rep in range(args.reps):
        order = list(models) if rep % 2 == 0 else list(models)[::-1]
        for name in order:
            model, optimizer = models[name]
            times[name]["infer"].append(time_inference(model, frame))
            times[name]["train"].append(time_train_step(model, optimizer, batch))
            (iw, ic), (tw, tc) = times[name]["infer"][-1], times[name]["train"][-1]
            print(f"rep {rep} {name}: infer {iw:.2f} s ({ic:.2f} CPU s), train {tw:.2f} s ({tc:.2f} CPU s)")
    # per model and part: [min wall, min CPU]
    best = {n: {k: [min(t[i] for t in v) for i in (0, 1)] for k, v in p.items()} for n, p in times.items()}
    infer_col = "infer 2560x2048 bf16: wall s, CPU s"
    print(f"\n| {args.model} | {infer_col} | train step {args.batch} x 384: wall s, CPU s |")
    print("|---|---|---|")
    for name, parts in best.items():
        cells = [
            ", ".join(f"{v:.2f} ({v / best['plain'][k][i]:.2f}x)" for i, v in enumerate(parts[k]))
            for k in ("infer", "train")
        ]
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
