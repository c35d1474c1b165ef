"""``bafenet info --model NAME [key=value ...] [--size 512] [--json]``: parameters and FLOPs.

Parameters count the frozen BatchNorm affine weights too (as the reference's table does);
FLOPs are torch's count (2 per multiply-add) and are also given as multiply-adds, the unit
of the paper's "FLOPs" column. ``key=value`` items are the zoo builder's switches (values
parsed as YAML, as every verb's overrides are), checked against the builder's signature.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from bafenet.cli.arguments import int_at_least
from bafenet.errors import BafenetError


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


def model_info(name: str, size: int = 512, **options) -> dict:
    """Parameter counts and FLOPs of the zoo model ``name`` at a ``size`` x ``size`` input."""
    from bafenet.models.complexity import count_flops, count_parameters
    from bafenet.models.zoo import build_model

    model = build_model(name, **options)
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
    parser.add_argument("--size", type=int_at_least(32), default=512, help="square input side (default 512)")
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
