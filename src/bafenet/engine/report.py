"""Evaluation outputs: a printed table with units, ``metrics.json``, per-image rows, curve PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bafenet.fileio import atomic_path, write_json

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
    ("best_f1", "best F1 over score thresholds, legacy widths (operating point)", "fraction"),
    ("best_f1_score_thr", "the score threshold of that F1 (predict --score-thr)", "score"),
    ("best_f1_precision", "precision at that threshold", "fraction"),
    ("best_f1_recall", "recall at that threshold", "fraction"),
    ("irstd_pd_at_best_f1", "IRSTD Pd at that threshold", "fraction"),
    ("irstd_fa_per_mpix_at_best_f1", "false alarms per megapixel at that threshold", "1/Mpx"),
    ("sky_iou", "sky IoU of the segmentation branch (input resolution)", "fraction"),
]


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table of the main metrics with their units."""
    lines = [f"{'metric':<28} {'value':>9}  {'unit':<9} meaning", "-" * 104]
    for key, meaning, unit in TABLE_ROWS:
        if key in metrics and isinstance(metrics[key], (int, float)):
            lines.append(f"{key:<28} {metrics[key]:>9.4f}  {unit:<9} {meaning}")
    extra = [
        f"images {metrics.get('num_images', '?')}, targets {metrics.get('num_gt', '?')}, "
        f"predictions {metrics.get('num_pred', '?')}; "
        f"Pd threshold {metrics.get('irstd_score_threshold', '?')}"
    ]
    return "\n".join(lines + extra)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_eval_outputs(out: str | Path, metrics: dict[str, Any], details: dict[str, Any]) -> list[Path]:
    """Write metrics.json, per_image.json, predictions.json, pr_curve.png and pd_fa_curve.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "metrics.json", out / "per_image.json"]
    write_json(written[0], _jsonable(metrics))
    write_json(written[1], _jsonable(details.get("per_image", [])))
    if details.get("predictions"):
        preds = [
            {"image_id": p.image_id, "boxes": p.boxes.round(2).tolist(), "scores": p.scores.round(4).tolist()}
            for p in details["predictions"]
        ]
        write_json(out / "predictions.json", preds)
        written.append(out / "predictions.json")

    fig, ax = plt.subplots(figsize=(5, 4))
    for key, label in (("pr_curve", "legacy widths"), ("pr_curve_strict", "strict widths")):
        curve = details.get(key)
        if curve is not None and len(curve["recall"]):
            ax.plot(curve["recall"], curve["precision"], label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"PR @ IoU 0.5: mAP07 {metrics.get('mAP07', 0):.3f}, mAP12 {metrics.get('mAP12', 0):.3f}")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    else:  # no detection at all: say so instead of an empty legend
        ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    with atomic_path(out / "pr_curve.png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    written.append(out / "pr_curve.png")

    curve = details.get("pd_fa_curve")
    if curve is not None and len(curve.get("pd", [])):
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(curve["fa_per_mpix"], curve["pd"])
        ax.set_xlabel("false alarms per megapixel")
        ax.set_ylabel("Pd (fraction of targets)")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_ylim(0, 1.02)
        ax.set_title("Pd - false alarms over the score threshold")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_path(out / "pd_fa_curve.png") as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        written.append(out / "pd_fa_curve.png")
    return written
