"""``bafenet export --weights W --format onnx [--dynamic] [--opset N] [--out F]``: write an ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

from bafenet.errors import BafenetError


def _export(args: argparse.Namespace) -> int:
    from bafenet.engine.onnx_backend import export_model

    weights = Path(args.weights)
    out = Path(args.out) if args.out else weights.with_suffix(".onnx")
    if out.resolve() == weights.resolve():
        raise BafenetError(f"{out}: the output would overwrite the checkpoint; choose another --out")
    if out.is_dir():
        raise BafenetError(f"{out}: is a folder; --out names the .onnx file to write")
    height, width = args.size
    path = export_model(weights, out, dynamic=args.dynamic, opset=args.opset, height=height, width=width)
    shape = (
        "any batch and input size (a multiple of 32)" if args.dynamic else f"batch 1, {height}x{width} input"
    )
    print(f"wrote {path} (opset {args.opset}, {shape}); run it with --backend onnxruntime")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` verb."""
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX (for --backend onnxruntime)")
    p.add_argument("--weights", required=True, help="checkpoint to export")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="file format (onnx)")
    p.add_argument(
        "--dynamic", action="store_true", help="any batch size and input size (else batch 1 at --size)"
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version, 11..20 (default: 17)")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(512, 512),
        metavar=("H", "W"),
        help="input height and width of a fixed graph, multiples of 32 (default: 512 512)",
    )
    p.add_argument("--out", default=None, help="ONNX file to write (default: the weights with .onnx)")
    p.set_defaults(func=_export)
