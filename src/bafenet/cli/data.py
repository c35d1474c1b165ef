"""``bafenet data ...``: synth, check, stats, download (being built)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` verb."""
    parser = subparsers.add_parser("data", help="dataset tools")
    parser.set_defaults(func=lambda args: parser.print_help())
