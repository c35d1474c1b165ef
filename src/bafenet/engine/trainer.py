"""The training loop: one function, :func:`train`, used by ``bafenet train`` and ``torchrun``.

Per epoch: shuffled (seeded by epoch) batches of augmented samples, forward in training
mode (a dict of named losses), a NaN/inf guard, gradient clipping, an optimiser and a
per-iteration scheduler step; then validation, ``last.pt`` and ``best.pt`` (by val mAP07),
CSV + TensorBoard logs. Augmentation randomness is derived from (seed, epoch, index) and
the sampler is seeded by epoch, so ``--resume`` from ``last.pt`` reproduces an
uninterrupted run exactly.
"""

from __future__ import annotations

import bisect
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from bafenet.config import Config, config_to_dict, save_config
from bafenet.data import open_dataset
from bafenet.data.collate import collate_samples
from bafenet.data.pipeline import AugmentedDataset
from bafenet.engine import distributed as dist_utils
from bafenet.engine.checkpoint import (
    capture_rng_states,
    load_checkpoint,
    load_weights,
    restore_rng_states,
    save_checkpoint,
)
from bafenet.engine.evaluate import evaluate
from bafenet.engine.logs import RunLogger, plot_curves
from bafenet.engine.optim import build_optimizer, build_scheduler
from bafenet.engine.setup import build_eval_transform, build_model_from_config, build_train_transform
from bafenet.errors import BafenetError
from bafenet.fileio import write_json
from bafenet.paths import resolve_data_root

MAX_BAD_STEPS = 5  # consecutive non-finite losses before training aborts
LOG_EVERY = 10  # iterations between rows of iters.csv


@dataclass
class TrainSummary:
    """What a finished run reports."""

    run_dir: Path
    epochs_done: int
    best_map07: float
    last_metrics: dict[str, Any] = field(default_factory=dict)
    images_per_s: float = 0.0
    data_wait_share: float = 0.0
    stopped_by_budget: bool = False
    images_seen: int = 0  # training images processed in this call (all ranks)
    train_seconds: float = 0.0  # time spent in training steps, data waiting included
    last_predictions: list = field(default_factory=list)  # detections of the final validation


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation is then the same on every rank)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(targets: list[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


def train(
    cfg: Config, run_dir: Path, resume: str | Path | None = None, progress: bool = True
) -> TrainSummary:
    """Train ``cfg.model`` on ``cfg.data`` and write everything into ``run_dir``.

    Args:
        cfg: the resolved configuration (saved as ``run_dir/config.yaml``).
        run_dir: the run folder (created by the caller; only rank 0 writes into it).
        resume: a ``last.pt`` to continue from (model, optimiser, scheduler, epoch, RNG).
        progress: show tqdm bars (rank 0 only).
    """
    device = dist_utils.local_device(cfg.train.device)
    distributed = dist_utils.init_from_env(device)
    main = dist_utils.is_main_process()
    run_dir = Path(run_dir)
    seed_everything(cfg.train.seed)
    torch.backends.cudnn.benchmark = device.type == "cuda"

    root = resolve_data_root(cfg.data.root)
    train_set = open_dataset(root, cfg.data.train_split, cache=cfg.data.cache)
    val_set = open_dataset(root, cfg.data.val_split, cache=cfg.data.cache)
    if len(train_set) == 0:
        raise BafenetError(f"{root}: split {cfg.data.train_split!r} holds no images")
    train_data = AugmentedDataset(
        train_set, build_train_transform(cfg), seed=cfg.train.seed, repeat=cfg.data.repeat
    )
    sampler = DistributedSampler(
        train_data,
        num_replicas=dist_utils.world_size(),
        rank=dist_utils.rank(),
        shuffle=True,
        seed=cfg.train.seed,
    )
    loader = DataLoader(
        train_data,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        num_workers=cfg.data.workers,
        collate_fn=collate_samples,
        persistent_workers=cfg.data.workers > 0,
        pin_memory=device.type == "cuda",
    )
    eval_transform = build_eval_transform(cfg)

    model = build_model_from_config(cfg).to(device)
    optimizer = build_optimizer(model, cfg.train)
    iters_per_epoch = len(loader)
    scheduler = build_scheduler(optimizer, cfg.train, iters_per_epoch)
    use_amp = cfg.train.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, global_step, best_map = 0, 0, -1.0
    if resume is not None:
        ckpt = load_checkpoint(resume, expected_model=cfg.model.name, map_location="cpu")
        load_weights(model, ckpt)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["metadata"].get("scaler"):
            scaler.load_state_dict(ckpt["metadata"]["scaler"])
        start_epoch = int(ckpt["epoch"])
        global_step = int(ckpt["metadata"].get("global_step", 0))
        best_map = float(ckpt["metadata"].get("best_map07", -1.0))
        if ckpt.get("rng_states"):
            restore_rng_states(ckpt["rng_states"])
    if distributed:
        # the un-learned channel selector receives no gradient by design
        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )

    logger = RunLogger(run_dir, enabled=main)
    if main:
        save_config(cfg, run_dir / "config.yaml")
        if resume is not None:
            logger.truncate_after(start_epoch - 1, global_step)

    budget_s = None if cfg.train.max_time_minutes is None else 60.0 * cfg.train.max_time_minutes
    t_start = time.monotonic()
    summary = TrainSummary(run_dir=run_dir, epochs_done=start_epoch, best_map07=best_map)
    bad_steps = 0
    total_images, total_wait, total_time = 0, 0.0, 0.0
    metrics: dict[str, Any] = {}

    for epoch in range(start_epoch, cfg.train.epochs):
        sampler.set_epoch(epoch)
        train_data.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        n_steps = 0
        bar = tqdm(
            total=iters_per_epoch,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            unit="it",
            disable=not (progress and main),
            dynamic_ncols=True,
        )
        t_prev = time.perf_counter()
        for images, targets in loader:
            t_data = time.perf_counter()
            images = images.to(device, non_blocking=True)
            targets = _to_device(targets, device)
            with torch.autocast(device_type=device.type, enabled=use_amp):
                losses = model(images, targets)
            loss = sum(losses.values())
            values = {k: float(v.detach()) for k, v in losses.items()}  # one sync per step
            if not dist_utils.all_finite(math.isfinite(sum(values.values()))):  # every rank skips together
                bad_steps += 1
                warnings.warn(
                    f"non-finite loss at step {global_step} ({values}); skipping this step",
                    stacklevel=1,
                )
                optimizer.zero_grad(set_to_none=True)
                if bad_steps >= MAX_BAD_STEPS:
                    raise BafenetError(f"{bad_steps} non-finite losses in a row; aborting (lower the lr?)")
                scheduler.step()
                _budget_step(optimizer, cfg, budget_s, t_start)
                global_step += 1
                bar.update(1)
                t_prev = time.perf_counter()
                continue
            bad_steps = 0
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.train.clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            used = _budget_step(optimizer, cfg, budget_s, t_start)
            global_step += 1
            n_steps += 1
            values["loss"] = sum(values.values())
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v

            t_end = time.perf_counter()
            wait, step_time = t_data - t_prev, t_end - t_prev
            t_prev = t_end
            total_images += images.shape[0] * dist_utils.world_size()
            total_wait += wait
            total_time += step_time
            lr = optimizer.param_groups[0]["lr"] * float(optimizer.param_groups[0].get("d", 1.0))
            ips = total_images / max(total_time, 1e-9)
            bar.set_postfix(
                loss=f"{values['loss']:.3f}",
                lr=f"{lr:.2e}",
                img_s=f"{ips:.2f}",
                wait=f"{100 * total_wait / max(total_time, 1e-9):.0f}%",
            )
            bar.update(1)
            if global_step % LOG_EVERY == 0:
                logger.log_iter(
                    global_step,
                    {
                        **values,
                        "lr": lr,
                        "images_per_s": ips,
                    },
                )
            if used >= 1.0:
                summary.stopped_by_budget = True
                break
        bar.close()

        epoch_values = {k: v / max(n_steps, 1) for k, v in sums.items()}
        last_epoch = epoch + 1 == cfg.train.epochs or summary.stopped_by_budget
        validated = (epoch + 1) % cfg.train.val_interval == 0 or last_epoch
        if validated:
            metrics, details = evaluate(
                model,
                val_set,
                eval_transform,
                cfg.eval,
                device,
                progress=progress,
                keep_predictions=last_epoch,
            )
            if last_epoch:
                summary.last_predictions = details["predictions"]
            epoch_values.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        summary.epochs_done = epoch + 1
        is_best = validated and metrics.get("mAP07", -1.0) > best_map
        if is_best:
            best_map = float(metrics["mAP07"])
        summary.best_map07 = best_map
        if main:
            meta = {
                "global_step": global_step,
                "best_map07": best_map,
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
                "scaler": scaler.state_dict() if use_amp else {},
                "stopped_by_budget": summary.stopped_by_budget,
            }
            args = dict(
                model=model,
                model_name=cfg.model.name,
                config=config_to_dict(cfg),
                epoch=epoch + 1,
                metadata=meta,
            )
            save_checkpoint(
                run_dir / "last.pt",
                optimizer=optimizer,
                scheduler=scheduler,
                rng_states=capture_rng_states(),
                **args,
            )
            if is_best:
                save_checkpoint(run_dir / "best.pt", **args)
            logger.log_epoch(epoch + 1, {"lr": optimizer.param_groups[0]["lr"], **epoch_values})
            if validated:
                tqdm.write(
                    f"epoch {epoch + 1}: loss {epoch_values.get('loss', math.nan):.4f}  "
                    f"mAP07 {metrics['mAP07']:.4f}  mAP12 {metrics['mAP12']:.4f}  "
                    f"recall {metrics['recall']:.4f}  (best mAP07 {best_map:.4f})"
                )
        dist_utils.barrier()
        if summary.stopped_by_budget:
            break

    summary.last_metrics = metrics
    summary.images_per_s = total_images / max(total_time, 1e-9)
    summary.data_wait_share = total_wait / max(total_time, 1e-9)
    summary.images_seen = total_images
    summary.train_seconds = total_time
    if main:
        logger.close()
        plot_curves(run_dir)
        write_json(
            run_dir / "summary.json",
            {
                "epochs_done": summary.epochs_done,
                "best_map07": summary.best_map07,
                "images_per_s": summary.images_per_s,
                "data_wait_share": summary.data_wait_share,
                "stopped_by_budget": summary.stopped_by_budget,
                "images_seen": summary.images_seen,
                "train_seconds": summary.train_seconds,
                "last_metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
            },
        )
        print(
            f"train throughput: {summary.images_per_s:.2f} images/s; "
            f"waiting for data: {100 * summary.data_wait_share:.1f}% of step time"
        )
    return summary


def _budget_step(
    optimizer: torch.optim.Optimizer, cfg: Config, budget_s: float | None, t_start: float
) -> float:
    """Share of the time budget used (0 without one); applies ``train.time_milestones``.

    Called right after the scheduler step: the time-based decays multiply the lr that the
    epoch schedule has just set. The slowest rank's clock decides for every rank.
    """
    if budget_s is None:
        return 0.0
    used = dist_utils.max_over_ranks((time.monotonic() - t_start) / budget_s)
    drops = bisect.bisect_right(cfg.train.time_milestones, used)
    if drops:
        for group in optimizer.param_groups:
            group["lr"] *= cfg.train.gamma**drops
    return used
