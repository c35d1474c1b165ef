"""``bafenet info ...`` (being built)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` verb."""
    parser = subparsers.add_parser("info", help="(being built)")
    parser.set_defaults(func=lambda args: parser.print_help())
