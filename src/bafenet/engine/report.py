"""Evaluation outputs, written as one set: a table with units, ``metrics.json``, per-image rows, curves."""

from __future__ import annotations

import math
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bafenet.errors import BafenetError
from bafenet.fileio import atomic_path, write_json, write_text
from bafenet.metrics.irstd import FIXED_FA, FIXED_PD

AT_PD_MEANING = "false alarms per megapixel at Pd {pd}, linearly interpolated on the Pd-FA curve"
AT_FA_MEANING = "IRSTD Pd at {fa} false alarms per megapixel, linearly interpolated on the Pd-FA curve"
SKY_SPLIT_ROWS = [  # (field, meaning, unit) of the false alarms' sky split at one threshold
    ("false_alarms_in_sky", "false alarms whose box centre is on annotated sky", "count"),
    ("false_alarms_off_sky", "false alarms whose box centre is on annotated non-sky", "count"),
    ("false_alarms_sky_unknown", "false alarms where the sky is not annotated", "count"),
    ("fa_off_sky_share", "share of the annotated-place false alarms that are off the sky", "fraction"),
]
TABLE_ROWS = [
    ("mAP07", "VOC AP@0.5, 11-point, legacy +1 widths (official protocol)", "fraction"),
    ("mAP12", "VOC AP@0.5, area, legacy +1 widths (official protocol)", "fraction"),
    ("recall", "recall at the end of the ranked list, legacy widths", "fraction"),
    ("strict_mAP07", "VOC AP@0.5, 11-point, strict widths (w = x2 - x1)", "fraction"),
    ("strict_mAP12", "VOC AP@0.5, area, strict widths", "fraction"),
    ("strict_recall", "recall, strict widths", "fraction"),
    ("irstd_pd", "IRSTD Pd (centroid within 3 px) at the Pd score threshold", "fraction"),
    ("irstd_fa_per_image", "false alarms per image at that threshold", "1/image"),
    ("irstd_fa_per_mpix", "false alarms per megapixel at that threshold", "1/Mpx"),
    *[(f"irstd_{key}", f"{meaning} (that threshold)", unit) for key, meaning, unit in SKY_SPLIT_ROWS],
    *[
        (f"irstd_fa_per_mpix_at_pd_{pd:.2f}", AT_PD_MEANING.format(pd=f"{pd:.2f}"), "1/Mpx")
        for pd in FIXED_PD
    ],
    *[(f"irstd_pd_at_fa_per_mpix_{fa:g}", AT_FA_MEANING.format(fa=f"{fa:g}"), "fraction") for fa in FIXED_FA],
    ("best_f1", "best F1 over score thresholds, legacy widths (operating point)", "fraction"),
    ("best_f1_score_thr", "the score threshold of that F1 (predict --score-thr)", "score"),
    ("best_f1_precision", "precision at that threshold", "fraction"),
    ("best_f1_recall", "recall at that threshold", "fraction"),
    ("irstd_pd_at_best_f1", "IRSTD Pd at that threshold", "fraction"),
    ("irstd_false_alarms_at_best_f1", "false alarms at that threshold", "count"),
    ("irstd_fa_per_mpix_at_best_f1", "false alarms per megapixel at that threshold", "1/Mpx"),
    *[(f"irstd_{key}_at_best_f1", f"{meaning} (F1-best)", unit) for key, meaning, unit in SKY_SPLIT_ROWS],
    ("stated_score_thr", "the operating threshold the checkpoint states", "score"),
    ("irstd_pd_at_stated", "IRSTD Pd at that threshold", "fraction"),
    ("irstd_false_alarms_at_stated", "false alarms at that threshold", "count"),
    ("irstd_fa_per_mpix_at_stated", "false alarms per megapixel at that threshold", "1/Mpx"),
    *[(f"irstd_{key}_at_stated", f"{meaning} (stated)", unit) for key, meaning, unit in SKY_SPLIT_ROWS],
    ("sky_iou", "sky IoU of the model's sky map (input resolution)", "fraction"),
    ("sky_pixel_accuracy", "pixel accuracy of the model's sky map (input resolution)", "fraction"),
]
"""(key, meaning, unit) of each row of :func:`format_table`, in order."""


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table of the main metrics with their units (``--`` for a present None)."""
    width = max(len(key) for key, _, _ in TABLE_ROWS)
    lines = [f"{'metric':<{width}} {'value':>9}  {'unit':<9} meaning", "-" * (width + 90)]
    for key, meaning, unit in TABLE_ROWS:
        if key not in metrics:
            continue
        value = metrics[key]
        if value is None:
            text = "--"
        elif not isinstance(value, (int, float, np.number)):
            continue
        else:
            text = f"{value:.0f}" if unit == "count" else f"{value:.4f}"
        lines.append(f"{key:<{width}} {text:>9}  {unit:<9} {meaning}")
    extra = [
        f"images {metrics.get('num_images', '?')}, targets {metrics.get('num_gt', '?')}, "
        f"predictions {metrics.get('num_pred', '?')}; "
        f"Pd threshold {metrics.get('irstd_score_threshold', '?')}; "
        "-- = not reached / not defined"
    ]
    if metrics.get("stated_score_thr_source"):
        extra.append(f"stated threshold: {metrics['stated_score_thr_source']}")
    return "\n".join(lines + extra)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN / inf
    return obj


EVAL_FILES = (
    "metrics.json",
    "metrics.txt",
    "per_image.json",
    "predictions.json",
    "pr_curve.png",
    "pd_fa_curve.png",
)
"""Every file :func:`write_eval_outputs` may write; an output folder holding only these is replaced."""


def check_eval_out(out: str | Path) -> Path:
    """Refuse, before any work, an output place that is not a folder of evaluation outputs.

    ``out`` may be missing, or a folder holding nothing but :data:`EVAL_FILES` (an earlier
    evaluation, which the next one replaces as a whole). Raises :class:`BafenetError`.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BafenetError(f"{out}: exists and is not a folder; choose another output folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in EVAL_FILES or not p.is_file())
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise BafenetError(
                f"{out}: holds files that are not evaluation outputs ({shown}); the evaluation "
                "replaces its output folder as a whole, so choose a new or empty folder"
            )
    return out


def write_eval_outputs(out: str | Path, metrics: dict[str, Any], details: dict[str, Any]) -> list[Path]:
    """Write the evaluation's files into folder ``out`` as one set; return their paths.

    Files: metrics.json, metrics.txt (:func:`format_table`), per_image.json,
    predictions.json (when details hold predictions), pr_curve.png and pd_fa_curve.png
    (when the Pd-FA curve has points).

    The set is atomic: everything is written into a new hidden sibling folder
    (``.NAME.<random>.tmp``), which is then renamed to ``out``; an earlier ``out`` is first
    renamed aside and removed after. A reader sees the old set, then (for the instant
    between the two renames) no folder, then the new set, never a mixture. If writing fails,
    the new folder is removed and the old ``out`` is untouched. ``out`` must be missing or
    hold only :data:`EVAL_FILES` (:func:`check_eval_out`).
    """
    out = check_eval_out(out)
    target = out.resolve()  # a link is followed: the folder it names is replaced
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    staging.mkdir()
    try:
        names = _write_all(staging, metrics, details)
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / name for name in names]


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename folder ``staging`` to ``target``; an existing ``target`` is moved aside, then removed."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = staging.with_name(staging.name + ".old")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old)


def _write_all(folder: Path, metrics: dict[str, Any], details: dict[str, Any]) -> list[str]:
    """Write every output file into ``folder`` (a fresh staging folder); return their names."""
    names = ["metrics.json", "metrics.txt", "per_image.json"]
    write_json(folder / "metrics.json", _jsonable(metrics))
    write_text(folder / "metrics.txt", format_table(metrics) + "\n")
    write_json(folder / "per_image.json", _jsonable(details.get("per_image", [])))
    if details.get("predictions"):
        preds = [
            {"image_id": p.image_id, "boxes": p.boxes.round(2).tolist(), "scores": p.scores.round(4).tolist()}
            for p in details["predictions"]
        ]
        write_json(folder / "predictions.json", preds)
        names.append("predictions.json")
    _plot_pr(folder / "pr_curve.png", metrics, details)
    names.append("pr_curve.png")
    curve = details.get("pd_fa_curve")
    if curve is not None and len(curve.get("pd", [])):
        _plot_pd_fa(folder / "pd_fa_curve.png", metrics, curve)
        names.append("pd_fa_curve.png")
    return names


def _pyplot() -> Any:  # the matplotlib.pyplot module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_pr(path: Path, metrics: dict[str, Any], details: dict[str, Any]) -> None:
    """Precision-recall curves in both width conventions."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    try:
        for key, label in (("pr_curve", "legacy widths"), ("pr_curve_strict", "strict widths")):
            curve = details.get(key)
            if curve is not None and len(curve["recall"]):
                ax.plot(curve["recall"], curve["precision"], label=label)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(
            f"PR @ IoU 0.5: mAP07 {metrics.get('mAP07', 0):.3f}, mAP12 {metrics.get('mAP12', 0):.3f}"
        )
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
        else:  # no detection at all: say so instead of an empty legend
            ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)


def _plot_pd_fa(path: Path, metrics: dict[str, Any], curve: dict[str, Any]) -> None:
    """The Pd-false-alarm curve, with the interpolated false alarms at the fixed Pd levels."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    try:
        ax.plot(curve["fa_per_mpix"], curve["pd"])
        for pd in FIXED_PD:
            fa = metrics.get(f"irstd_fa_per_mpix_at_pd_{pd:.2f}")
            if fa is not None:
                ax.plot([fa], [pd], "o", color="tab:red", markersize=4)
        ax.set_xlabel("false alarms per megapixel")
        ax.set_ylabel("Pd (fraction of targets)")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_ylim(0, 1.02)
        ax.set_title("Pd - false alarms over the score threshold")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
