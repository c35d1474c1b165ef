"""``bafenet aug ...`` (being built)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``aug`` verb."""
    parser = subparsers.add_parser("aug", help="(being built)")
    parser.set_defaults(func=lambda args: parser.print_help())
