"""The training loop: :func:`train`, used by ``bafenet train``, ``torchrun`` and the benchmarks.

Per epoch: shuffled (seeded by epoch) batches of augmented samples, forward in training
mode (a dict of named losses), a NaN/inf guard, gradient clipping, an optimiser and a
per-iteration scheduler step; then validation, the logs, ``best.pt`` (by val mAP07) and
``last.pt``, CSV + TensorBoard logs. With ``train.ema_decay`` the weights validated and saved
are a moving average of the optimised ones (:mod:`bafenet.engine.ema`). Augmentation
randomness is derived from (seed, epoch, index) and the sampler is seeded by epoch, so
``--resume`` from ``last.pt`` reproduces an uninterrupted run exactly.

``last.pt`` is written last in each epoch: a run killed at any moment resumes from the last
epoch it saved, and redoes (and logs again, once) whatever came after it.
"""

from __future__ import annotations

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
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from bafenet.config import Config, config_to_dict, save_config
from bafenet.data import open_for_run
from bafenet.data.collate import collate_samples
from bafenet.data.pipeline import AugmentedDataset
from bafenet.data.sample import Sample
from bafenet.engine import distributed as dist_utils
from bafenet.engine.checkpoint import (
    capture_rng_states,
    load_checkpoint,
    load_weights,
    restore_rng_states,
    save_checkpoint,
    unwrap_model,
)
from bafenet.engine.ema import build_ema
from bafenet.engine.evaluate import evaluate
from bafenet.engine.inference import EvalGeometry
from bafenet.engine.logs import RunLogger, plot_curves
from bafenet.engine.optim import TrainingBudget, build_optimizer, build_scheduler
from bafenet.engine.runs import remove_stale_temp_files
from bafenet.engine.setup import build_model_from_config, build_train_transform
from bafenet.errors import BafenetError, DataError
from bafenet.fileio import write_json

MAX_BAD_STEPS = 5  # consecutive non-finite losses before training aborts
LOG_EVERY = 10  # iterations between rows of iters.csv


@dataclass
class TrainSummary:
    """What a finished run reports (totals over the whole run, resumed parts included)."""

    run_dir: Path
    epochs_done: int
    best_map07: float
    last_metrics: dict[str, Any] = field(default_factory=dict)
    images_per_s: float = 0.0
    data_wait_share: float = 0.0
    stopped_by_budget: bool = False
    images_seen: int = 0  # training images processed (all ranks)
    train_seconds: float = 0.0  # time spent in training steps, data waiting included
    last_predictions: list = field(default_factory=list)  # detections of this call's final validation
    # invalid samples left out (data.skip_invalid), one "<file>: <problem>" line each, by split
    skipped_samples: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class TrainState:
    """The progress of a run; saved in ``last.pt`` (metadata) and restored by ``--resume``."""

    epochs_done: int = 0
    global_step: int = 0  # iterations taken, skipped non-finite steps included
    best_map07: float = -1.0
    metrics: dict[str, Any] = field(default_factory=dict)  # of the latest validation
    stopped_by_budget: bool = False
    images_seen: int = 0  # all ranks
    train_seconds: float = 0.0  # in training steps, data waiting included
    data_wait_seconds: float = 0.0
    budget_seconds: float = 0.0  # wall-clock time counted against train.max_time_minutes

    def metadata(self) -> dict[str, Any]:
        """The checkpoint metadata entries (plain types only)."""
        return {
            "global_step": self.global_step,
            "best_map07": self.best_map07,
            "metrics": _plain(self.metrics),
            "stopped_by_budget": self.stopped_by_budget,
            "images_seen": self.images_seen,
            "train_seconds": self.train_seconds,
            "data_wait_seconds": self.data_wait_seconds,
            "budget_seconds": self.budget_seconds,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> TrainState:
        """The state saved by :meth:`metadata` (older checkpoints lack the totals).

        ``stopped_by_budget`` starts False again, and the time budget continues from the
        ``budget_seconds`` spent up to the checkpoint (the killed epoch's time is not counted:
        that epoch is trained again).
        """
        meta = checkpoint["metadata"]
        return cls(
            epochs_done=int(checkpoint["epoch"]),
            global_step=int(meta.get("global_step", 0)),
            best_map07=float(meta.get("best_map07", -1.0)),
            metrics=dict(meta.get("metrics", {})),
            images_seen=int(meta.get("images_seen", 0)),
            train_seconds=float(meta.get("train_seconds", 0.0)),
            data_wait_seconds=float(meta.get("data_wait_seconds", 0.0)),
            budget_seconds=float(meta.get("budget_seconds", 0.0)),
        )


@dataclass(frozen=True)
class LoadFailure:
    """A :class:`BafenetError` raised while loading a training item, carried as data.

    A DataLoader worker cannot hand the error itself to the main process in a usable form
    (it arrives as a long "Caught DataError in DataLoader worker" traceback), so the item
    and the batch become a ``LoadFailure`` and the main process raises :meth:`error`.
    """

    message: str
    path: str | None = None  # set for a DataError
    problem: str = ""

    @classmethod
    def of(cls, exc: BafenetError) -> LoadFailure:
        if isinstance(exc, DataError):
            return cls(str(exc), str(exc.path), exc.problem)
        return cls(str(exc))

    def error(self) -> BafenetError:
        """The original error again (a DataError names the file)."""
        return DataError(self.path, self.problem) if self.path is not None else BafenetError(self.message)


class FailuresAsItems(Dataset):
    """``dataset`` whose items are a :class:`LoadFailure` where loading raises a BafenetError."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample | LoadFailure:
        try:
            return self.dataset[index]
        except BafenetError as exc:
            return LoadFailure.of(exc)


def collate_or_failure(items: list[Sample | LoadFailure]) -> tuple[torch.Tensor, list] | LoadFailure:
    """:func:`collate_samples`, or the first :class:`LoadFailure` of the batch."""
    for item in items:
        if isinstance(item, LoadFailure):
            return item
    return collate_samples(items)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation is then the same on every rank)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_resume_checkpoint(path: str | Path, expected_model: str | None = None) -> dict[str, Any]:
    """A checkpoint that can continue a run (a run's ``last.pt``), read safely.

    Raises:
        DataError: the file is not a readable checkpoint, or holds weights only (a released
            file, a ``best.pt``), without the optimiser and scheduler state to continue from.
    """
    checkpoint = load_checkpoint(path, expected_model=expected_model, map_location="cpu")
    if checkpoint.get("optimizer") is None or checkpoint.get("scheduler") is None:
        raise DataError(
            path,
            "holds weights only (no optimiser state), so it cannot be resumed; "
            "--resume takes a run's last.pt, or start a new run with 'bafenet train CONFIG'",
        )
    return checkpoint


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
    trainer = Trainer(cfg, Path(run_dir), resume=resume, progress=progress)
    try:
        return trainer.fit()
    finally:
        trainer.logger.close()


class Trainer:
    """One training run: set up from the config (and a checkpoint to resume), then :meth:`fit`."""

    def __init__(
        self, cfg: Config, run_dir: Path, resume: str | Path | None = None, progress: bool = True
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.progress = progress
        self.device = dist_utils.local_device(cfg.train.device)
        self.distributed = dist_utils.init_from_env(self.device)
        self.main = dist_utils.is_main_process()
        seed_everything(cfg.train.seed)
        torch.backends.cudnn.benchmark = self.device.type == "cuda"
        self.state = TrainState()
        self.bad_steps = 0  # consecutive non-finite losses
        self.budget_used = 0.0  # share of the time budget, as of the latest step
        self.last_predictions: list = []
        self._setup_data()
        self._setup_model()
        if resume is not None:
            self._resume(resume)
        if self.distributed:
            # the un-learned channel selector receives no gradient by design
            self.model = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self._open_logs(resumed=resume is not None)
        self.budget = TrainingBudget(cfg.train, spent_seconds=self.state.budget_seconds)  # the clock starts

    # ----------------------------------------------------------------- setup
    def _setup_data(self) -> None:
        cfg = self.cfg
        progress = self.progress and self.main
        train_set, skipped_train = open_for_run(cfg.data, cfg.data.train_split, progress)
        self.val_set, skipped_val = open_for_run(cfg.data, cfg.data.val_split, progress)
        self.skipped_samples = {"train": skipped_train, "val": skipped_val}
        if len(train_set) == 0:
            raise BafenetError(f"{train_set.root}: split {cfg.data.train_split!r} holds no images")
        self.train_data = AugmentedDataset(
            train_set, build_train_transform(cfg), seed=cfg.train.seed, repeat=cfg.data.repeat
        )
        self.sampler = DistributedSampler(
            self.train_data,
            num_replicas=dist_utils.world_size(),
            rank=dist_utils.rank(),
            shuffle=True,
            seed=cfg.train.seed,
        )
        self.loader = DataLoader(
            FailuresAsItems(self.train_data),
            batch_size=cfg.train.batch_size,
            sampler=self.sampler,
            num_workers=cfg.data.workers,
            collate_fn=collate_or_failure,
            persistent_workers=cfg.data.workers > 0,
            pin_memory=self.device.type == "cuda",
        )
        self.eval_geometry = EvalGeometry.from_config(cfg)

    def _setup_model(self) -> None:
        cfg = self.cfg
        self.model = build_model_from_config(cfg).to(self.device)
        if cfg.model.init_weights:  # fine-tuning (a resumed run then overwrites these weights)
            path = cfg.model.init_weights
            load_weights(self.model, load_checkpoint(path, expected_model=cfg.model.name), path=path)
        # the weights evaluated and saved: a moving average of the optimised ones, or those
        self.ema = build_ema(self.model, cfg.train.ema_decay) if cfg.train.ema_decay else None
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, len(self.loader))
        self.use_amp = cfg.train.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

    def _resume(self, path: str | Path) -> None:
        """Continue from a ``last.pt``: weights, optimiser, scheduler, AMP scaler, progress, RNG."""
        checkpoint = load_resume_checkpoint(path, expected_model=self.cfg.model.name)
        if self.ema is not None:
            if "train_model" not in checkpoint:
                raise DataError(path, "was saved without train.ema_decay; resume it with the same setting")
            load_weights(self.ema.module, checkpoint, path=path)
            self.ema.n_averaged.fill_(int(checkpoint["metadata"]["ema_updates"]))
            checkpoint = {**checkpoint, "model": checkpoint["train_model"]}
        load_weights(self.model, checkpoint, path=path)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint["metadata"].get("scaler"):
            self.scaler.load_state_dict(checkpoint["metadata"]["scaler"])
        self.state = TrainState.from_checkpoint(checkpoint)
        if checkpoint.get("rng_states"):
            restore_rng_states(checkpoint["rng_states"])

    def _open_logs(self, resumed: bool) -> None:
        """The run folder's logger and ``config.yaml``; on resume, drop what came after the checkpoint."""
        if self.main:
            remove_stale_temp_files(self.run_dir)  # left by a killed run
        self.logger = RunLogger(self.run_dir, enabled=self.main)
        if self.main:
            save_config(self.cfg, self.run_dir / "config.yaml")
            if resumed:
                self.logger.truncate_after(self.state.epochs_done, self.state.global_step)

    # ----------------------------------------------------------------- loop
    def fit(self) -> TrainSummary:
        """Train the remaining epochs (validating, logging and saving each), then summarise."""
        for epoch in range(self.state.epochs_done, self.cfg.train.epochs):
            epoch_values = self.train_epoch(epoch)
            last_epoch = epoch + 1 == self.cfg.train.epochs or self.state.stopped_by_budget
            validated = (epoch + 1) % self.cfg.train.val_interval == 0 or last_epoch
            is_best = False
            if validated:
                is_best = self.validate(keep_predictions=last_epoch)
                epoch_values.update(_numbers(self.state.metrics))
            self.state.epochs_done = epoch + 1
            if self.main:
                self.save_epoch(epoch_values, is_best=is_best, validated=validated)
            dist_utils.barrier()
            if self.state.stopped_by_budget:
                break
        return self.summarize()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training data; the mean of each loss over the steps taken."""
        self.sampler.set_epoch(epoch)
        self.train_data.set_epoch(epoch)
        self.model.train()
        sums: dict[str, float] = {}
        n_steps = 0
        with tqdm(
            total=len(self.loader),
            desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}",
            unit="it",
            disable=not (self.progress and self.main),
            dynamic_ncols=True,
        ) as bar:
            t_prev = time.perf_counter()
            for batch in self.loader:
                t_data = time.perf_counter()
                if isinstance(batch, LoadFailure):
                    raise batch.error()
                images, targets = batch
                values = self.train_step(images, targets)
                if values is None:  # skipped: a non-finite loss
                    bar.update(1)
                    t_prev = time.perf_counter()
                    continue
                n_steps += 1
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value
                t_end = time.perf_counter()
                self._count_time(images.shape[0], wait=t_data - t_prev, step_time=t_end - t_prev)
                t_prev = t_end
                self._report_step(bar, values)
                if self.budget_used >= 1.0:
                    self.state.stopped_by_budget = True
                    break
        return {key: value / max(n_steps, 1) for key, value in sums.items()}

    def train_step(self, images: torch.Tensor, targets: list[dict[str, Any]]) -> dict[str, float] | None:
        """One optimiser step on a batch; its loss values (and their sum, ``loss``).

        Returns None when the loss is not finite on some rank: every rank then skips the
        step together (the schedule still advances); :data:`MAX_BAD_STEPS` in a row abort.
        """
        images = images.to(self.device, non_blocking=True)
        targets = _to_device(targets, self.device)
        with torch.autocast(device_type=self.device.type, enabled=self.use_amp):
            losses = self.model(images, targets)
        loss = sum(losses.values())
        values = {k: float(v.detach()) for k, v in losses.items()}  # one sync per step
        if not dist_utils.all_finite(math.isfinite(sum(values.values()))):
            self._skip_step(values)
            return None
        self.bad_steps = 0
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(unwrap_model(self.model))
        self._advance_schedule(new_images=images.shape[0] * dist_utils.world_size())
        values["loss"] = sum(values.values())
        return values

    def _skip_step(self, values: dict[str, float]) -> None:
        self.bad_steps += 1
        warnings.warn(
            f"non-finite loss at step {self.state.global_step} ({values}); skipping this step",
            stacklevel=1,
        )
        self.optimizer.zero_grad(set_to_none=True)
        if self.bad_steps >= MAX_BAD_STEPS:
            raise BafenetError(f"{self.bad_steps} non-finite losses in a row; aborting (lower the lr?)")
        self._advance_schedule(new_images=0)

    def _advance_schedule(self, new_images: int) -> None:
        """After each step (skipped ones too, with no ``new_images``): the epoch schedule, then
        the budget's decays, counting the images this step adds to ``images_seen``."""
        self.scheduler.step()
        self.budget_used = self.budget.step(self.optimizer, self.state.images_seen + new_images)
        self.state.global_step += 1

    def _count_time(self, batch_size: int, wait: float, step_time: float) -> None:
        self.state.images_seen += batch_size * dist_utils.world_size()
        self.state.data_wait_seconds += wait
        self.state.train_seconds += step_time

    def _report_step(self, bar: tqdm, values: dict[str, float]) -> None:
        """Progress bar, and a row of ``iters.csv`` every :data:`LOG_EVERY` iterations."""
        group = self.optimizer.param_groups[0]
        lr = group["lr"] * float(group.get("d", 1.0))  # D-Adaptation's effective step size
        ips = self.state.images_seen / max(self.state.train_seconds, 1e-9)
        wait_share = self.state.data_wait_seconds / max(self.state.train_seconds, 1e-9)
        bar.set_postfix(
            loss=f"{values['loss']:.3f}", lr=f"{lr:.2e}", img_s=f"{ips:.2f}", wait=f"{100 * wait_share:.0f}%"
        )
        bar.update(1)
        if self.state.global_step % LOG_EVERY == 0:
            self.logger.log_iter(self.state.global_step, {**values, "lr": lr, "images_per_s": ips})

    @property
    def evaluated_model(self) -> torch.nn.Module:
        """What validation scores and checkpoints hold: the moving average, if any."""
        return self.model if self.ema is None else self.ema.module

    def validate(self, keep_predictions: bool) -> bool:
        """Evaluate on the validation split; whether mAP07 beat the best so far."""
        metrics, details = evaluate(
            self.evaluated_model,
            self.val_set,
            self.eval_geometry,
            self.cfg.eval,
            self.device,
            progress=self.progress,
            keep_predictions=keep_predictions,
        )
        if keep_predictions:
            self.last_predictions = details["predictions"]
        self.state.metrics = metrics
        is_best = metrics.get("mAP07", -1.0) > self.state.best_map07
        if is_best:
            self.state.best_map07 = float(metrics["mAP07"])
        return is_best

    def save_epoch(self, epoch_values: dict[str, float], is_best: bool, validated: bool) -> None:
        """Log the epoch, then write ``best.pt`` (if it is) and ``last.pt`` (rank 0 only).

        ``last.pt`` comes last: resuming from it never skips a log row or a better ``best.pt``.
        """
        epoch = self.state.epochs_done
        self.state.budget_seconds = self.budget.elapsed()
        self.logger.log_epoch(epoch, {"lr": self.optimizer.param_groups[0]["lr"], **epoch_values})
        metadata = {**self.state.metadata(), "scaler": self.scaler.state_dict() if self.use_amp else {}}
        if self.ema is not None:
            metadata["ema_updates"] = int(self.ema.n_averaged)
        weights = dict(
            model=self.evaluated_model,
            model_name=self.cfg.model.name,
            config=config_to_dict(self.cfg),
            epoch=epoch,
            metadata=metadata,
        )
        if is_best:
            save_checkpoint(self.run_dir / "best.pt", **weights)
        save_checkpoint(
            self.run_dir / "last.pt",
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            rng_states=capture_rng_states(),
            train_model=self.model if self.ema is not None else None,
            **weights,
        )
        if validated:
            metrics = self.state.metrics
            tqdm.write(
                f"epoch {epoch}: loss {epoch_values.get('loss', math.nan):.4f}  "
                f"mAP07 {metrics['mAP07']:.4f}  mAP12 {metrics['mAP12']:.4f}  "
                f"recall {metrics['recall']:.4f}  (best mAP07 {self.state.best_map07:.4f})"
            )

    def summarize(self) -> TrainSummary:
        """The run's summary; rank 0 also writes the curves and ``summary.json``."""
        state = self.state
        seconds = max(state.train_seconds, 1e-9)
        summary = TrainSummary(
            run_dir=self.run_dir,
            epochs_done=state.epochs_done,
            best_map07=state.best_map07,
            last_metrics=state.metrics,
            images_per_s=state.images_seen / seconds,
            data_wait_share=state.data_wait_seconds / seconds,
            stopped_by_budget=state.stopped_by_budget,
            images_seen=state.images_seen,
            train_seconds=state.train_seconds,
            last_predictions=self.last_predictions,
            skipped_samples=self.skipped_samples,
        )
        if self.main:
            self.logger.close()
            plot_curves(self.run_dir)
            write_json(
                self.run_dir / "summary.json",
                {
                    "epochs_done": summary.epochs_done,
                    "best_map07": summary.best_map07,
                    "images_per_s": summary.images_per_s,
                    "data_wait_share": summary.data_wait_share,
                    "stopped_by_budget": summary.stopped_by_budget,
                    "images_seen": summary.images_seen,
                    "train_seconds": summary.train_seconds,
                    "last_metrics": _plain(summary.last_metrics),
                    "skipped_samples": summary.skipped_samples,
                },
            )
            print(
                f"train throughput: {summary.images_per_s:.2f} images/s; "
                f"waiting for data: {100 * summary.data_wait_share:.1f}% of step time"
            )
        return summary


def _to_device(targets: list[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of ``metrics`` (what goes into ``epochs.csv``)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers and strings of ``metrics`` (what a checkpoint and ``summary.json`` keep)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
