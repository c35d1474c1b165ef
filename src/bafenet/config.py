"""Run configuration: dataclasses, YAML files and dotted command-line overrides.

A config has four sections, ``model``, ``data``, ``train`` and ``eval``; the defaults
below are the official recipe (reference §2) with bafenet's split choice (train on
``train_v2``, select on ``val_v2``). A YAML file lists only what it changes::

    cfg = load_config("src/bafenet/configs/bafenet_r18.yaml", ["train.epochs=3", "data.root=/data"])
    save_config(cfg, run_dir / "config.yaml")

Override values are parsed with ``yaml.safe_load`` (``3`` is an int, ``false`` a bool,
``[8, 16]`` a list, ``null`` None). Unknown keys and wrong types raise :class:`ConfigError`
naming the key and listing the valid ones. For float fields a string such as ``1e-4``
(which YAML 1.1 reads as a string) is accepted and converted; every float must be finite
(``.inf`` and ``.nan`` are refused).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from bafenet.errors import BafenetError
from bafenet.fileio import write_text


class ConfigError(BafenetError):
    """A config file or override is invalid (the message names the key)."""


MIN_INPUT_SIDE = 33
"""Shortest long side of a network input: the coarsest feature map (stride 32) needs more
than one location (a single one makes the head's group norm fail)."""


@dataclass
class ModelConfig:
    """Which network to build (a name of the model zoo) and its switches."""

    name: str = "bafenet_r18"
    # keyword arguments passed to the zoo builder (ablation switches, e.g. {exchange: false})
    kwargs: dict[str, Any] = field(default_factory=dict)
    # backbone initialisation: "imagenet" (torchvision weights), null (random) or a file path
    weights_backbone: str | None = "imagenet"
    # fine-tuning: start from every weight of this checkpoint (a released model or a run's
    # best.pt, of the same model and switches); the backbone initialisation is then skipped
    init_weights: str | None = None


@dataclass
class InputConfig:
    """Input geometry of training samples."""

    # "resize": whole frame resized (official: 512 x 512, keep_ratio false);
    # "native": random crops at native resolution, optionally upsampled by `scale`
    mode: Literal["resize", "native"] = "resize"
    size: int = 512  # resize: side of the square target size (longer side when keep_ratio)
    keep_ratio: bool = False
    crop_size: int = 512  # native: side of the square crop, in network-input pixels
    scale: float = 1.0  # native: resize factor applied to the frame before cropping
    # native: share of crops placed uniformly over the frame instead of near a target, so
    # target-free background (ground clutter, the horizon) is seen too (0: every crop near one)
    background_crop_prob: float = 0.0


@dataclass
class BagcpConfig:
    """Copy-paste augmentation (BAG-CP)."""

    enabled: bool = True
    # faithful = the official SkyCopyPaste; improved = documented fixes; plain = no sky rule
    mode: Literal["faithful", "improved", "plain"] = "faithful"
    prob: float = 1.0  # probability of applying it to a training sample


@dataclass
class DataConfig:
    """Dataset location, splits and the training pipeline."""

    root: str | None = None  # None: --data, then $BAFENET_DATA, then the cache dir
    # the folder's layout (bafenet.data.layouts; null: detected from the folder names)
    layout: Literal["densesirst", "sirst_v2", "sirst_v1", "nudt_sirst", "irstd1k", "masks"] | None = None
    images: str | None = None  # with `masks`: the image folder of any other layout (absolute or under root)
    masks: str | None = None  # ... and its mask folder
    boxes: Literal["masks", "files"] = "masks"  # mask sets: boxes of the mask components, or the box files
    skip_invalid: bool = False  # leave out samples the reader refuses (one warning; recorded), else stop
    train_split: str = "train_v2"
    val_split: str = "val_v2"
    input: InputConfig = field(default_factory=InputConfig)
    flip_prob: float = 0.5  # horizontal flip
    repeat: int = 3  # the training set is repeated this many times per epoch
    bagcp: BagcpConfig = field(default_factory=BagcpConfig)
    workers: int = 2  # data-loader worker processes
    cache: bool = False  # keep decoded images in memory
    # whole-frame context for sky-context models: its long side (null: the model's
    # context_size when model.kwargs.sky_context is true, else none)
    sky_context_size: int | None = None


@dataclass
class TrainConfig:
    """Optimisation and the training loop."""

    epochs: int = 20
    batch_size: int = 2  # per process
    optimizer: Literal["dadapt_adam", "adamw", "sgd"] = "dadapt_adam"
    lr: float = 1.0  # DAdaptAdam: a multiplier of the adapted step size
    weight_decay: float = 0.05  # not applied to norm parameters and biases
    decoupled: bool = True  # dadapt_adam only (AdamW is always decoupled, SGD uses L2)
    momentum: float = 0.9  # sgd only
    warmup_iters: int = 500  # iterations at warmup_factor x lr (constant warm-up)
    warmup_factor: float = 1.0 / 3.0
    milestones: list[int] = field(default_factory=lambda: [8, 16])  # epochs after which lr *= gamma
    gamma: float = 0.1
    clip_grad_norm: float | None = None  # max gradient L2 norm; null = no clipping
    amp: bool = False  # mixed precision (only takes effect on CUDA)
    seed: int = 0
    val_interval: int = 1  # validate every N epochs (and after the last one)
    max_time_minutes: float | None = None  # wall-clock budget; training stops at the step that uses it up
    # image budget: training stops at the step that has seen this many training images (all
    # ranks); unlike time, the same on every machine and under any load
    max_images: int | None = None
    # with a budget: fractions of it after which lr *= gamma (e.g. [0.8]); for budgeted runs
    # whose epoch count is not known in advance
    time_milestones: list[float] = field(default_factory=list)
    # moving average of the weights, evaluated and saved instead of the last step's
    # (engine/ema.py: decay min(ema_decay, (1 + n) / (10 + n)) after n steps); null = off
    ema_decay: float | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass
class EvalConfig:
    """Inference and evaluation settings (official test_cfg, reference §2.3)."""

    split: str = "val_v2"
    batch_size: int = 1  # results do not depend on it
    score_thr: float = 0.05
    nms_iou: float = 0.5
    max_per_img: int = 100
    nms_pre: int = 1000
    # resize: whole frame resized like training (official); native: whole frame at `scale`;
    # tiles: the frame at `scale` cut into overlapping tiles, detections merged (NMS)
    protocol: Literal["resize", "native", "tiles"] = "resize"
    scale: float | None = None  # native / tiles: resize factor (null: data.input.scale)
    max_side: int | None = None  # native / tiles: cap the scaled long side (large frames get less)
    tile_size: int = 1024  # tiles: side of a tile, in network-input pixels
    tile_overlap: int = 64  # tiles: overlap of neighbouring tiles (> twice the largest target)
    # run the network under autocast (fp16 on CUDA; bf16 on a CPU with native bf16, AVX-512 BF16
    # or AMX, float32 on other CPUs, where emulated bf16 is ~6x slower); decoding stays float32
    amp: bool = False
    iou_threshold: float = 0.5  # VOC AP
    pd_distance_px: float = 3.0  # IRSTD Pd: centroid distance below this counts as detected
    pd_score_thr: float = 0.3  # operating point for Pd / false alarms
    # largest network input, in pixels, after scaling: a frame whose input would be larger is
    # refused before it is resized (image files above 40 Mpx are refused before decoding)
    max_pixels: int = 40_000_000


@dataclass
class Config:
    """The whole run configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ------------------------------------------------------------------------------ public API


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, updated by the YAML file at ``path`` (if any), then by ``key.path=value`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                "save the config as UTF-8"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config file must hold a mapping, got {type(loaded).__name__}")
        raw = loaded or {}
    for override in overrides:
        apply_override(raw, override)
    sources = ([str(path)] if path is not None else []) + (
        ["overrides " + " ".join(overrides)] if overrides else []
    )
    where = f"{' + '.join(sources)}: " if sources else ""
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in the nested dict ``raw`` (value parsed with ``yaml.safe_load``)."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {override!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML ({_yaml_problem(exc)})") from None
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node = child
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        node[leaf] = {**node[leaf], **value}  # merge a section given as a mapping
    else:
        node[leaf] = value


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a (partial) nested dict."""
    cfg = _build(Config, raw, "")
    validate(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts/lists (YAML/JSON and checkpoint safe)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write ``cfg`` as YAML to ``path`` atomically (loadable again with :func:`load_config`)."""
    write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None))


def validate(cfg: Config) -> None:
    """Range checks that types alone cannot express; raises :class:`ConfigError`."""
    checks = [
        (cfg.data.input.size >= MIN_INPUT_SIDE, f"data.input.size must be >= {MIN_INPUT_SIDE}"),
        (cfg.data.input.crop_size >= MIN_INPUT_SIDE, f"data.input.crop_size must be >= {MIN_INPUT_SIDE}"),
        (
            0.0 <= cfg.data.input.background_crop_prob <= 1.0,
            "data.input.background_crop_prob must be in [0, 1]",
        ),
        (cfg.data.input.scale > 0, "data.input.scale must be > 0"),
        (0.0 <= cfg.data.flip_prob <= 1.0, "data.flip_prob must be in [0, 1]"),
        (0.0 <= cfg.data.bagcp.prob <= 1.0, "data.bagcp.prob must be in [0, 1]"),
        (cfg.data.repeat >= 1, "data.repeat must be >= 1"),
        ((cfg.data.images is None) == (cfg.data.masks is None), "data.images and data.masks go together"),
        (cfg.data.workers >= 0, "data.workers must be >= 0"),
        (
            cfg.data.sky_context_size is None or cfg.data.sky_context_size >= 32,
            "data.sky_context_size must be >= 32",
        ),
        (cfg.train.epochs >= 1, "train.epochs must be >= 1"),
        (cfg.train.batch_size >= 1, "train.batch_size must be >= 1"),
        (cfg.train.lr > 0, "train.lr must be > 0"),
        (cfg.train.weight_decay >= 0, "train.weight_decay must be >= 0"),
        (cfg.train.warmup_iters >= 0, "train.warmup_iters must be >= 0"),
        (0.0 < cfg.train.warmup_factor <= 1.0, "train.warmup_factor must be in (0, 1]"),
        (cfg.train.milestones == sorted(set(cfg.train.milestones)), "train.milestones must be increasing"),
        (all(m >= 1 for m in cfg.train.milestones), "train.milestones must be >= 1"),
        (0.0 < cfg.train.gamma <= 1.0, "train.gamma must be in (0, 1]"),
        (
            cfg.train.clip_grad_norm is None or cfg.train.clip_grad_norm > 0,
            "train.clip_grad_norm must be > 0",
        ),
        (cfg.train.val_interval >= 1, "train.val_interval must be >= 1"),
        (
            cfg.train.time_milestones == sorted(set(cfg.train.time_milestones))
            and all(0.0 < f < 1.0 for f in cfg.train.time_milestones),
            "train.time_milestones must be increasing fractions in (0, 1)",
        ),
        (
            not cfg.train.time_milestones
            or cfg.train.max_time_minutes is not None
            or cfg.train.max_images is not None,
            "train.time_milestones need train.max_time_minutes or train.max_images",
        ),
        (cfg.train.max_images is None or cfg.train.max_images > 0, "train.max_images must be > 0"),
        (cfg.train.ema_decay is None or 0.0 < cfg.train.ema_decay < 1.0, "train.ema_decay must be in (0, 1)"),
        (cfg.eval.scale is None or cfg.eval.scale > 0, "eval.scale must be > 0"),
        (
            cfg.eval.max_side is None or cfg.eval.max_side >= MIN_INPUT_SIDE,
            f"eval.max_side must be >= {MIN_INPUT_SIDE}",
        ),
        (cfg.eval.max_pixels > 0, "eval.max_pixels must be > 0"),
        (cfg.eval.tile_size >= 64, "eval.tile_size must be >= 64"),
        (0 <= cfg.eval.tile_overlap < cfg.eval.tile_size, "eval.tile_overlap must be in [0, tile_size)"),
        (
            cfg.train.max_time_minutes is None or cfg.train.max_time_minutes > 0,
            "train.max_time_minutes must be > 0",
        ),
        (cfg.eval.batch_size >= 1, "eval.batch_size must be >= 1"),
        (0.0 <= cfg.eval.score_thr < 1.0, "eval.score_thr must be in [0, 1)"),
        (0.0 < cfg.eval.nms_iou <= 1.0, "eval.nms_iou must be in (0, 1]"),
        (cfg.eval.max_per_img >= 1, "eval.max_per_img must be >= 1"),
        (cfg.eval.nms_pre >= 1, "eval.nms_pre must be >= 1"),
        (0.0 < cfg.eval.iou_threshold <= 1.0, "eval.iou_threshold must be in (0, 1]"),
        (cfg.eval.pd_distance_px > 0, "eval.pd_distance_px must be > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


# ------------------------------------------------------------------------------ internals


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where it is."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from mapping ``raw``, checking keys and value types."""
    section = prefix.rstrip(".") or "the config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{section} must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown key '{prefix}{key}'{hint}; valid keys in {section}: {', '.join(valid)}"
            )
        values[key] = _convert(hints[key], value, f"{prefix}{key}")
    return cls(**values)


def _convert(hint: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the type hint ``hint`` and return it (converted where lossless)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for arg in non_none:
            try:
                return _convert(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(non_none) == 1 else f"{key}: {value!r} matches none of {hint}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        except OverflowError:  # an int too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported type hint {hint!r}")  # a bug in the dataclasses above
