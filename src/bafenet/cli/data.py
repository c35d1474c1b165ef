"""``bafenet data synth | check | stats | download``: dataset tools."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bafenet.data.layouts import LAYOUT_NAMES
from bafenet.paths import resolve_data_root


def add_data_arguments(parser: argparse.ArgumentParser, split_help: str) -> None:
    """The dataset arguments shared by every command that reads data."""
    parser.add_argument(
        "root", nargs="?", default=None, help="dataset folder (default: --data, $BAFENET_DATA, cache)"
    )
    parser.add_argument("--data", default=None, help="dataset folder (same as ROOT)")
    parser.add_argument("--split", default=None, help=split_help)


def data_root(args: argparse.Namespace) -> Path:
    """The dataset folder from ROOT / --data / $BAFENET_DATA / the cache dir."""
    return resolve_data_root(args.root or args.data)


def add_layout_arguments(parser: argparse.ArgumentParser, skip_invalid: bool) -> None:
    """``--layout``, ``--images DIR --masks DIR`` and (``skip_invalid``) ``--skip-invalid``."""
    g = parser.add_argument_group("dataset layout (default: detected from the folder names)")
    g.add_argument(
        "--layout",
        choices=[name for name in LAYOUT_NAMES if name != "folders"],  # folders: --images, --masks
        default=None,
        help="read the folder as this layout (data.layout)",
    )
    g.add_argument(
        "--images", default=None, metavar="DIR", help="image folder of any other layout (with --masks)"
    )
    g.add_argument("--masks", default=None, metavar="DIR", help="mask folder of any other layout")
    if skip_invalid:
        g.add_argument(
            "--skip-invalid",
            action="store_true",
            help="leave out every sample the reader refuses, with one warning; they are recorded "
            "(data.skip_invalid=true)",
        )


def apply_layout_arguments(data: Any, args: argparse.Namespace) -> None:
    """Put the layout flags into a data config (``--images``/``--masks`` made absolute from the cwd)."""
    if args.layout:
        data.layout = args.layout
    if args.images or args.masks:
        data.images = str(Path(args.images).expanduser().resolve()) if args.images else None
        data.masks = str(Path(args.masks).expanduser().resolve()) if args.masks else None
    if getattr(args, "skip_invalid", False):
        data.skip_invalid = True


def _synth(args: argparse.Namespace) -> int:
    from bafenet.data.synthetic import write_synthetic_devkit

    out = write_synthetic_devkit(Path(args.out), n=args.n, seed=args.seed)
    print(f"wrote {args.n} synthetic images to {out}")
    return 0


def dataset_folders(args: argparse.Namespace) -> tuple[Path, Path | None, Path | None]:
    """(root, image folder, mask folder) from ROOT / --data and ``--images`` / ``--masks``
    (those named from the cwd)."""
    from bafenet.data import dataset_location

    if args.images or args.masks:
        images, masks = (Path(v).expanduser().resolve() if v else None for v in (args.images, args.masks))
        return dataset_location(args.root or args.data, images, masks)
    return data_root(args), None, None


def _check(args: argparse.Namespace) -> int:
    from bafenet.data.check import check_dataset

    root, images, masks = dataset_folders(args)
    report = check_dataset(root, args.split, layout=args.layout, images=images, masks=masks)
    for line in report.problems:
        print(line)
    for line in report.notes:
        print(f"note: {line}")
    status = "OK" if not report.problems else f"{len(report.problems)} problem(s)"
    print(f"checked {report.n_images} images, {report.n_targets} targets: {status}")
    return 1 if report.problems else 0


def _stats(args: argparse.Namespace) -> int:
    from bafenet.data.stats import dataset_stats, summary_lines, write_stats_report

    root, images, masks = dataset_folders(args)
    stats = dataset_stats(root, args.split, layout=args.layout, images=images, masks=masks)
    for line in summary_lines(stats):
        print(line)
    if args.out:
        for path in write_stats_report(stats, Path(args.out)):
            print(f"wrote {path}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from bafenet.data.download import download_dataset

    path = download_dataset(args.name, args.root, url=args.url, sha256=args.sha256)
    print(f"dataset ready at {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` verb and its sub-commands."""
    parser = subparsers.add_parser("data", help="dataset tools: synth, check, stats, download")
    sub = parser.add_subparsers(dest="data_command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("synth", help="write the built-in synthetic dataset (DenseSIRST devkit layout)")
    p.add_argument("out", help="output folder")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("check", help="validate every file of a dataset; exit 1 on any problem")
    add_data_arguments(p, "split name or split file (default: every image)")
    add_layout_arguments(p, skip_invalid=False)
    p.set_defaults(func=_check)

    p = sub.add_parser("stats", help="dataset statistics; writes stats.json and PNG plots with --out")
    add_data_arguments(p, "split name or split file (default: every image)")
    p.add_argument("--out", default=None, help="folder for stats.json and plots")
    add_layout_arguments(p, skip_invalid=False)
    p.set_defaults(func=_stats)

    p = sub.add_parser("download", help="download and verify a public dataset")
    p.add_argument("name", choices=["densesirst"], help="dataset name")
    p.add_argument("--root", default=None, help="target folder (default: the cache dir)")
    p.add_argument("--url", default=None, help="override the archive URL (mirrors, tests)")
    p.add_argument("--sha256", default=None, help="expected sha256 of the archive")
    p.set_defaults(func=_download)
