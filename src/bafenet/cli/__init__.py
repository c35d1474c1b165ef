"""The ``bafenet`` command line: ``bafenet VERB ...``.

Each verb lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (called with the parsed arguments, returning an exit code).
Expected problems (:class:`bafenet.errors.BafenetError`) print one line and exit 1.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from tqdm import tqdm

from bafenet import __version__
from bafenet.cli import aug as aug_cli
from bafenet.cli import data as data_cli
from bafenet.cli import demo as demo_cli
from bafenet.cli import export as export_cli
from bafenet.cli import info as info_cli
from bafenet.cli import predict as predict_cli
from bafenet.cli import train as train_cli
from bafenet.cli import val as val_cli
from bafenet.errors import BafenetError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every verb."""
    parser = argparse.ArgumentParser(
        prog="bafenet",
        description="Clustered infrared small target detection: data tools, BAG-CP, BAFE-Net.",
    )
    parser.add_argument("--version", action="version", version=f"bafenet {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    subparsers.required = True
    for module in (demo_cli, data_cli, aug_cli, info_cli, train_cli, val_cli, predict_cli, export_cli):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bafenet`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options (``train CONFIG --name x train.epochs=3``)
    dest = getattr(args, "overrides_dest", None)
    if extra and dest and all("=" in e and not e.startswith("-") for e in extra):
        getattr(args, dest).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except BafenetError as exc:
        _close_progress_bars()
        print(f"bafenet: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _close_progress_bars()
        print("bafenet: interrupted", file=sys.stderr)
        return 130


PACKAGE_DIR = Path(__file__).resolve().parents[1]


def console_main() -> int:
    """The ``bafenet`` console script (and ``python -m bafenet``): :func:`main`, with bafenet's
    own warnings printed as one line (``bafenet: warning: ...``) instead of Python's
    file-and-source-line format."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if Path(filename).resolve().is_relative_to(PACKAGE_DIR):
            print(f"bafenet: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.showwarning = show
        return main()


def _close_progress_bars() -> None:
    """Close the tqdm bars an error left open, so that the next message starts on its own line.

    A bar held by a function that raised is still alive (the traceback keeps it): without this,
    the error would be printed at the end of the bar's line.
    """
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
