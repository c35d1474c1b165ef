"""``bafenet aug preview | stats``: look at BAG-CP output and measure how real it looks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from bafenet.cli.data import add_data_arguments, data_root
from bafenet.errors import BafenetError

_MODES = ("faithful", "improved", "plain")


def _open(args: argparse.Namespace) -> Any:
    from bafenet.data import open_dataset

    dataset = open_dataset(data_root(args), args.split)
    if len(dataset) == 0:
        raise BafenetError(f"{data_root(args)}: split {args.split!r} holds no images")
    return dataset


def _zoom(rgb: np.ndarray, centre: tuple[float, float], side: int = 96) -> tuple[np.ndarray, int, int]:
    """The ``side`` x ``side`` crop of ``rgb`` around ``centre`` (x, y), and its top-left (row, col)."""
    h, w = rgb.shape[:2]
    top = int(np.clip(centre[1] - side // 2, 0, max(0, h - side)))
    left = int(np.clip(centre[0] - side // 2, 0, max(0, w - side)))
    return rgb[top : top + side, left : left + side], top, left


def _zoom_panel(after: Any, n_original: int, records: list[Any], factor: int = 4) -> np.ndarray:
    """The largest pasted cluster, enlarged ``factor`` times, original boxes green, pasted red."""
    from bafenet.viz import GREEN, RED, draw_boxes, gray_to_rgb, upscale

    groups = [r.group for r in records]
    largest = max(set(groups), key=groups.count)
    members = np.array([r.box for r in records if r.group == largest])
    centre = (
        (members[:, 0].min() + members[:, 2].max()) / 2,
        (members[:, 1].min() + members[:, 3].max()) / 2,
    )
    crop, top, left = _zoom(gray_to_rgb(after.image), centre)
    shift = np.float32([left, top, left, top])
    zoomed = upscale(crop, factor)
    zoomed = draw_boxes(zoomed, after.boxes[:n_original] - shift, GREEN, scale=factor)
    return draw_boxes(zoomed, after.boxes[n_original:] - shift, RED, scale=factor)


def _preview(args: argparse.Namespace) -> int:
    from bafenet.data.bagcp import occupancy_map
    from bafenet.data.pipeline import build_train_pipeline, sample_rng
    from bafenet.data.realism import peaks_and_contrasts
    from bafenet.fileio import write_json
    from bafenet.viz import (
        CYAN,
        GREEN,
        RED,
        draw_boxes,
        gray_to_rgb,
        mask_outline,
        paint,
        panel_row,
        save_png,
    )

    if args.n < 1:
        raise BafenetError("--n must be at least 1")
    dataset = _open(args)
    pipeline = build_train_pipeline(size=args.size, bagcp=args.mode)
    pick = np.random.default_rng(args.seed)
    indices = pick.choice(len(dataset), size=min(args.n, len(dataset)), replace=False)
    out_dir = Path(args.out)
    entries = []
    for k, index in enumerate(indices):
        rng = sample_rng(args.seed, 0, int(index))
        sample = dataset[int(index)]
        source = dataset[int(rng.integers(len(dataset)))]
        before = pipeline.geometric(sample, rng)
        after, records = pipeline.copy_paste.paste(before, pipeline.geometric(source, rng), rng)
        pasted = after.boxes[before.num_targets :]
        _, contrasts = peaks_and_contrasts(after.image, pasted, occupancy_map(after))

        sky_line = mask_outline(before.sky_mask == 1)
        left = draw_boxes(paint(gray_to_rgb(before.image), sky_line, CYAN), before.boxes, GREEN)
        right = paint(gray_to_rgb(after.image), sky_line, CYAN)
        right = draw_boxes(draw_boxes(right, before.boxes, GREEN), pasted, RED)
        panels = [left, right]
        titles = [
            f"{before.image_id}: {before.num_targets} targets",
            f"+{len(records)} pasted from {source.image_id}",
        ]
        if records:
            panels.append(_zoom_panel(after, before.num_targets, records))
            titles.append("largest pasted cluster, x4")
        name = f"{k:02d}_{before.image_id}.png"
        save_png(out_dir / name, panel_row(panels, titles))
        entries.append(
            {
                "image_id": before.image_id,
                "source_id": source.image_id,
                "panel": name,
                "size": [before.height, before.width],
                "pasted": [
                    {**r.to_dict(), "peak_contrast": None if np.isnan(c) else round(float(c), 2)}
                    for r, c in zip(records, contrasts, strict=True)
                ],
            }
        )
        print(f"{name}: {len(records)} pasted from {source.image_id}")
    write_json(
        out_dir / "preview.json", {"mode": args.mode, "seed": args.seed, "size": args.size, "images": entries}
    )
    print(f"wrote {len(entries)} panels and preview.json to {out_dir}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from bafenet.data.realism import realism_report, write_realism_report

    modes = args.modes or list(_MODES)
    dataset = _open(args)
    summary, values = realism_report(
        dataset, size=args.size, modes=modes, seed=args.seed, link_px=args.link_px, limit=args.limit
    )
    summary = {"dataset": str(data_root(args)), "split": args.split, **summary}
    for path in write_realism_report(summary, values, Path(args.out)):
        print(f"wrote {path}")
    real = summary["real"]
    for mode in modes:
        ks = summary["modes"][mode]["ks"]
        line = ", ".join(f"{q} {v['statistic']:.3f}" for q, v in ks.items() if v)
        print(f"{mode}: {summary['modes'][mode]['pasted']} pasted vs {real['targets']} real; KS {line}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``aug`` verb and its sub-commands."""
    parser = subparsers.add_parser("aug", help="augmentation tools: BAG-CP preview and realism statistics")
    sub = parser.add_subparsers(dest="aug_command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("preview", help="before/after BAG-CP panels (PNG) and a JSON list of pasted targets")
    add_data_arguments(p, "split name or split file (default: every image)")
    p.add_argument("--n", type=int, default=8, help="number of images (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--mode", choices=_MODES, default="faithful", help="BAG-CP preset (default faithful)")
    p.add_argument("--size", type=int, default=512, help="training resize side (default 512)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_preview)

    p = sub.add_parser("stats", help="realism report: real vs pasted targets (histograms, KS distances)")
    add_data_arguments(p, "split name or split file (default: every image)")
    p.add_argument("--out", required=True, help="output folder for realism.json/.md/.png")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, default=512, help="training resize side (default 512)")
    p.add_argument("--modes", nargs="+", choices=_MODES, default=None, help="BAG-CP presets (default all)")
    p.add_argument("--link-px", type=float, default=8.0, help="cluster linking distance in px (default 8)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.set_defaults(func=_stats)
