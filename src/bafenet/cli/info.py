"""``bafenet info --model NAME [key=value ...] [--size 512] [--json]``: parameters and FLOPs.

Parameters count the frozen BatchNorm affine weights too (as the reference's table does);
FLOPs are torch's count (2 per multiply-add) and are also given as multiply-adds, the unit
of the paper's "FLOPs" column. ``key=value`` items are the zoo builder's switches (values
parsed as YAML, as every verb's overrides are), checked against the builder's signature.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from bafenet.errors import BafenetError


def _positive_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be an integer, got {text!r}") from None
    if value < 32:
        raise argparse.ArgumentTypeError(f"size must be at least 32 pixels, got {value}")
    return value


def _parse_switches(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings -> keyword arguments (values parsed as YAML: true, 0.25, [..])."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BafenetError(f"model switch {item!r} is not of the form key=value (e.g. exchange=false)")
        try:
            options[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise BafenetError(f"model switch {key}: cannot parse value {value!r} ({exc})") from None
    return options


def switch_types(name: str) -> dict[str, Any]:
    """The type hint of every switch of zoo model ``name``, read from the builders' signatures."""
    from bafenet.models import zoo

    if name not in zoo.MODELS:
        return {}  # build_model names the valid models
    builders = [zoo._detector] + ([zoo._bafenet] if name.startswith("bafenet") else [])
    hints = {key: hint for builder in builders for key, hint in typing.get_type_hints(builder).items()}
    return {key: hints[key] for key in zoo.COMMON_OPTIONS + zoo.BAFENET_OPTIONS if key in hints}


def _describe(hint: Any) -> str:
    """``hint`` in words: "true or false", "an integer >= 0", "one of fixed, learned", ..."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    words = {bool: "true or false", int: "an integer >= 0", float: "a number", str: "a string"}
    words |= {type(None): "null", Path: "a file path", Sequence: "a list"}
    return words.get(typing.get_origin(hint) or hint, str(hint))


def _matches(hint: Any, value: Any) -> bool:
    """Whether ``value`` (parsed YAML) fits the type hint ``hint`` (integer switches count things)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(arg, value) for arg in args)
    if origin is Literal:
        return value in args
    if origin in (Sequence, list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and len(args) != len(value):
            return False
        items = args if origin is tuple else args * len(value)
        return all(_matches(arg, item) for arg, item in zip(items, value, strict=False))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, Path):
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    return True  # a hint this check does not know: the builder itself judges the value


def check_switches(name: str, options: dict[str, Any]) -> None:
    """Refuse a switch whose value does not fit its type in the builder's signature.

    Unknown names are left to :func:`bafenet.models.zoo.build_model`, which lists the valid ones.
    """
    hints = switch_types(name)
    for key, value in options.items():
        if key in hints and not _matches(hints[key], value):
            raise BafenetError(f"model switch {key}={value!r}: expected {_describe(hints[key])}")


def model_info(name: str, size: int = 512, **options) -> dict:
    """Parameter counts and FLOPs of the zoo model ``name`` at a ``size`` x ``size`` input."""
    from bafenet.models.complexity import count_flops, count_parameters
    from bafenet.models.zoo import build_model

    check_switches(name, options)
    try:
        model = build_model(name, **options)
    except BafenetError:
        raise
    except (ValueError, TypeError, RuntimeError) as exc:  # a value the builder's layers refuse
        switches = " ".join(f"{key}={value}" for key, value in options.items())
        reason = str(exc).strip().split("\n")[0] or type(exc).__name__
        raise BafenetError(f"model {name} cannot be built with {switches}: {reason}") from None
    counts = count_parameters(model)
    flops = count_flops(model, size)
    return {
        "model": name,
        "params": counts["params"],
        "gflops": round(flops / 1e9, 3),
        "size": size,
        "gmacs": round(flops / 2e9, 3),
        "trainable_params": counts["trainable"],
        "frozen_params": counts["frozen"],
        "frozen_bn_affine": counts["frozen_bn_affine"],
        "options": options,
    }


def _run(args: argparse.Namespace) -> int:
    info = model_info(args.model, args.size, **_parse_switches(args.switches + args.option))
    if args.json:
        print(json.dumps(info))
        return 0
    other_frozen = info["frozen_params"] - info["frozen_bn_affine"]
    print(f"model        {info['model']}" + (f" {info['options']}" if info["options"] else ""))
    print(f"input        1 x 1 x {info['size']} x {info['size']}")
    print(f"parameters   {info['params']:,} (trainable {info['trainable_params']:,})")
    frozen = f"  frozen     {info['frozen_bn_affine']:,} backbone BatchNorm affine"
    print(frozen + (f" + {other_frozen:,} un-learned channel selector" if other_frozen else ""))
    print(f"GFLOPs       {info['gflops']:.2f} (torch count, 2 per multiply-add)")
    print(f"GMACs        {info['gmacs']:.2f} (multiply-adds: the unit of the paper's FLOPs column)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` verb."""
    parser = subparsers.add_parser(
        "info",
        help="parameters and FLOPs of a model",
        description="Print the parameter count (total, trainable) and FLOPs of a zoo model.",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="NAME",
        help="zoo model: fcos_r18/r34/r50, fcos_seg_r18/r34/r50, bafenet_r18/r34/r50, *_hr",
    )
    parser.add_argument(
        "switches", nargs="*", metavar="key=value", help="model switches, e.g. exchange=false p2=true"
    )
    parser.add_argument("--size", type=_positive_size, default=512, help="square input side (default 512)")
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="key=value",
        help="a model switch, the same as a key=value item (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run, overrides_dest="switches")
