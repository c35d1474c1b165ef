"""CPU speed of the zoo models against torchvision's FCOS-R50, and of the vectorised exchange.

One interleaved run (the model order rotates every repetition, so slow phases of a shared
machine hit every model alike):

* inference, batch 1, 512 x 512 (``torch.inference_mode``, post-processing included);
* train step, batch 2, 512 x 512 (forward with losses, backward, SGD step);

for fcos / fcos_seg / bafenet (R18, R50) and torchvision ``fcos_resnet50_fpn`` (no weights,
``num_classes=2`` = one target class plus background, its own transform set to no resize:
``min_size = max_size = 512``). Times are medians; ratios are to torchvision FCOS-R50.
Also: where the time of BAFE-Net-R18 goes (module breakdown of inference, top operators of
inference and of a train step from ``torch.profiler``), and the channel exchange vectorised
vs a per-sample Python loop at batch 8.

    python benchmarks/model_speed.py [--reps 7] [--size 512] [--quick]

Writes ``benchmarks/results/model_speed.json`` and ``.md`` (atomically).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from bafenet.fileio import write_json, write_text
from bafenet.models.exchange import ChannelExchange, gather_channels, replace_channels, select_channels
from bafenet.models.zoo import build_model

RESULTS = Path(__file__).resolve().parent / "results"
OURS = ["fcos_r18", "fcos_seg_r18", "bafenet_r18", "fcos_r50", "fcos_seg_r50", "bafenet_r50"]
REFERENCE = "torchvision_fcos_r50"
NCHW_VARIANT = "bafenet_r18 (NCHW layout)"


# ------------------------------------------------------------------------------ inputs
def synthetic_batch(
    batch: int, size: int, seed: int, device: str = "cpu"
) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Grey images 0..255 and DenseSIRST-like targets: 13 boxes of 3-6 px, a sky map."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 1, size, size, generator=gen) * 255
    targets = []
    for _ in range(batch):
        corner = torch.rand(13, 2, generator=gen) * (size - 8)
        boxes = torch.cat([corner, corner + 3 + torch.rand(13, 2, generator=gen) * 3], dim=1)
        sky = (torch.rand(size, size, generator=gen) > 0.3).to(torch.uint8)
        targets.append({"boxes": boxes, "sky_mask": sky, "labels": torch.zeros(13, dtype=torch.int64)})
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    return images.to(device), targets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """One model with its inference and train-step closures."""

    def __init__(self, name: str, model: nn.Module, infer: Callable[[], object], loss: Callable[[], Tensor]):
        self.name = name
        self.model = model
        self.device = next(model.parameters()).device
        self.infer_fn = infer
        self.loss_fn = loss
        self.optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-7)

    def infer(self) -> float:
        self.model.eval()
        _sync(self.device)
        start = time.perf_counter()
        with torch.inference_mode():
            self.infer_fn()
        _sync(self.device)
        return time.perf_counter() - start

    def train_step(self) -> float:
        self.model.train()
        _sync(self.device)
        start = time.perf_counter()
        loss = self.loss_fn()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        _sync(self.device)
        return time.perf_counter() - start


def ours(name: str, size: int, device: str, channels_last: bool = True) -> Bench:
    model = build_model(name.split(" ")[0]).to(device)
    if not channels_last:
        model = model.to(memory_format=torch.contiguous_format)
    image, _ = synthetic_batch(1, size, seed=0, device=device)
    images, targets = synthetic_batch(2, size, seed=1, device=device)
    return Bench(name, model, lambda: model(image), lambda: sum(model(images, targets).values()))


def torchvision_fcos(size: int, device: str) -> Bench:
    model = torchvision.models.detection.fcos_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=2, min_size=size, max_size=size
    ).to(device)
    image, _ = synthetic_batch(1, size, seed=0, device=device)
    images, targets = synthetic_batch(2, size, seed=1, device=device)
    # its own transform scales by ImageNet mean/std from [0, 1] RGB; labels are 1-based there
    one = [image[0].expand(3, -1, -1) / 255]
    two = [im.expand(3, -1, -1) / 255 for im in images]
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
    return Bench(REFERENCE, model, lambda: model(one), lambda: sum(model(two, tv_targets).values()))


# ------------------------------------------------------------------------------ measurements
def interleaved_times(benches: list[Bench], reps: int) -> dict[str, dict[str, list[float]]]:
    """Per model, ``infer`` and ``train`` times (s) of ``reps`` repetitions, order rotating."""
    for bench in benches:  # warm-up (oneDNN primitive creation, allocator)
        bench.infer()
        bench.train_step()
    times: dict[str, dict[str, list[float]]] = {b.name: {"infer": [], "train": []} for b in benches}
    for rep in range(reps):
        order = benches[rep % len(benches) :] + benches[: rep % len(benches)]
        for bench in order:
            times[bench.name]["infer"].append(bench.infer())
            times[bench.name]["train"].append(bench.train_step())
        print(f"  repetition {rep + 1}/{reps} done", flush=True)
    return times


def bf16_inference(benches: list[Bench], reps: int) -> dict[str, float]:
    """Median inference ms under CPU bfloat16 autocast (AMX where the CPU has it), interleaved."""
    times: dict[str, list[float]] = {b.name: [] for b in benches}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for bench in benches:
            bench.infer()
        for _ in range(reps):
            for bench in benches:
                times[bench.name].append(bench.infer())
    return {name: round(1e3 * statistics.median(t), 1) for name, t in times.items()}


def module_breakdown(model: nn.Module, image: Tensor, runs: int = 3) -> dict[str, float]:
    """Mean inference milliseconds spent in each part of a zoo model (forward hooks; CPU only)."""
    head = model.head
    parts: dict[str, list[nn.Module]] = {
        "backbone": [model.backbone],
        "fpn": [model.neck],
        "towers (cls, reg, sky)": [head.cls_tower, head.reg_tower]
        + ([head.sky_tower] if head.sky_tower else []),
    }
    cross = head.cross_task
    if cross is not None:
        if cross.lsk is not None:
            parts["LSK attention"] = [cross.lsk]
        parts["refinement blocks"] = [cross.refine_seg, cross.refine_cls]
        if cross.exchange is not None:
            parts["channel exchange (selector + MLP)"] = [cross.exchange]
    spent: dict[str, float] = defaultdict(float)
    handles = []
    for part, modules in parts.items():
        for module in modules:
            handles += _timing_hooks(module, part, spent)
    model.eval()
    total = 0.0
    with torch.inference_mode():
        model(image)
        spent.clear()
        for _ in range(runs):
            start = time.perf_counter()
            model(image)
            total += time.perf_counter() - start
    for handle in handles:
        handle.remove()
    result = {part: 1e3 * spent[part] / runs for part in parts}
    result["predictors + post-processing"] = 1e3 * total / runs - sum(result.values())
    result["total"] = 1e3 * total / runs
    return result


def _timing_hooks(module: nn.Module, part: str, spent: dict[str, float]) -> list:
    """Forward hooks adding the seconds spent in ``module`` to ``spent[part]``."""
    started: list[float] = []

    def pre(mod, args):
        started.append(time.perf_counter())

    def post(mod, args, out):
        spent[part] += time.perf_counter() - started.pop()

    return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]


def top_operators(fn: Callable[[], object], device: str = "cpu", rows: int = 10) -> list[dict[str, object]]:
    """The operators with most self time (CPU, or CUDA kernels on a GPU) over one call of ``fn``."""
    fn()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
    attribute = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, attribute), reverse=True)
    total = sum(getattr(e, attribute) for e in events) or 1.0
    return [
        {
            "op": e.key if len(e.key) <= 60 else e.key[:57] + "...",
            "self_ms": round(getattr(e, attribute) / 1e3, 1),
            "share": round(getattr(e, attribute) / total, 3),
            "calls": e.count,
        }
        for e in events[:rows]
    ]


# ------------------------------------------------------------------------------ exchange
def _linear_over_channels(x: Tensor, linear: nn.Linear) -> Tensor:
    """(k, H, W) -> (k', H, W) applying ``linear`` to every pixel's channel vector."""
    return linear(x.permute(1, 2, 0)).permute(2, 0, 1)


def exchange_loop(ex: ChannelExchange, seg: Tensor, cls: Tensor) -> tuple[Tensor, Tensor]:
    """The per-sample form (as the official code): two full clones and a loop over the batch."""
    seg_out, cls_out = seg.clone(), cls.clone()
    for b in range(seg.shape[0]):
        index_seg = select_channels(ex.channel_scores(seg[b : b + 1]), ex.k)[0]
        index_cls = select_channels(ex.channel_scores(cls[b : b + 1]), ex.k)[0]
        mlp = lambda v: _linear_over_channels(F.relu(_linear_over_channels(v, ex.fc1)), ex.fc2)  # noqa: E731
        seg_out[b, index_seg] = mlp(cls[b, index_cls])
        cls_out[b, index_cls] = mlp(seg[b, index_seg])
    return seg_out, cls_out


def exchange_step_loop(ex: ChannelExchange, seg: Tensor, cls: Tensor, idx_seg: Tensor, idx_cls: Tensor):
    """Exchange given the selected indices, per-sample loop (clones, index, MLP, assign)."""
    seg_out, cls_out = seg.clone(), cls.clone()
    mlp = lambda v: _linear_over_channels(F.relu(_linear_over_channels(v, ex.fc1)), ex.fc2)  # noqa: E731
    for b in range(seg.shape[0]):
        seg_out[b, idx_seg[b]] = mlp(cls[b, idx_cls[b]])
        cls_out[b, idx_cls[b]] = mlp(seg[b, idx_seg[b]])
    return seg_out, cls_out


def exchange_step_vectorised(ex: ChannelExchange, seg: Tensor, cls: Tensor, idx_seg: Tensor, idx_cls: Tensor):
    """Exchange given the selected indices, vectorised (gather, one MLP call, scatter)."""
    sel_seg, sel_cls = gather_channels(seg, idx_seg), gather_channels(cls, idx_cls)
    to_seg, to_cls = ex.mix(torch.cat([sel_cls, sel_seg])).split(seg.shape[0])
    return replace_channels(seg, idx_seg, to_seg), replace_channels(cls, idx_cls, to_cls)


def _median_ms(fn: Callable[[], object], reps: int, device: torch.device) -> float:
    fn()
    samples = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


def exchange_speed(batch: int, size: int, reps: int, device: str) -> dict[str, object]:
    """Vectorised vs per-sample exchange on (batch, 256, size, size) features (P3 of the input)."""
    torch.manual_seed(0)
    # channels-last features and weights, as in the zoo models
    ex = ChannelExchange(256, 0.5, 64, "fixed").eval().to(device, memory_format=torch.channels_last)
    seg = (
        torch.randn(batch, 256, size, size, device=device)
        .relu()
        .contiguous(memory_format=torch.channels_last)
    )
    cls = (
        torch.randn(batch, 256, size, size, device=device)
        .relu()
        .contiguous(memory_format=torch.channels_last)
    )
    sync = torch.device(device)
    with torch.inference_mode():
        idx_seg = select_channels(ex.channel_scores(seg), ex.k)
        idx_cls = select_channels(ex.channel_scores(cls), ex.k)
        vec_out, loop_out = ex(seg, cls), exchange_loop(ex, seg, cls)
        max_diff = max((a - b).abs().max().item() for a, b in zip(vec_out, loop_out, strict=True))
        full_vec = _median_ms(lambda: ex(seg, cls), reps, sync)
        full_loop = _median_ms(lambda: exchange_loop(ex, seg, cls), reps, sync)
        step_vec = _median_ms(lambda: exchange_step_vectorised(ex, seg, cls, idx_seg, idx_cls), reps, sync)
        step_loop = _median_ms(lambda: exchange_step_loop(ex, seg, cls, idx_seg, idx_cls), reps, sync)
    return {
        "batch": batch,
        "feature": [batch, 256, size, size],
        "max_abs_difference": max_diff,
        "module_vectorised_ms": round(full_vec, 2),
        "module_loop_ms": round(full_loop, 2),
        "module_speedup": round(full_loop / full_vec, 2),
        "exchange_only_vectorised_ms": round(step_vec, 2),
        "exchange_only_loop_ms": round(step_loop, 2),
        "exchange_only_speedup": round(step_loop / step_vec, 2),
    }


# ------------------------------------------------------------------------------ report
def markdown(result: dict) -> str:
    machine = result["machine"]
    on_gpu = result["device"] == "cuda"
    where = machine["gpu"] if on_gpu else f"{machine['cpu']} ({machine['threads']} threads)"
    lines = [
        f"# Model speed ({'GPU' if on_gpu else 'CPU'})",
        "",
        f"`python benchmarks/model_speed.py --reps {result['reps']} --size {result['size']}"
        f"{' --device cuda' if on_gpu else ''}` on {where}, torch {machine['torch']}. "
        "Medians of interleaved repetitions; ratio = time / torchvision FCOS-R50.",
        "",
        "| model | inference b1 (ms) | ratio | train step b2 (ms) | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, row in result["models"].items():
        lines.append(
            f"| {name} | {row['infer_ms']:.0f} | {row['infer_ratio']:.2f} | {row['train_ms']:.0f} | "
            f"{row['train_ratio']:.2f} |"
        )
    if result.get("bf16_autocast_infer_ms"):
        bf16 = result["bf16_autocast_infer_ms"]
        lines += [
            "",
            "Inference under `torch.autocast('cpu', dtype=torch.bfloat16)` (not the fp32 default; "
            "bf16 numerics): " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in bf16.items()) + ".",
        ]
    lines += ["", "## Where the time goes: BAFE-Net-R18"]
    if "inference_modules_ms" in result["profile"]:
        lines += ["", "Inference, batch 1, by part (forward hooks):", "", "| part | ms |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in result["profile"]["inference_modules_ms"].items()]
    clock = "CUDA kernel time" if on_gpu else "self CPU time"
    for key, title in (("inference_ops", "inference, batch 1"), ("train_ops", "train step, batch 2")):
        lines += [
            "",
            f"Top operators ({title}, {clock}):",
            "",
            "| op | ms | share | calls |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {o['op']} | {o['self_ms']} | {o['share']:.1%} | {o['calls']} |"
            for o in result["profile"][key]
        ]
    ex = result["exchange"]
    lines += [
        "",
        f"## Channel exchange, batch {ex['batch']}, features {tuple(ex['feature'])}",
        "",
        "| | vectorised (ms) | per-sample loop (ms) | speed-up |",
        "|---|---|---|---|",
        f"| exchange only (given the selected channels) | {ex['exchange_only_vectorised_ms']} | "
        f"{ex['exchange_only_loop_ms']} | {ex['exchange_only_speedup']}x |",
        f"| whole module (selector + exchange) | {ex['module_vectorised_ms']} | {ex['module_loop_ms']} | "
        f"{ex['module_speedup']}x |",
        "",
        f"Largest difference between the two outputs: {ex['max_abs_difference']:.2e}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="interleaved repetitions (default 7)")
    parser.add_argument("--size", type=int, default=512, help="input side (default 512)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 128 px, 1 repetition, no writing")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    parser.add_argument(
        "--device", default="cpu", help="cpu (default) or cuda; cuda writes model_speed_cuda.*"
    )
    args = parser.parse_args()
    size, reps = (128, 1) if args.quick else (args.size, args.reps)
    device = args.device
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # for every model alike
    torch.manual_seed(0)
    benches = [ours(name, size, device) for name in OURS]
    benches += [ours(NCHW_VARIANT, size, device, channels_last=False), torchvision_fcos(size, device)]
    print(f"timing {len(benches)} models, {reps} repetitions at {size} x {size} on {device}", flush=True)
    times = interleaved_times(benches, reps)
    ref_infer = statistics.median(times[REFERENCE]["infer"])
    ref_train = statistics.median(times[REFERENCE]["train"])
    models = {}
    for name, t in times.items():
        infer, train = statistics.median(t["infer"]), statistics.median(t["train"])
        models[name] = {
            "infer_ms": round(1e3 * infer, 1),
            "infer_ratio": round(infer / ref_infer, 3),
            "train_ms": round(1e3 * train, 1),
            "train_ratio": round(train / ref_train, 3),
            "infer_all_ms": [round(1e3 * v, 1) for v in t["infer"]],
            "train_all_ms": [round(1e3 * v, 1) for v in t["train"]],
        }
    bf16 = None
    if device == "cpu":
        print("bfloat16 autocast inference", flush=True)
        pair = [b for b in benches if b.name in ("bafenet_r18", REFERENCE)]
        bf16 = bf16_inference(pair, reps)
    print("profiling bafenet_r18", flush=True)
    target = next(b for b in benches if b.name == "bafenet_r18")
    target.model.eval()
    image, _ = synthetic_batch(1, size, seed=0, device=device)
    with torch.inference_mode():
        inference_ops = top_operators(lambda: target.model(image), device)
    profile_result = {
        "inference_ops": inference_ops,
        "train_ops": top_operators(target.train_step, device),
    }
    if device == "cpu":
        breakdown = module_breakdown(target.model, image)
        profile_result["inference_modules_ms"] = {k: round(v, 1) for k, v in breakdown.items()}
    print("exchange: vectorised vs loop", flush=True)
    exchange = exchange_speed(batch=8, size=size // 8, reps=3 if args.quick else 10, device=device)
    result = {
        "size": size,
        "reps": reps,
        "device": device,
        "machine": {
            "cpu": _cpu_name(),
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
        },
        "reference": REFERENCE,
        "models": models,
        "bf16_autocast_infer_ms": bf16,
        "profile": profile_result,
        "exchange": exchange,
    }
    stem = "model_speed" if device == "cpu" else f"model_speed_{device}"
    if not args.quick:
        write_json(args.out / f"{stem}.json", result)
    report = markdown(result)
    print(report)
    if not args.quick:
        write_text(args.out / f"{stem}.md", report)
        print(f"wrote {args.out / stem}.json and .md")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
