"""Dataset statistics (``bafenet data stats``): counts, sizes, contrast, sky, with plots.

Definitions (per target = per box; boxes are half-open pixel edges, see
:mod:`bafenet.data.sample`):

* **Target pixels**: the target-mask pixels inside the box (the whole box when the mask
  has none there). **Mask area** is their count; **fill** = mask area / box area.
* **Background ring**: the pixels of the box grown by ``RING_PX`` = 3 px on every side
  (clipped to the image), minus the box itself, minus every target-mask pixel of the image.
* **Peak**: the largest grey level (8-bit scale, after the image conversion of
  :mod:`bafenet.data.imageio`) over the target pixels; **mu**, **sigma**: mean and standard
  deviation of the ring.
* **Local contrast** (ratio form, as the local-contrast-measure family uses it):
  ``C = peak / max(mu, 1)``. C = 1 means "as bright as its surroundings"; the dataset
  README's claim "90 % of targets have local contrast < 2" is checked with this form.
* **SCR** (signal-to-clutter ratio, z-score form): ``(peak - mu) / max(sigma, 1)``; the
  floor of one grey level keeps flat (quantised) backgrounds finite.
* **Brightest**: the box contains a pixel equal to its image's maximum.
* **Sky fraction** of an image: sky pixels / pixels with a known sky label; **target pixels
  in sky**: the share of target-mask pixels labelled sky (among those with a known label).
* **Box size**: ``w x h`` = ``(x2 - x1) x (y2 - y1)`` (no "+1"); ``sqrt(w h)`` shares are
  cumulative.

Everything in the returned dictionary is plain JSON; the plots are drawn from it.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from bafenet.data import open_dataset
from bafenet.data.sample import SKY, UNKNOWN, Sample
from bafenet.fileio import atomic_path, write_json

RING_PX = 3
CONTRAST_EDGES = np.round(np.arange(0.0, 8.01, 0.1), 2)  # local contrast histogram bins
SCR_EDGES = np.arange(0.0, 121.0, 2.0)  # SCR histogram bins
SKY_EDGES = np.linspace(0.0, 1.0, 21)
SQRT_AREA_STEPS = (3, 4, 5, 8)
BOX_GRID = 10  # the box-size heatmap shows sides 1..9 and ">= 10"


def _int_box(box: np.ndarray, h: int, w: int) -> tuple[int, int, int, int]:
    x1, y1 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x2, y2 = min(w, math.ceil(box[2])), min(h, math.ceil(box[3]))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def target_measures(sample: Sample) -> list[dict[str, float]]:
    """One dict per box (module docstring definitions): ``peak``, ``contrast``, ``scr`` (NaN
    when the ring is empty), ``area`` (mask pixels), ``box_area``, ``brightest`` (0/1),
    ``sky_px`` / ``known_px`` (target pixels labelled sky / with a known label)."""
    image, mask, sky = sample.image, sample.target_mask.astype(bool), sample.sky_mask
    h, w = image.shape
    image_max = float(image.max())
    rows = []
    for box in sample.boxes:
        x1, y1, x2, y2 = _int_box(box, h, w)
        patch = image[y1:y2, x1:x2]
        inside = mask[y1:y2, x1:x2]
        target = patch[inside] if inside.any() else patch.ravel()
        peak = float(target.max())
        rx1, ry1, rx2, ry2 = (
            max(0, x1 - RING_PX),
            max(0, y1 - RING_PX),
            min(w, x2 + RING_PX),
            min(h, y2 + RING_PX),
        )
        ring = ~mask[ry1:ry2, rx1:rx2]
        ring[y1 - ry1 : y2 - ry1, x1 - rx1 : x2 - rx1] = False
        ring_values = image[ry1:ry2, rx1:rx2][ring]
        row = {
            "peak": peak,
            "area": float(inside.sum()),
            "box_area": float((x2 - x1) * (y2 - y1)),
            "brightest": float(patch.max() >= image_max),
            "sky_px": float((sky[y1:y2, x1:x2][inside] == SKY).sum()),
            "known_px": float((sky[y1:y2, x1:x2][inside] != UNKNOWN).sum()),
            "contrast": math.nan,
            "scr": math.nan,
        }
        if ring_values.size:
            mu, sigma = float(ring_values.mean()), float(ring_values.std())
            row["contrast"] = peak / max(mu, 1.0)
            row["scr"] = (peak - mu) / max(sigma, 1.0)
        rows.append(row)
    return rows


def _distribution(values: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    """Summary numbers and a histogram (with under/overflow counts) of finite ``values``."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"count": 0}
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p10": float(np.percentile(values, 10)),
        "p90": float(np.percentile(values, 90)),
        "share_below_2": float((values < 2).mean()),
        "histogram": {
            "edges": [float(e) for e in edges],
            "counts": [int(c) for c in counts],
            "note": "values outside the edges are counted in the first/last bin",
        },
    }


def dataset_stats(
    root: Path,
    split: str | None,
    progress: bool = True,
    *,
    layout: str | None = None,
    images: Path | None = None,
    masks: Path | None = None,
) -> dict[str, Any]:
    """Statistics of a dataset folder (devkit or mask-only set), optionally one split.

    See the module docstring for the definitions. Reads every image once (a progress bar
    on stderr unless ``progress`` is false). ``layout``, ``images``, ``masks``: as
    :func:`bafenet.data.open_dataset` takes them.
    """
    dataset = open_dataset(root, split=split, layout=layout, images=images, masks=masks)
    per_image_targets: list[int] = []
    image_sizes: Counter[tuple[int, int]] = Counter()
    box_sizes: Counter[tuple[int, int]] = Counter()
    sky_fractions: list[float] = []
    targets: list[dict[str, float]] = []
    for index in tqdm(range(len(dataset)), desc="stats", unit="img", disable=not progress):
        sample = dataset[index]
        per_image_targets.append(sample.num_targets)
        image_sizes[(sample.width, sample.height)] += 1
        for x1, y1, x2, y2 in sample.boxes:
            box_sizes[(round(float(x2 - x1)), round(float(y2 - y1)))] += 1
        known = sample.sky_mask != UNKNOWN
        if known.any():
            sky_fractions.append(float((sample.sky_mask[known] == SKY).mean()))
        targets.extend(target_measures(sample))

    counts = np.asarray(per_image_targets, dtype=np.int64)
    n_targets = int(counts.sum())
    column = {
        key: np.asarray([t[key] for t in targets], dtype=np.float64)
        for key in (targets[0] if targets else {})
    }
    stats: dict[str, Any] = {
        "root": str(root),
        "split": split or "all",
        "images": len(per_image_targets),
        "targets": n_targets,
        "targets_per_image": _count_summary(counts),
        "image_sizes": _size_summary(image_sizes),
        "box_sizes": _box_summary(box_sizes, n_targets),
        "definitions": {
            "ring_px": RING_PX,
            "local_contrast": "peak / max(mu, 1); peak = max grey level of the target's mask pixels "
            f"in its box, mu = mean of the ring (box grown by {RING_PX} px, minus the box and all "
            "target-mask pixels)",
            "scr": "(peak - mu) / max(sigma, 1), sigma = std of the same ring",
            "brightest": "the box contains a pixel equal to the image maximum",
        },
    }
    if targets:
        known_px = column["known_px"].sum()
        stats["mask_area"] = {
            "mean": float(column["area"].mean()),
            "median": float(np.median(column["area"])),
            "fill_mean": float((column["area"] / column["box_area"]).mean()),
        }
        stats["local_contrast"] = _distribution(column["contrast"], CONTRAST_EDGES)
        stats["scr"] = _distribution(column["scr"], SCR_EDGES)
        stats["brightest"] = {
            "targets": int(column["brightest"].sum()),
            "share": float(column["brightest"].mean()),
        }
        stats["target_pixels_in_sky"] = float(column["sky_px"].sum() / known_px) if known_px else None
    if sky_fractions:
        fractions = np.asarray(sky_fractions)
        hist, _ = np.histogram(fractions, bins=SKY_EDGES)
        stats["sky"] = {
            "images": int(fractions.size),
            "mean": float(fractions.mean()),
            "median": float(np.median(fractions)),
            "all_sky_images": int((fractions == 1).sum()),
            "no_sky_images": int((fractions == 0).sum()),
            "histogram": {"edges": [float(e) for e in SKY_EDGES], "counts": [int(c) for c in hist]},
        }
    return stats


def _count_summary(counts: np.ndarray) -> dict[str, Any]:
    if counts.size == 0:
        return {"mean": 0.0, "median": 0.0, "min": 0, "max": 0, "histogram": {}}
    values, freq = np.unique(counts, return_counts=True)
    return {
        "mean": float(counts.mean()),
        "median": float(np.median(counts)),
        "min": int(counts.min()),
        "max": int(counts.max()),
        "histogram": {str(int(v)): int(f) for v, f in zip(values, freq, strict=True)},
    }


def _size_summary(sizes: Counter[tuple[int, int]]) -> dict[str, Any]:
    by_area = sorted(sizes, key=lambda s: (s[0] * s[1], s))
    return {
        "distinct": len(sizes),
        "smallest": f"{by_area[0][0]}x{by_area[0][1]}" if by_area else None,
        "largest": f"{by_area[-1][0]}x{by_area[-1][1]}" if by_area else None,
        "most_common": [{"size": f"{w}x{h}", "images": c} for (w, h), c in _ranked(sizes)[:10]],
        "all": [{"width": w, "height": h, "images": c} for (w, h), c in _ranked(sizes)],
    }


def _ranked(counter: Counter[tuple[int, int]]) -> list[tuple[tuple[int, int], int]]:
    """Most frequent first; ties by size (deterministic)."""
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))


def _box_summary(sizes: Counter[tuple[int, int]], n_targets: int) -> dict[str, Any]:
    ranked = _ranked(sizes)
    sqrt_areas = np.repeat([math.sqrt(w * h) for (w, h), _ in ranked], [c for _, c in ranked])
    summary: dict[str, Any] = {
        "mode": f"{ranked[0][0][0]}x{ranked[0][0][1]}" if ranked else None,
        "mode_share": ranked[0][1] / n_targets if ranked else None,
        "most_common": [{"size": f"{w}x{h}", "targets": c} for (w, h), c in ranked[:15]],
        "all": [{"width": w, "height": h, "targets": c} for (w, h), c in ranked],
    }
    if n_targets:
        summary["sqrt_area_share_le"] = {str(s): float((sqrt_areas <= s).mean()) for s in SQRT_AREA_STEPS}
        summary["max_side"] = int(max(max(w, h) for w, h in sizes))
    return summary


def summary_lines(stats: dict[str, Any]) -> list[str]:
    """A short human-readable summary of :func:`dataset_stats`'s result."""
    per = stats["targets_per_image"]
    lines = [
        f"dataset: {stats['root']} (split: {stats['split']})",
        f"images: {stats['images']:,}   targets: {stats['targets']:,}",
        f"targets per image: mean {per['mean']:.1f}, median {per['median']:g}, "
        f"min {per['min']}, max {per['max']}",
    ]
    sizes = stats["image_sizes"]
    common = ", ".join(f"{s['size']} ({s['images']})" for s in sizes["most_common"][:3])
    lines.append(
        f"image sizes: {sizes['distinct']} distinct, {sizes['smallest']} to {sizes['largest']}; "
        f"most common {common}"
    )
    boxes = stats["box_sizes"]
    if boxes["mode"] is not None:
        others = ", ".join(f"{s['size']} ({s['targets']:,})" for s in boxes["most_common"][1:4])
        shares = ", ".join(f"<= {k}: {v:.1%}" for k, v in boxes["sqrt_area_share_le"].items())
        lines.append(
            f"box sizes (w x h px): most frequent {boxes['mode']} ({boxes['mode_share']:.1%}), then {others}"
        )
        lines.append(f"sqrt(box area) {shares}; largest side {boxes['max_side']} px")
    if "mask_area" in stats:
        area = stats["mask_area"]
        lines.append(
            f"mask area: mean {area['mean']:.1f} px, median {area['median']:g} px; "
            f"masks fill {area['fill_mean']:.0%} of their boxes"
        )
        for key, label in (("local_contrast", "local contrast peak/mu"), ("scr", "SCR (peak-mu)/sigma")):
            d = stats[key]
            if d["count"]:
                lines.append(
                    f"{label}: median {d['median']:.2f}, p10 {d['p10']:.2f}, p90 {d['p90']:.2f}, "
                    f"< 2 for {d['share_below_2']:.1%} of targets"
                )
        b = stats["brightest"]
        lines.append(f"brightest: {b['targets']:,} targets ({b['share']:.1%}) contain their image's maximum")
    if "sky" in stats:
        sky = stats["sky"]
        in_sky = stats.get("target_pixels_in_sky")
        in_sky_text = f"; {in_sky:.1%} of target pixels are sky" if in_sky is not None else ""
        lines.append(
            f"sky fraction: mean {sky['mean']:.3f}, median {sky['median']:.3f}; "
            f"{sky['all_sky_images']} all-sky, {sky['no_sky_images']} no-sky images{in_sky_text}"
        )
    else:
        lines.append("sky: no sky labels in this dataset")
    return lines


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)


def _plot_targets_per_image(stats: dict[str, Any], path: Path) -> None:
    hist = stats["targets_per_image"]["histogram"]
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.bar([int(k) for k in hist], list(hist.values()), color="tab:blue")
    ax.set_xlabel("targets per image")
    ax.set_ylabel("images")
    ax.set_title(f"{stats['images']:,} images, {stats['targets']:,} targets")
    _save(fig, path)


def _plot_box_sizes(stats: dict[str, Any], path: Path) -> None:
    grid = np.zeros((BOX_GRID, BOX_GRID), dtype=np.int64)  # [h - 1, w - 1], last row/column: >= 10
    for entry in stats["box_sizes"]["all"]:
        w, h = min(entry["width"], BOX_GRID), min(entry["height"], BOX_GRID)
        grid[max(h, 1) - 1, max(w, 1) - 1] += entry["targets"]
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, origin="lower", cmap="viridis")
    fig.colorbar(image, ax=ax, shrink=0.8, label="targets")
    labels = [str(i) for i in range(1, BOX_GRID)] + [f">={BOX_GRID}"]
    ax.set_xticks(range(BOX_GRID), labels)
    ax.set_yticks(range(BOX_GRID), labels)
    for (r, c), value in np.ndenumerate(grid):
        if value:
            ax.text(c, r, str(value), ha="center", va="center", fontsize=6, color="w")
    ax.set_xlabel("box width (px)")
    ax.set_ylabel("box height (px)")
    ax.set_title(f"box sizes; most frequent {stats['box_sizes']['mode']}")
    _save(fig, path)


def _plot_contrast(stats: dict[str, Any], path: Path) -> None:
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    for ax, key, title in zip(
        fig.subplots(1, 2),
        ("local_contrast", "scr"),
        ("local contrast peak / mu", "SCR (peak - mu) / sigma"),
        strict=True,
    ):
        d = stats[key]
        if not d["count"]:
            continue
        edges = d["histogram"]["edges"]
        ax.stairs(d["histogram"]["counts"], edges, fill=True)
        ax.axvline(d["median"], color="k", ls="--", lw=1, label=f"median {d['median']:.2f}")
        ax.set_xlabel(
            f"{title} (ring {RING_PX} px)\nthe end bins include values outside {edges[0]:g}..{edges[-1]:g}"
        )
        ax.set_ylabel("targets")
        ax.legend()
    _save(fig, path)


def _plot_sky(stats: dict[str, Any], path: Path) -> None:
    sky = stats["sky"]
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.stairs(sky["histogram"]["counts"], sky["histogram"]["edges"], fill=True, color="tab:cyan")
    ax.set_xlabel("sky fraction of the image")
    ax.set_ylabel("images")
    ax.set_title(f"mean {sky['mean']:.3f}; {sky['all_sky_images']} all-sky, {sky['no_sky_images']} no-sky")
    _save(fig, path)


def _plot_image_sizes(stats: dict[str, Any], path: Path) -> None:
    entries = stats["image_sizes"]["all"]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    counts = np.array([e["images"] for e in entries])
    ax.scatter(
        [e["width"] for e in entries],
        [e["height"] for e in entries],
        s=8 + 60 * np.sqrt(counts / counts.max()),
    )
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title(f"{stats['image_sizes']['distinct']} distinct image sizes (marker area ~ images)")
    _save(fig, path)


def write_stats_report(stats: dict[str, Any], out: Path) -> list[Path]:
    """Write ``stats.json`` and PNG plots into ``out`` (each file atomically); return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "stats.json"]
    write_json(written[0], stats)
    plots = [("targets_per_image.png", _plot_targets_per_image), ("image_sizes.png", _plot_image_sizes)]
    if stats["targets"]:
        plots += [("box_sizes.png", _plot_box_sizes), ("local_contrast.png", _plot_contrast)]
    if "sky" in stats:
        plots.append(("sky_fraction.png", _plot_sky))
    for name, plot in plots:
        plot(stats, out / name)
        written.append(out / name)
    return written
