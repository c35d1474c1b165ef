"""How real do pasted targets look? Real vs BAG-CP-pasted targets, measured the same way.

Per target (all in the training geometry, e.g. 512 x 512):

* ``box_side``: sqrt(box width x height) in px;
* ``peak_contrast``: the brightest pixel of the box minus the local background, the median
  of the pixels within ``ring`` px of the box that are not within 1 px of any target;
* ``nearest_gap``: the gap (px, Chebyshev, between box edges) to the nearest other target
  of the same kind (real to real, pasted to pasted in the same image);
* ``cluster_size``: targets per cluster, a cluster being a connected group of targets whose
  boxes are at most ``link_px`` apart (one value per cluster).

Each quantity is compared between real and pasted targets with the two-sample
Kolmogorov-Smirnov statistic (``scipy.stats.ks_2samp``): 0 = same distribution, 1 = disjoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, stats
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from bafenet.data.bagcp import MODES, BackgroundAwareCopyPaste, occupancy_map
from bafenet.data.pipeline import sample_rng
from bafenet.data.sample import Sample
from bafenet.data.transforms import resize
from bafenet.fileio import atomic_path, write_json, write_text

QUANTITIES = ("box_side", "peak_contrast", "nearest_gap", "cluster_size")
_LABELS = {
    "box_side": "box side sqrt(w*h) (px)",
    "peak_contrast": "peak - local background (grey levels)",
    "nearest_gap": "gap to nearest target (px)",
    "cluster_size": "targets per cluster",
}


def box_gaps(boxes: np.ndarray) -> np.ndarray:
    """(N, N) Chebyshev gaps between half-open boxes (0 when touching or overlapping), inf diagonal."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    dx = np.maximum(0.0, np.maximum(b[:, None, 0] - b[None, :, 2], b[None, :, 0] - b[:, None, 2]))
    dy = np.maximum(0.0, np.maximum(b[:, None, 1] - b[None, :, 3], b[None, :, 1] - b[:, None, 3]))
    gaps = np.maximum(dx, dy)
    np.fill_diagonal(gaps, np.inf)
    return gaps


def nearest_gaps(boxes: np.ndarray) -> np.ndarray:
    """(N,) gap from each box to its nearest other box (empty for fewer than two boxes)."""
    if len(boxes) < 2:
        return np.zeros(0)
    return box_gaps(boxes).min(axis=1)


def cluster_sizes(boxes: np.ndarray, link_px: float = 8.0) -> np.ndarray:
    """Members of each cluster (boxes at most ``link_px`` apart are linked, transitively)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    _, labels = connected_components(box_gaps(boxes) <= link_px, directed=False)
    return np.bincount(labels)


def peaks_and_contrasts(
    image: np.ndarray, boxes: np.ndarray, occupied: np.ndarray, ring: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) peak grey level in each box, and (N,) peak minus local background.

    ``occupied``: (H, W) bool of all target pixels of the image (they and their 1-px border
    are not background). A box with no background pixel around it gets a NaN contrast.
    """
    h, w = image.shape
    blocked = ndimage.binary_dilation(occupied, structure=np.ones((3, 3), bool))
    peaks = np.zeros(len(boxes))
    contrasts = np.full(len(boxes), np.nan)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        r0, c0 = max(0, int(np.floor(y1))), max(0, int(np.floor(x1)))
        r1, c1 = min(h, max(r0 + 1, int(np.ceil(y2)))), min(w, max(c0 + 1, int(np.ceil(x2))))
        peaks[i] = image[r0:r1, c0:c1].max()
        window = (slice(max(0, r0 - ring), min(h, r1 + ring)), slice(max(0, c0 - ring), min(w, c1 + ring)))
        background = image[window][~blocked[window]]
        if background.size:
            contrasts[i] = peaks[i] - np.median(background)
    return peaks, contrasts


def measure_targets(sample: Sample, boxes: np.ndarray, link_px: float) -> dict[str, np.ndarray]:
    """The per-target quantities of ``boxes`` drawn in ``sample`` (see module docstring)."""
    peaks, contrasts = peaks_and_contrasts(sample.image, boxes, occupancy_map(sample))
    return {
        "box_side": np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])),
        "peak_contrast": contrasts,
        "peak": peaks,
        "nearest_gap": nearest_gaps(boxes),
        "cluster_size": cluster_sizes(boxes, link_px),
    }


def _summary(values: np.ndarray) -> dict[str, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"n": 0}
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {
        "n": int(values.size),
        "mean": round(float(values.mean()), 3),
        "p10": round(float(p10), 3),
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
    }


def _ks(a: np.ndarray, b: np.ndarray) -> dict[str, float] | None:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return None
    result = stats.ks_2samp(a, b)
    return {"statistic": round(float(result.statistic), 4), "pvalue": float(f"{result.pvalue:.3g}")}


class _Pool:
    """Per-quantity value lists, concatenated at the end."""

    def __init__(self) -> None:
        self.values: dict[str, list[np.ndarray]] = {q: [] for q in (*QUANTITIES, "peak")}

    def add(self, measured: dict[str, np.ndarray]) -> None:
        for name, values in measured.items():
            self.values[name].append(np.asarray(values, dtype=np.float64))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.values.items()}


def realism_report(
    dataset: Any,
    *,
    size: int = 512,
    modes: Sequence[str] = MODES,
    seed: int = 0,
    link_px: float = 8.0,
    limit: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Measure real targets and the targets each BAG-CP mode pastes, image by image.

    Each image ``i`` (resized to ``size`` x ``size``, the official geometry, no flip) receives
    the targets of a uniformly random source image, with a generator seeded by
    ``(seed, mode number, i)``.

    Returns:
        ``(summary, values)``: the JSON-ready summary (per-quantity statistics and KS distances)
        and the raw per-target values (``values["real"]``, ``values[mode]``) for plotting.
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("the dataset holds no images")
    transforms = {mode: BackgroundAwareCopyPaste.from_mode(mode) for mode in modes}
    pools = {name: _Pool() for name in ("real", *modes)}
    calls = {mode: {"calls": 0, "no_op": 0, "pasted": 0, "in_window": 0} for mode in modes}
    pick = np.random.default_rng(seed)
    for i in tqdm(range(n), desc="realism", unit="img", disable=not progress):
        sample = resize(dataset[i], size)
        source = resize(dataset[int(pick.integers(len(dataset)))], size)
        pools["real"].add(measure_targets(sample, sample.boxes, link_px))
        for m, (mode, transform) in enumerate(transforms.items()):
            out, records = transform.paste(sample, source, sample_rng(seed, m, i))
            calls[mode]["calls"] += 1
            calls[mode]["no_op"] += not records
            calls[mode]["pasted"] += len(records)
            calls[mode]["in_window"] += sum(r.in_window for r in records)
            if records:
                pools[mode].add(measure_targets(out, out.boxes[sample.num_targets :], link_px))
    values = {name: pool.arrays() for name, pool in pools.items()}
    real = values["real"]
    summary: dict[str, Any] = {
        "geometry": f"resize to {size}x{size} (aspect ratio not kept, bilinear, no antialiasing), no flip",
        "images": n,
        "seed": seed,
        "link_px": link_px,
        "quantities": {q: _LABELS[q] for q in QUANTITIES},
        "real": {
            "targets": int(real["box_side"].size),
            "saturated_share": round(float((real["peak"] >= 255).mean()), 4) if real["peak"].size else None,
            **{q: _summary(real[q]) for q in QUANTITIES},
        },
        "modes": {},
    }
    for mode in modes:
        v = values[mode]
        c = calls[mode]
        summary["modes"][mode] = {
            "settings": asdict(transforms[mode]),
            "calls": c["calls"],
            "no_op_share": round(c["no_op"] / c["calls"], 4),
            "pasted": c["pasted"],
            "pasted_per_call": round(c["pasted"] / c["calls"], 3),
            "in_window_share": round(c["in_window"] / c["pasted"], 4) if c["pasted"] else None,
            "saturated_share": round(float((v["peak"] >= 255).mean()), 4) if v["peak"].size else None,
            **{q: _summary(v[q]) for q in QUANTITIES},
            "ks": {q: _ks(real[q], v[q]) for q in QUANTITIES},
        }
    return summary, values


def _markdown(summary: dict[str, Any]) -> str:
    modes = list(summary["modes"])
    lines = [
        "# BAG-CP realism: real vs pasted targets",
        "",
        f"{summary['images']} images, {summary['geometry']}; seed {summary['seed']}; "
        f"clusters link boxes at most {summary['link_px']} px apart.",
        "",
        "Median (p10-p90) per quantity; KS = two-sample Kolmogorov-Smirnov statistic against the real "
        "targets (0 = same distribution, 1 = disjoint).",
        "",
        "| quantity | real | " + " | ".join(modes) + " |",
        "|---|---|" + "---|" * len(modes),
    ]

    def cell(s: dict[str, float]) -> str:
        return f"{s['p50']:.3g} ({s['p10']:.3g} to {s['p90']:.3g})" if s.get("n") else "-"

    for q in QUANTITIES:
        row = [q, cell(summary["real"][q])]
        for mode in modes:
            ks = summary["modes"][mode]["ks"][q]
            row.append(f"{cell(summary['modes'][mode][q])}, KS {ks['statistic']:.3f}" if ks else "-")
        lines.append("| " + " | ".join(row) + " |")
    lines.append(
        "| saturated peak (255) | "
        + f"{summary['real']['saturated_share']:.1%} | "
        + " | ".join(f"{summary['modes'][m]['saturated_share'] or 0:.1%}" for m in modes)
        + " |"
    )
    lines.append(
        "| targets | "
        + f"{summary['real']['targets']} | "
        + " | ".join(f"{s['pasted']} ({s['pasted_per_call']:g}/image)" for s in summary["modes"].values())
        + " |"
    )
    return "\n".join(lines) + "\n"


def plot_realism(values: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """Histograms (densities) of each quantity, real vs every mode, to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(QUANTITIES), figsize=(4.2 * len(QUANTITIES), 3.4))
    real = values["real"]
    for ax, q in zip(axes, QUANTITIES, strict=True):
        pooled = np.concatenate([v[q][np.isfinite(v[q])] for v in values.values()])
        if pooled.size == 0:
            continue
        if q == "cluster_size":
            bins = np.arange(0.5, pooled.max() + 1.5, 1.0)
        elif q == "peak_contrast":
            bins = np.linspace(*np.percentile(pooled, [0.5, 99.5]), 41)
        else:  # box_side, nearest_gap: the real range (far outliers clipped into the last bin)
            reference = real[q][np.isfinite(real[q])] if real[q].size else pooled
            if q == "box_side":
                hi = float(np.percentile(reference, 99.5))
            else:
                hi = 2 * float(np.percentile(reference, 95))
            bins = np.linspace(0.0, hi + 1.0, 41)
        for name, v in values.items():
            data = v[q][np.isfinite(v[q])]
            if data.size:
                clipped = np.clip(data, bins[0], bins[-1])
                ax.hist(clipped, bins=bins, density=True, histtype="step", lw=1.5, label=name)
        ax.set_xlabel(_LABELS[q] + (" (clipped)" if q != "cluster_size" else ""))
        ax.set_ylabel("density")
    axes[0].legend()
    fig.suptitle("BAG-CP realism: real vs pasted targets")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def write_realism_report(
    summary: dict[str, Any], values: dict[str, dict[str, np.ndarray]], out_dir: str | Path
) -> list[Path]:
    """Write ``realism.json``, ``realism.md`` and ``realism.png`` (atomically) into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = [out_dir / "realism.json", out_dir / "realism.md", out_dir / "realism.png"]
    write_json(paths[0], summary)
    write_text(paths[1], _markdown(summary))
    plot_realism(values, paths[2])
    return paths
