"""Shared machinery of the equal-budget benchmarks (``budget_train.py``, ``budget_hr.py``).

A *run* is a name, a base config file (or none) and dotted overrides; runs that differ only
in the seed share a *configuration*. Each run trains for a fixed wall-clock budget, then its
final weights are evaluated once on ``val_v2``; the result (metrics overall and by frame size,
throughput, inference time of a 1280 x 1024 frame, the exact overrides, the CPU and its
calibration) is written to ``<results>/<run>.json``. A rerun skips runs whose JSON exists, so a
benchmark can be continued across sessions; an interrupted run continues from its last finished
epoch when its `last.pt` and identical `config.yaml` are in the work folder (the trainer resumes
exactly), and starts again from scratch otherwise.

Compute differs between CPUs, so every session first times a fixed reference forward pass
(:func:`calibrate`: torchvision FCOS-R50 at 512 x 512, batch 1, 2 threads, median ms) and a
benchmark may state its budget at a reference CPU: ``minutes = reference minutes x (ms here /
reference ms)``. The tables compare records of one CPU model only.

``--by-images`` turns the wall-clock budget into an image budget, the same on any machine and
under any load: each configuration's training images per second are measured once on this
CPU (:func:`measure_images_per_s`: one epoch of at most two minutes, in a quiet moment), and
every run of it then trains for ``images/s x budget minutes x 60`` images
(``train.max_images``; the lr drops after 80 % of them), whatever else the machine runs and on
whichever device (``--device``). The measured rates and budgets are kept in
``<results>/image_budgets.json``, so all seeds of a configuration share one budget across
sessions. Once the benchmark's reference run has its budget, a configuration added later is
timed in one window with it and gets the reference's budget times the ratio of the two rates.

Sky models also get the post-hoc sky gate (:func:`sky_gate_record`): its threshold is chosen
on a fixed subset of the training split (every :data:`GATE_EVERY`-th frame) by mAP07, from one
inference pass that keeps each detection's own sky probability; the gated ``val_v2`` metrics
filter the detections of the final validation, without running the model again.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset
from torchvision.models.detection import fcos_resnet50_fpn

from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import Config, load_config
from bafenet.data import open_dataset
from bafenet.data.sample import Sample
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.evaluate import (
    SIZE_GROUPS,
    Prediction,
    evaluate_with_config,
    group_counts,
    metrics_by_frame_size,
    prediction_metrics,
)
from bafenet.engine.inference import EvalGeometry, autocast_dtype, load_trained_model
from bafenet.engine.setup import build_model_from_config
from bafenet.engine.sky_gate import GATE_GRID, choose_gate_threshold, gate_predictions
from bafenet.engine.trainer import Trainer, train
from bafenet.fileio import write_json, write_text
from bafenet.models.zoo import model_options

REPO = Path(__file__).resolve().parents[1]

CALIBRATION_SIZE = 512
CALIBRATION_THREADS = 2
CALIBRATION_SPEC = (
    "torchvision fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2,"
    " min_size=512, max_size=512), inference with post-processing, batch 1, 512 x 512, 2 threads,"
    " median ms after one warm-up"
)
CALIBRATION_REPS = 15
"""Timed passes of a session's calibration: on a shared 2-core machine single passes vary by
+-15 %, and the median of 15 by a few percent."""
REFERENCE_MS = 638.0
"""Calibration figure of the reference CPU (an AMD EPYC), where the anchor's 40 minutes ran."""
MAX_SLOWDOWN = 2.0
"""A normalised budget is refused when the calibration exceeds this multiple of REFERENCE_MS
(a busy machine would otherwise stretch every run; ``--minutes`` overrides)."""

GATE_EVERY = 4  # the gate threshold is chosen on every 4th frame of the training split
GATE_KEYS = (
    "mAP07",
    "mAP12",
    "recall",
    "strict_mAP07",
    "irstd_fa_per_mpix_at_pd_0.85",
    "irstd_fa_off_sky_share_at_best_f1",
    "best_f1_score_thr",
    "irstd_pd_at_best_f1",
    "irstd_fa_per_mpix_at_best_f1",
)
"""The metrics a gate record keeps (of the gated ``val_v2`` detections)."""

NEWER_METRIC = "irstd_false_alarms_off_sky"  # records evaluated before the sky split lack it

SMOKE_OVERRIDES = [
    "train.epochs=1",
    "train.max_time_minutes=null",
    "train.time_milestones=[]",
    "train.val_interval=1",
    "data.workers=0",
    "data.cache=false",
    "data.input.crop_size=64",
    "model.kwargs.backbone_width=8",
    "model.kwargs.tower_depth=1",
]
"""``--smoke``: one epoch on a few synthetic frames with a tiny network (bounded by steps)."""


@dataclass
class Run:
    """One benchmark run: what differs from the protocol, and why."""

    name: str
    what: str
    overrides: list[str]
    base: str = "bafenet_hr.yaml"  # the packaged recipe (src/bafenet/configs/) that the overrides modify
    seed: int = 0
    config: str = ""  # the configuration its seeds share (default: the run's name)
    # runs that train at the same speed (same network and input) share one images/s
    # measurement of --by-images (default: the configuration's own)
    speed_group: str = ""

    def __post_init__(self) -> None:
        self.config = self.config or self.name
        self.speed_group = self.speed_group or self.config


def seeded_runs(
    config: str, what: str, overrides: list[str], seeds: Sequence[int] = (0, 1, 2), speed_group: str = ""
) -> list[Run]:
    """One run per seed of a configuration, named ``<config>_s<seed>``."""
    return [
        Run(f"{config}_s{seed}", what, overrides, seed=seed, config=config, speed_group=speed_group)
        for seed in seeds
    ]


@dataclass
class Budget:
    """The training wall time of every run of a session, and where it comes from."""

    minutes: float  # per run, on this machine
    calibration: dict[str, Any]  # :func:`calibrate`'s result
    reference_minutes: float | None = None  # the budget at REFERENCE_MS (None: ``minutes`` as given)

    def record(self) -> dict[str, Any]:
        normalised = self.reference_minutes is not None
        return {
            "minutes": self.minutes,
            "reference_minutes": self.reference_minutes,
            "reference_ms": REFERENCE_MS if normalised else None,
            "calibration_ms": self.calibration["ms"],
            "rule": (
                f"{self.reference_minutes:g} min x {self.calibration['ms']:.0f} / {REFERENCE_MS:.0f} ms"
                if normalised
                else "given (--minutes)"
            ),
        }


# ------------------------------------------------------------------------------ calibration
def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``model name`` in ``cpuinfo``), else ``platform.processor()`` or the
    machine type."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@torch.inference_mode()
def forward_times_ms(model: nn.Module, inputs: Any, reps: int, threads: int) -> list[float]:
    """Milliseconds of each of ``reps`` calls ``model(inputs)`` after one warm-up call, on
    ``threads`` intra-op threads (the previous thread count is restored)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model.eval()
        model(inputs)  # warm-up: oneDNN primitives, allocator
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            model(inputs)
            times.append(1000 * (time.perf_counter() - start))
    finally:
        torch.set_num_threads(previous)
    return times


def calibrate(reps: int = 5) -> dict[str, Any]:
    """Time the reference forward pass on this machine (:data:`CALIBRATION_SPEC`).

    Returns ``ms`` (median), ``ms_min`` / ``ms_max`` (a wide spread: a busy machine),
    ``cpu_model``, ``spec``, ``reps``, ``threads``, ``torch`` and ``measured_at`` (UTC).
    """
    torch.manual_seed(0)
    size = CALIBRATION_SIZE
    model = fcos_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=2, min_size=size, max_size=size
    )
    image = torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))
    times = forward_times_ms(model, [image], reps, CALIBRATION_THREADS)
    return {
        "ms": statistics.median(times),
        "ms_min": min(times),
        "ms_max": max(times),
        "cpu_model": cpu_model(),
        "spec": CALIBRATION_SPEC,
        "reps": reps,
        "threads": CALIBRATION_THREADS,
        "torch": torch.__version__,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def budget_minutes(reference_minutes: float, calibration_ms: float) -> float:
    """Training minutes here that match ``reference_minutes`` on the reference CPU:
    ``reference_minutes x calibration_ms / REFERENCE_MS`` (a faster CPU gets fewer)."""
    return reference_minutes * calibration_ms / REFERENCE_MS


# ------------------------------------------------------------------------------ one run
def budget_overrides(
    data: str, minutes: float, seed: int, workers: int = 1, device: str = "cpu"
) -> list[str]:
    """What every budget run sets on top of its config file: data, budget, seed, device.

    Training stops after ``minutes`` of wall time (the lr drops x0.1 after 80 % of it), the
    final weights are validated once on ``val_v2``.
    """
    return [
        "model.weights_backbone=null",
        f"data.root={data}",
        "data.train_split=train_v2",
        "data.val_split=val_v2",
        "eval.split=val_v2",
        f"data.workers={workers}",
        "train.epochs=100000",
        "train.milestones=[100000]",
        "train.val_interval=100000",
        f"train.max_time_minutes={minutes}",
        "train.time_milestones=[0.8]",
        f"train.device={device}",
        f"train.seed={seed}",
    ]


def frame_pass_s(cfg: Config, model: torch.nn.Module) -> float:
    """Seconds of one prediction of a 1280 x 1024 frame with ``cfg``'s evaluation geometry
    (``eval.scale``, ``eval.amp``, post-processing and the sky map included)."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(1024, 1280)).astype(np.float32)
    sample = Sample(
        image=image,
        boxes=np.zeros((0, 4), np.float32),
        points=np.zeros((0, 2), np.float32),
        sky_mask=np.ones((1024, 1280), np.uint8),
        target_mask=np.zeros((1024, 1280), np.uint8),
        image_id="timing",
    )
    geometry = EvalGeometry.from_config(cfg)
    model.eval()
    start = time.perf_counter()
    geometry.predict(model, [sample], [geometry.transform(sample)], torch.device("cpu"))
    return time.perf_counter() - start


def eval_precision(cfg: Config) -> str:
    """The precision ``cfg``'s evaluation runs the network in on this CPU (``eval.amp``)."""
    return str(autocast_dtype(torch.device("cpu"), cfg.eval.amp) or torch.float32)


def frame_seconds(cfg: Config, model: torch.nn.Module, reps: int = 3) -> float:
    """Median of ``reps`` :func:`frame_pass_s` after a warm-up."""
    frame_pass_s(cfg, model)
    return statistics.median(frame_pass_s(cfg, model) for _ in range(reps))


def rotating_rounds(timers: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """``rounds`` results of each timer (seconds it measured) after one warm-up call of each,
    in a rotating order, so a slow phase of the machine hits every timer alike."""
    names = list(timers)
    for name in names:
        timers[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(timers[name]())
    return times


def time_frames(
    runs: Sequence[Run],
    data: str,
    work: Path,
    rounds: int = 5,
    smoke_overrides: Sequence[str] = (),
    calibration_reps: int = CALIBRATION_REPS,
) -> dict[str, Any]:
    """Seconds per 1280 x 1024 frame of every configuration in ``runs``, timed in one window.

    One model per configuration: the trained ``last.pt`` of its first seed found in ``work``,
    else its untrained network (the same layers; only the few candidates past the score
    threshold differ). After a warm-up of each, ``rounds`` rounds time one frame per model in a
    rotating order, so a slow phase of the machine hits every configuration alike; the
    result is each configuration's median, with the calibration of the same window.
    """
    models: dict[str, tuple[Config, nn.Module, str]] = {}
    for run in runs:
        if run.config in models:
            continue
        weights = next(
            (
                work / r.name / "last.pt"
                for r in runs
                if r.config == run.config and (work / r.name / "last.pt").exists()
            ),
            None,
        )
        if weights is not None:
            model, cfg, _ = load_trained_model(weights, torch.device("cpu"))
            source = str(weights)
        else:
            protocol = [*budget_overrides(data, 1.0, run.seed), *smoke_overrides, *run.overrides]
            cfg = load_config(PACKAGED_CONFIGS / run.base, protocol)
            model, source = build_model_from_config(cfg), "untrained"
        models[run.config] = (cfg, model, source)
    timers = {name: functools.partial(frame_pass_s, cfg, model) for name, (cfg, model, _) in models.items()}
    times = rotating_rounds(timers, rounds)
    return {
        "calibration": calibrate(reps=calibration_reps),
        "rounds": rounds,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "configurations": {
            name: {
                "frame_1280x1024_s": statistics.median(times[name]),
                "min_s": min(times[name]),
                "max_s": max(times[name]),
                "weights": models[name][2],
                "precision": eval_precision(models[name][0]),
            }
            for name in models
        },
    }


def resumable_checkpoint(run_dir: Path, cfg: Config) -> Path | None:
    """The ``last.pt`` of an interrupted run of exactly ``cfg`` (its saved ``config.yaml`` equal),
    which the trainer continues exactly; None when there is none or it was of another config."""
    last, saved = run_dir / "last.pt", run_dir / "config.yaml"
    if not (last.is_file() and saved.is_file()):
        return None
    return last if load_config(saved) == cfg else None


RATE_SECONDS = 120.0  # longest timing of one configuration's training throughput


def measure_images_per_s(cfg: Config, work: Path, seconds: float = RATE_SECONDS) -> float:
    """Training images per second of ``cfg`` on this machine's CPU with the calibration's
    threads: one epoch, stopped after ``seconds`` of steps, no validation (data loading and
    the first steps counted, as in a timed run). Needs a quiet machine."""
    train_cfg = dataclasses.replace(cfg.train, max_time_minutes=seconds / 60.0, max_images=None, device="cpu")
    run_dir = work / "_images_per_s"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(CALIBRATION_THREADS)
    try:
        trainer = Trainer(dataclasses.replace(cfg, train=train_cfg), run_dir, progress=False)
        trainer.train_epoch(0)
        trainer.logger.close()
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(run_dir, ignore_errors=True)
    return trainer.state.images_seen / max(trainer.state.train_seconds, 1e-9)


def rates_in_one_window(cfg: Config, reference_cfg: Config, work: Path) -> tuple[float, float]:
    """Images/s of ``cfg`` and of ``reference_cfg`` measured in one window: the reference,
    ``cfg``, the reference again; returns ``cfg``'s rate and the mean of the reference's two,
    so the ratio holds even when the CPU's speed drifts between sessions."""
    before = measure_images_per_s(reference_cfg, work)
    rate = measure_images_per_s(cfg, work)
    after = measure_images_per_s(reference_cfg, work)
    return rate, (before + after) / 2.0


def image_budget(
    run: Run,
    cfg: Config,
    budget: Budget,
    results_dir: Path,
    work: Path,
    reference: tuple[str, Config] | None = None,
) -> dict[str, Any]:
    """The image budget of ``run``'s speed group (its configuration, unless it names another):
    read from ``image_budgets.json``, or measured now and stored there.

    Measured alone, it is :func:`measure_images_per_s` x ``budget.minutes``. With a
    ``reference`` (speed group, its config) whose budget is stored already, it is the
    reference's budget scaled by the two rates measured in one window
    (:func:`rates_in_one_window`): a single timing drifts with the CPU by 10-30 % between
    sessions, their ratio much less.
    """
    path = results_dir / "image_budgets.json"
    budgets = json.loads(path.read_text()) if path.exists() else {}
    key = run.speed_group
    if key in budgets:
        return budgets[key]
    anchor = budgets.get(reference[0]) if reference is not None and reference[0] != key else None
    if anchor is None:
        rate = measure_images_per_s(cfg, work)
        entry: dict[str, Any] = {
            "max_images": max(1, round(rate * budget.minutes * 60.0)),
            "images_per_s": rate,
        }
        minutes = budget.minutes
    else:
        rate, reference_rate = rates_in_one_window(cfg, reference[1], work)
        entry = {
            "max_images": max(1, round(anchor["max_images"] * rate / reference_rate)),
            "images_per_s": rate,
            "relative_to": reference[0],
            "reference_images_per_s": reference_rate,
            "rule": f"{anchor['max_images']} x {rate:.3f} / {reference_rate:.3f} images/s (one window)",
        }
        minutes = anchor["minutes"]
    budgets[key] = {
        **entry,
        "minutes": minutes,
        "cpu_model": budget.calibration["cpu_model"],
        "calibration_ms": budget.calibration["ms"],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(path, budgets)
    print(f"{key}: {rate:.2f} images/s -> {budgets[key]['max_images']} images per run")
    return budgets[key]


def _numbers(metrics: dict[str, Any]) -> dict[str, float | int]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def run_one(
    run: Run,
    overrides: list[str],
    work: Path,
    budget: Budget,
    frame_reps: int = 3,
    images: dict[str, Any] | None = None,
) -> dict:
    """Train ``run`` for its budget (``images``: an :func:`image_budget` instead of the wall
    time), evaluate the final weights, return the result record."""
    base = PACKAGED_CONFIGS / run.base
    all_overrides = [*overrides, *run.overrides]
    if images is not None:
        all_overrides += [f"train.max_images={images['max_images']}", "train.max_time_minutes=null"]
    cfg = load_config(base, all_overrides)
    run_dir = work / run.name
    resume = resumable_checkpoint(run_dir, cfg)
    if resume is None:  # nothing to continue: start from scratch
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
    else:
        print(f"{run.name}: continuing the interrupted run from {resume}")
    start = time.monotonic()
    summary = train(cfg, run_dir, resume=resume, progress=True)
    wall = time.monotonic() - start
    model, cfg, _ = load_trained_model(run_dir / "last.pt", torch.device("cpu"))
    by_size = metrics_by_frame_size(summary.last_predictions, cfg.eval)
    record = {
        "run": run.name,
        "config": run.config,
        "what": run.what,
        "model": cfg.model.name,
        "base_config": run.base,
        "overrides": all_overrides,
        "minutes": cfg.train.max_time_minutes if images is None else images["minutes"],
        "budget": budget.record() if images is None else {**budget.record(), "images": images},
        "device": cfg.train.device,
        "seed": cfg.train.seed,
        "wall_s": wall,  # of this session's part, when resumed
        "resumed": resume is not None,
        "epochs_done": summary.epochs_done,
        "images_seen": summary.images_seen,
        "images_per_s": summary.images_per_s,
        "data_wait_share": summary.data_wait_share,
        "frame_1280x1024_s": frame_seconds(cfg, model, frame_reps),
        "eval_precision": eval_precision(cfg),
        "threads": torch.get_num_threads(),
        "cpu": platform.machine(),
        "cpu_model": budget.calibration["cpu_model"],
        "calibration": budget.calibration,
        "torch": torch.__version__,
        "metrics": _numbers(summary.last_metrics),
        "by_frame_size": {g: _numbers(m) for g, m in by_size.items()},
        "skipped_samples": summary.skipped_samples,  # invalid samples left out (data.skip_invalid)
    }
    if has_sky(cfg.model.name):
        train_set = open_dataset(cfg.data.root, cfg.data.train_split)
        record["gate"] = sky_gate_record(model, cfg, train_set, summary.last_predictions)
    return record


def run_all(
    runs: list[Run],
    args: argparse.Namespace,
    results_dir: Path,
    work: Path,
    budget: Budget,
    reference: Run | None = None,
) -> dict[str, dict]:
    """Run (or skip, when finished before) every run; return all records in ``runs`` order.

    With ``--by-images``, the image budget of every configuration still to run is measured
    first, while the machine is quiet, before any training starts; a new configuration's
    budget is measured against ``reference``'s when that has one (:func:`image_budget`).
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    todo = [run for run in runs if not (results_dir / f"{run.name}.json").exists()]

    def protocol(run: Run) -> list[str]:
        return [
            *budget_overrides(args.data, budget.minutes, run.seed, args.workers, args.device),
            *(args.smoke_overrides if args.smoke else []),
        ]

    overrides = {run.name: protocol(run) for run in todo}
    images: dict[str, dict[str, Any] | None] = {run.name: None for run in todo}
    if args.by_images:
        anchor = None
        if reference is not None:
            anchor = (
                reference.speed_group,
                load_config(PACKAGED_CONFIGS / reference.base, [*protocol(reference), *reference.overrides]),
            )
        for run in todo:
            cfg = load_config(PACKAGED_CONFIGS / run.base, [*overrides[run.name], *run.overrides])
            images[run.name] = image_budget(run, cfg, budget, results_dir, work, reference=anchor)
    records: dict[str, dict] = {}
    for run in runs:
        done = results_dir / f"{run.name}.json"
        if done.exists():
            print(f"{run.name}: finished before, skipped ({done})")
            records[run.name] = json.loads(done.read_text())
            continue
        frame_reps = 1 if args.smoke else 3
        record = run_one(run, overrides[run.name], work, budget, frame_reps, images=images[run.name])
        record["smoke"] = bool(args.smoke)
        write_json(done, record)
        records[run.name] = record
        print(f"{run.name}: mAP07 {record['metrics'].get('mAP07', math.nan):.4f} -> {done}")
    return records


# ------------------------------------------------------------------------------ sky gate
def has_sky(model_name: str) -> bool:
    """Whether the zoo model has a sky branch (it takes the sky switches)."""
    return "sky_gate_thr" in model_options(model_name)


def sky_gate_record(
    model: nn.Module,
    cfg: Config,
    train_set: Any,
    val_predictions: list[Prediction],
    every: int = GATE_EVERY,
    grid: Sequence[float] = GATE_GRID,
) -> dict[str, Any]:
    """The post-hoc sky gate of a trained sky model.

    One inference pass over every ``every``-th frame of ``train_set`` (the training split)
    picks the threshold (:func:`choose_gate_threshold`); the gated metrics, overall and by
    frame size, come from ``val_predictions`` (the final validation's detections, with their
    own sky probability) filtered at that threshold.
    """
    subset = Subset(train_set, range(0, len(train_set), every))
    _, details = evaluate_with_config(
        model, subset, cfg, torch.device("cpu"), progress=False, keep_predictions=True
    )
    threshold, train_map07 = choose_gate_threshold(details["predictions"], cfg.eval, grid)
    kept = gate_predictions(val_predictions, threshold)
    gated = prediction_metrics(kept, cfg.eval)
    return {
        "threshold": threshold,
        "chosen_on": f"{cfg.data.train_split}, every {every}th frame ({len(subset)} frames): highest mAP07",
        "train_mAP07": train_map07,
        "metrics": {k: gated[k] for k in GATE_KEYS if gated.get(k) is not None},
        "by_frame_size": {g: _numbers(m) for g, m in metrics_by_frame_size(kept, cfg.eval).items()},
    }


def complete_records(runs: list[Run], data: str, results_dir: Path, work: Path) -> None:
    """Bring finished runs' records up to date from their final weights (resumable).

    A record lacks newer metrics (F1-best operating point, false alarms by sky, FA at fixed
    Pd) or, for a sky model, the sky gate. Its run's ``last.pt`` in ``work`` is re-evaluated on
    ``val_v2`` once; when that reproduces the recorded mAP07 (within 0.002) the missing
    metrics are added (none is overwritten) and the gate is computed from the same
    detections. Records that are complete, and runs without weights, are left as they are.
    """
    val_set = None
    for run in runs:
        done = results_dir / f"{run.name}.json"
        weights = work / run.name / "last.pt"
        if not done.exists():
            continue
        record = json.loads(done.read_text())
        needs_metrics = any(k not in record["metrics"] for k in ("best_f1_score_thr", NEWER_METRIC))
        needs_gate = has_sky(record["model"]) and "gate" not in record
        if not (needs_metrics or needs_gate):
            continue
        if not weights.exists():
            print(f"{run.name}: no {weights}, record left as it is")
            continue
        model, cfg, _ = load_trained_model(weights, torch.device("cpu"))
        if val_set is None:
            val_set = open_dataset(data, "val_v2")
        metrics, details = evaluate_with_config(
            model, val_set, cfg, torch.device("cpu"), keep_predictions=True
        )
        recorded = record["metrics"]["mAP07"]
        if abs(metrics["mAP07"] - recorded) > 2e-3:
            print(
                f"{run.name}: re-evaluated mAP07 {metrics['mAP07']:.4f} != recorded {recorded:.4f}, left out"
            )
            continue
        added = {k: v for k, v in _numbers(metrics).items() if k not in record["metrics"]}
        if added:
            record["metrics"].update(added)
            record["metrics_added"] = f"re-evaluated {weights.name} (mAP07 {metrics['mAP07']:.4f})"
        if needs_gate:
            record["gate"] = sky_gate_record(
                model, cfg, open_dataset(data, "train_v2"), details["predictions"]
            )
        write_json(done, record)
        print(f"{run.name}: {len(added)} metrics added{', sky gate' if needs_gate else ''} -> {done}")


# ------------------------------------------------------------------------------ tables
def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _spread(values: Sequence[float | None], digits: int = 3) -> str:
    """``mean (min-max)`` of the values present; the value alone for one; '—' for none."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return "—"
    mean = _fmt(statistics.fmean(present), digits)
    if len(present) == 1:
        return mean
    return f"{mean} ({_fmt(min(present), digits)}-{_fmt(max(present), digits)})"


def cpu_label(record: dict) -> str:
    """The CPU a record ran on; records from before the model was recorded say so."""
    if record.get("cpu_model"):
        return record["cpu_model"]
    return f"not recorded ({record.get('cpu', '?')})"


def budget_cpu(record: dict) -> str:
    """The CPU whose speed set the record's budget: for an image budget the CPU it was measured
    on (the training itself is the same on any CPU), else the CPU the run's minutes ran on."""
    images = (record.get("budget") or {}).get("images") or {}
    return images.get("cpu_model") or cpu_label(record)


def frame_seconds_on(record: dict, cpu: str) -> float | None:
    """The record's seconds per 1280x1024 frame when it was timed on ``cpu``, else None (timings
    compare only on one CPU)."""
    return record.get("frame_1280x1024_s") if cpu_label(record) == cpu else None


def budget_label(record: dict) -> str:
    """How the run's budget was set: normalised to the reference CPU, or minutes as given; an
    image budget adds its images (measured rate x minutes)."""
    budget = record.get("budget") or {}
    if budget.get("reference_minutes") is not None:
        label = f"{budget['reference_minutes']:g} min at {budget['reference_ms']:.0f} ms"
    else:
        label = f"{record['minutes']:g} min"
    if budget.get("images"):
        label += f" = {budget['images']['max_images']} images"
    return label


SUMMARY_COLUMNS: list[tuple[str, Callable[[dict], float | None], int]] = [
    ("mAP07", lambda r: r["metrics"].get("mAP07"), 3),
    ("mAP12", lambda r: r["metrics"].get("mAP12"), 3),
    ("strict mAP07", lambda r: r["metrics"].get("strict_mAP07"), 3),
    ("sky IoU", lambda r: r["metrics"].get("sky_iou"), 3),
    ("FA / Mpx at Pd 0.85", lambda r: r["metrics"].get("irstd_fa_per_mpix_at_pd_0.85"), 2),
    ("FA off sky", lambda r: r["metrics"].get("irstd_fa_off_sky_share_at_best_f1"), 2),
    ("crops seen", lambda r: r.get("images_seen"), 0),
    ("s / 1280x1024 frame", lambda r: frame_seconds_on(r, budget_cpu(r)), 2),
]
GATED = {"mAP07", "mAP12", "strict mAP07", "FA / Mpx at Pd 0.85", "FA off sky"}
"""Summary columns a gate changes; its row repeats none of the others."""
GATE_METRIC = {
    "mAP07": "mAP07",
    "mAP12": "mAP12",
    "strict mAP07": "strict_mAP07",
    "FA / Mpx at Pd 0.85": "irstd_fa_per_mpix_at_pd_0.85",
    "FA off sky": "irstd_fa_off_sky_share_at_best_f1",
}


def summary_table(records: list[dict]) -> list[str]:
    """Mean (min-max) over the seeds of each configuration (and budget), plus a gate row for
    each configuration whose records have one. ``records`` should share one CPU model."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r.get("config") or r["run"], budget_label(r)), []).append(r)
    names = " | ".join(c for c, _, _ in SUMMARY_COLUMNS)
    lines = [
        f"| configuration | what | budget | seeds | {names} |",
        "|---|---|---|---|" + "---|" * len(SUMMARY_COLUMNS),
    ]
    for (config, budget), members in groups.items():
        seeds = ", ".join(str(r["seed"]) for r in members)
        cells = [_spread([get(r) for r in members], digits) for _, get, digits in SUMMARY_COLUMNS]
        lines.append(f"| {config} | {members[0]['what']} | {budget} | {seeds} | " + " | ".join(cells) + " |")
        gated = [r for r in members if r.get("gate")]
        if gated:
            thresholds = _spread([r["gate"]["threshold"] for r in gated], 2)
            cells = [
                _spread([r["gate"]["metrics"].get(GATE_METRIC[name]) for r in gated], digits)
                if name in GATED
                else "〃"
                for name, _, digits in SUMMARY_COLUMNS
            ]
            seeds = ", ".join(str(r["seed"]) for r in gated)
            lines.append(
                f"| {config} + gate | post-hoc sky gate, threshold {thresholds} | {budget} | {seeds} | "
                + " | ".join(cells)
                + " |"
            )
    return lines


def markdown_table(records: dict[str, dict]) -> list[str]:
    """Every run: overall, by frame size, Pd / false alarms (with the sky split), speed."""
    lines = [
        "| run | what | mAP07 | mAP12 | recall | strict mAP07 / mAP12 / recall | mAP07 small / large "
        "| Pd | FA / Mpx | F1-best score: thr / Pd / FA per Mpx | FA / Mpx at Pd 0.85 | FA off sky "
        "| sky IoU | gate: thr / mAP07 | train img/s | images seen | s / 1280x1024 frame |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in records.items():
        m = r["metrics"]
        by = r.get("by_frame_size", {})
        small = by.get("small", {}).get("mAP07")
        large = by.get("large", {}).get("mAP07")
        gate = r.get("gate")
        cells = [
            name,
            r["what"],
            _fmt(m.get("mAP07")),
            _fmt(m.get("mAP12")),
            _fmt(m.get("recall")),
            " / ".join(_fmt(m.get(k)) for k in ("strict_mAP07", "strict_mAP12", "strict_recall")),
            f"{_fmt(small)} / {_fmt(large)}",
            _fmt(m.get("irstd_pd")),
            _fmt(m.get("irstd_fa_per_mpix"), 2),
            f"{_fmt(m.get('best_f1_score_thr'), 2)} / {_fmt(m.get('irstd_pd_at_best_f1'))}"
            f" / {_fmt(m.get('irstd_fa_per_mpix_at_best_f1'), 2)}",
            _fmt(m.get("irstd_fa_per_mpix_at_pd_0.85"), 2),
            _fmt(m.get("irstd_fa_off_sky_share_at_best_f1"), 2),
            _fmt(m.get("sky_iou")),
            f"{_fmt(gate['threshold'], 2)} / {_fmt(gate['metrics'].get('mAP07'))}" if gate else "—",
            _fmt(r["images_per_s"], 2),
            str(r["images_seen"]),
            _fmt(r["frame_1280x1024_s"], 2) + ("" if cpu_label(r) == budget_cpu(r) else f" ({cpu_label(r)})"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


NOTES = (
    f"Frame groups: small = {SIZE_GROUPS['small']}, large = {SIZE_GROUPS['large']}. Pd and false alarms"
    " at score 0.3 (a detection is a hit when its centre is within 3 px of a target's centroid), at"
    " the score threshold that maximises F1 (legacy widths; '—' for runs evaluated before it was"
    " recorded, which `--complete` adds from their weights), and at Pd 0.85 read off the Pd-false-alarm"
    " curve (linearly interpolated); FA per megapixel of the original frames. 'FA off sky': share of"
    " the false alarms at the F1-best threshold whose box centre is on annotated non-sky (unknown sky"
    " left out). 'crops seen' / 'images seen' count training crops / frames in the budget. Summary"
    " cells: mean (min-max) over the seeds. Gate rows: the same models, detections whose own sky"
    f" probability at the box centre is below the threshold dropped; the threshold is chosen from"
    f" {GATE_GRID} by mAP07 on every {GATE_EVERY}th train_v2 frame (not on val_v2); 〃 = as the row"
    " above."
)


def _range(values: Sequence[float], digits: int) -> str:
    low, high = _fmt(min(values), digits), _fmt(max(values), digits)
    return low if low == high else f"{low}-{high}"


def cpu_header(records: list[dict], cpu: str | None = None) -> str:
    """The calibration line of one CPU's table. With ``cpu``, only calibrations made on it count;
    records that ran elsewhere (on an image budget set on ``cpu``) are named apart."""
    here = [r for r in records if cpu is None or cpu_label(r) == cpu]
    calibrated = [r["calibration"]["ms"] for r in here if r.get("calibration")]
    elsewhere = sorted({cpu_label(r) for r in records} - {cpu}) if cpu is not None else []
    minutes = [r["minutes"] for r in records if r.get("minutes") is not None]
    spent = _range(minutes, 1) if minutes else "—"
    moved = ""
    if elsewhere:
        moved = f" Ran on {', '.join(elsewhere)} with this CPU's image budget: marked in the run table."
    if not calibrated:
        return f"No calibration recorded; {spent} minutes of training per run.{moved}"
    return (
        f"Calibration ({CALIBRATION_SPEC}): {_range(calibrated, 0)} ms over"
        f" {len(calibrated)} of {len(records)} records (reference CPU: {REFERENCE_MS:.0f} ms);"
        f" {spent} minutes of training per run.{moved}"
    )


def group_line(records: dict[str, dict]) -> str:
    """What the frame groups hold (images, targets), from the newest record that says so."""
    for record in reversed(list(records.values())):
        groups = record.get("by_frame_size", {})
        if groups and all("num_gt" in g for g in groups.values()):
            parts = [f"{name} {group_counts(g)}" for name, g in groups.items()]
            return "Frame groups of the evaluated split: " + "; ".join(parts) + "."
    return ""


def report_lines(records: dict[str, dict]) -> list[str]:
    """One section per CPU model that set the budgets (:func:`budget_cpu`): calibration, the
    summary by configuration, every run. Frame timings count only from runs on that CPU."""
    by_cpu: dict[str, dict[str, dict]] = {}
    for name, r in records.items():
        by_cpu.setdefault(budget_cpu(r), {})[name] = r
    lines: list[str] = []
    if len(by_cpu) > 1:
        lines += [
            "Runs whose budget was set on different CPUs are in separate tables: a wall-clock"
            " budget is not the same compute on each, so compare within a table. An image budget"
            " trains the same on any CPU, so its runs stay in the table of the CPU that measured it;"
            " their seconds per frame count in the summary only when timed on that CPU.",
            "",
        ]
    for cpu, members in by_cpu.items():
        lines += [
            f"## CPU: {cpu}",
            "",
            cpu_header(list(members.values()), cpu),
            "",
            *summary_table(list(members.values())),
            "",
            *markdown_table(members),
            "",
        ]
    return [*lines, NOTES, "", group_line(records)]


def frame_timing_lines(timing: dict[str, Any], reference: str | None) -> list[str]:
    """The one-window frame timings (:func:`time_frames`) as a table, with each configuration's
    ratio to ``reference``'s when that was timed."""
    configs = timing["configurations"]
    base = configs.get(reference, {}).get("frame_1280x1024_s") if reference else None
    calibration = timing["calibration"]
    precisions = "/".join(sorted({t["precision"] for t in configs.values()}))
    lines = [
        f"## Seconds per 1280x1024 frame, every configuration in one window ({calibration['cpu_model']})",
        "",
        f"`--time-frames`, {timing['measured_at']}: median (min-max) of {timing['rounds']} rounds, one"
        " frame per configuration per round in a rotating order, after a warm-up; the evaluation"
        f" geometry (x2, {precisions}, post-processing and sky map). Calibration in the same window:"
        f" {calibration['ms']:.0f} ms.",
        "",
        f"| configuration | s / frame | ratio to {reference or '—'} | weights |",
        "|---|---|---|---|",
    ]
    for name, t in configs.items():
        ratio = _fmt(t["frame_1280x1024_s"] / base, 2) if base else "—"
        seconds = f"{t['frame_1280x1024_s']:.3f} ({t['min_s']:.3f}-{t['max_s']:.3f})"
        weights = "trained" if t["weights"] != "untrained" else "untrained (same layers)"
        lines.append(f"| {name} | {seconds} | {ratio} | {weights} |")
    return [*lines, ""]


def write_report(
    records: dict[str, dict],
    results_dir: Path,
    title: str,
    header: list[str],
    report: Callable[[dict[str, dict]], list[str]] = report_lines,
) -> None:
    """``<results_dir>.md`` and ``<results_dir>.json`` next to the per-run folder."""
    lines = [f"# {title}", "", *header, "", *report(records)]
    write_text(results_dir.with_suffix(".md"), "\n".join(lines) + "\n")
    write_json(results_dir.with_suffix(".json"), records)


# ------------------------------------------------------------------------------ command line
def write_smoke_devkit(root: Path) -> None:
    """The ``--smoke`` dataset of the DenseSIRST benchmarks: 8 small synthetic frames."""
    write_synthetic_devkit(root, n=8, seed=0, sizes=((96, 80), (112, 96)))


def _parse_args(doc: str, runs: list[Run], name: str, default_minutes: float, normalised: bool):
    names = [r.name for r in runs]
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="DenseSIRST devkit (not with --smoke)")
    budget_help = (
        f"training wall time per run (default: {default_minutes:g} x calibration ms / {REFERENCE_MS:.0f})"
        if normalised
        else f"training wall time per run (default {default_minutes:g})"
    )
    parser.add_argument("--minutes", type=float, default=None, help=budget_help)
    parser.add_argument("--workers", type=int, default=1, help="data-loader processes")
    parser.add_argument(
        "--by-images",
        action="store_true",
        help="an image budget per configuration (its images/s here x the minutes), the same on any"
        " machine and under any load; measured once per configuration, in a quiet moment",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="training device")
    parser.add_argument("--runs", nargs="*", default=None, choices=names, help="runs to do (default: all)")
    parser.add_argument("--results", default=None, help=f"per-run results folder (benchmarks/results/{name})")
    parser.add_argument("--work", default=None, help=f"run folders, not committed (benchmarks/work/{name})")
    parser.add_argument(
        "--complete",
        "--add-operating-points",
        dest="complete",
        action="store_true",
        help="re-evaluate finished runs whose records lack newer metrics or the sky gate (weights in --work)",
    )
    parser.add_argument(
        "--time-frames",
        action="store_true",
        help="time one 1280x1024 frame of every chosen configuration in one window (quiet machine);"
        " writes <results>/frame_timing.json",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the whole path in seconds: a tiny network, one epoch on synthetic frames; own folders",
    )
    args = parser.parse_args()
    if args.smoke == bool(args.data):
        parser.error("give --data DEVKIT, or --smoke (which writes its own synthetic devkit)")
    suffix = "_smoke" if args.smoke else ""
    args.work = Path(args.work or f"benchmarks/work/{name}{suffix}")
    args.results = Path(
        args.results or (args.work / "results" if args.smoke else f"benchmarks/results/{name}")
    )
    return args


def session_budget(args: argparse.Namespace, name: str, minutes: float, normalised: bool) -> Budget:
    """Calibrate this machine and set the session's budget (exits when a normalised budget
    would be stretched by a busy machine)."""
    calibration = calibrate(reps=1 if args.smoke else CALIBRATION_REPS)
    if args.minutes is not None:
        budget = Budget(args.minutes, calibration)
    elif normalised:
        if calibration["ms"] > MAX_SLOWDOWN * REFERENCE_MS and not args.smoke:
            sys.exit(
                f"{name}: error: calibration {calibration['ms']:.0f} ms is over {MAX_SLOWDOWN:g} x the"
                f" reference {REFERENCE_MS:.0f} ms: the machine is busy or slow; rerun when it is idle,"
                " or give --minutes"
            )
        budget = Budget(budget_minutes(minutes, calibration["ms"]), calibration, reference_minutes=minutes)
    else:
        budget = Budget(minutes, calibration)
    print(
        f"calibration: {calibration['ms']:.0f} ms (min {calibration['ms_min']:.0f}, max"
        f" {calibration['ms_max']:.0f}) on {calibration['cpu_model']}; budget {budget.minutes:.2f} min"
        f" per run ({budget.record()['rule']})"
    )
    return budget


def budget_main(
    doc: str,
    runs: list[Run],
    name: str,
    minutes: float,
    title: str,
    header: str,
    normalised: bool = False,
    smoke_runs: Sequence[str] | None = None,
    prepare: Callable[[list[Run], argparse.Namespace], None] | None = None,
    finish: Callable[[dict[str, dict], argparse.Namespace], None] | None = None,
    report: Callable[[dict[str, dict]], list[str]] = report_lines,
    smoke_data: Callable[[Path], Any] = write_smoke_devkit,
    smoke_overrides: Sequence[str] = SMOKE_OVERRIDES,
    reference_run: str | None = None,
) -> None:
    """Command line of a budget benchmark: calibrate (when a chosen run is still to do), run
    (or skip) the chosen runs, complete older records when asked, then write the tables of
    every finished run.

    ``minutes``: the budget per run; with ``normalised`` it is the budget at the reference
    CPU, scaled by this machine's calibration. ``header`` may use ``{minutes}`` (training
    minutes) and ``{calibration}`` (ms) of the latest calibrated record. ``smoke_runs``: what
    ``--smoke`` runs (default: every run). ``prepare``: called with the chosen runs (and the
    arguments) before any run, to resolve what they need; ``finish``: called with every finished record (and
    the arguments) before the report, to add what needs several records or the weights;
    ``report``: the tables under the header (default :func:`report_lines`). ``smoke_data``
    writes the dataset of ``--smoke`` into the folder it is given; ``smoke_overrides`` shrink
    its runs. ``reference_run``: the run whose image budget anchors a new configuration's
    (:func:`image_budget`; default: each measured alone).
    """
    args = _parse_args(doc, runs, name, minutes, normalised)
    chosen_names = args.runs or (list(smoke_runs or []) if args.smoke else []) or [r.name for r in runs]
    chosen = [r for r in runs if r.name in chosen_names]
    args.smoke_overrides = list(smoke_overrides)
    if args.smoke:
        args.data = str(args.work / "devkit")
        shutil.rmtree(args.data, ignore_errors=True)
        smoke_data(Path(args.data))
    if prepare is not None:
        prepare(chosen, args)
    if any(not (args.results / f"{r.name}.json").exists() for r in chosen):
        reference = next((r for r in runs if r.name == reference_run), None)
        budget = session_budget(args, name, minutes, normalised)
        run_all(chosen, args, args.results, args.work, budget, reference=reference)
    if args.complete:
        complete_records(chosen, args.data, args.results, args.work)
    timing_path = args.results / "frame_timing.json"
    if args.time_frames:
        smoke = args.smoke_overrides if args.smoke else ()
        rounds, reps = (1, 1) if args.smoke else (5, CALIBRATION_REPS)
        write_json(timing_path, time_frames(chosen, args.data, args.work, rounds, smoke, reps))
    finished = {}
    for r in runs:
        path = args.results / f"{r.name}.json"
        if path.exists():
            finished[r.name] = json.loads(path.read_text())
            finished[r.name].setdefault("config", r.config)  # records written before configurations
    if finish is not None:
        finish(finished, args)
    calibrated = [r for r in finished.values() if r.get("calibration")]
    latest = max(calibrated, key=lambda r: r["calibration"]["measured_at"], default=None)
    lines = [
        header.format(
            minutes=_fmt(latest["minutes"] if latest else args.minutes or minutes, 1),
            calibration=_fmt(latest["calibration"]["ms"] if latest else None, 0),
        )
    ]
    if args.smoke:
        lines.insert(
            0, "**Smoke run** (tiny network, one epoch on synthetic frames): the numbers mean nothing."
        )
    if timing_path.exists():
        reference_config = next((r.config for r in runs if r.name == reference_run), None)
        lines += ["", *frame_timing_lines(json.loads(timing_path.read_text()), reference_config)]
    write_report(finished, args.results, title, lines, report)
