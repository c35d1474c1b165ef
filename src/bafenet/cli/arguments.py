"""Argument types shared by the verbs: a bad value is refused at parsing, before any work."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` that takes an integer ``>= minimum`` and refuses anything else.

    Example: ``p.add_argument("--n", type=int_at_least(1))``; ``--n 0`` then ends in
    ``error: argument --n: expected an integer >= 1, got '0'`` (exit 2), before any work.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"  # what argparse names in its own messages
    return parse
