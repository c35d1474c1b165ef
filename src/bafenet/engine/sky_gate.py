"""The post-hoc sky gate, chosen from saved detections.

A sky model returns, with each detection, its own sky probability at the box centre
(:attr:`~bafenet.engine.evaluate.Prediction.model_sky_prob`). Dropping the detections below a
threshold ``T`` gives exactly the detections of the model built with ``sky_gate_thr=T`` (the
gate reads the same pixel of the same sky map after NMS), so one inference pass without the
gate scores every threshold. ``bafenet val --sky-gate-sweep`` does that on a split of the
user's choice; choose on training data, not on the data you report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from bafenet.config import EvalConfig
from bafenet.engine.evaluate import Prediction, prediction_metrics

GATE_GRID: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
"""Thresholds tried; 0.0 keeps every detection (the ungated model)."""

SWEEP_KEYS = (
    "mAP07",
    "mAP12",
    "strict_mAP07",
    "irstd_fa_per_mpix_at_pd_0.85",
    "irstd_fa_off_sky_share_at_best_f1",
)
"""The metrics :func:`sweep_sky_gate` keeps for each threshold."""


def gate_predictions(predictions: list[Prediction], threshold: float) -> list[Prediction]:
    """Drop the detections whose own sky probability at the box centre is below ``threshold``,
    as the detector's ``sky_gate_thr`` does after NMS; ground truth is kept.

    Raises:
        ValueError: the predictions carry no sky probability (not a sky model).
    """
    gated = []
    for p in predictions:
        if p.model_sky_prob is None:
            raise ValueError(f"{p.image_id}: the predictions carry no sky probability (not a sky model)")
        keep = p.model_sky_prob >= threshold
        gated.append(
            dataclasses.replace(
                p,
                boxes=p.boxes[keep],
                scores=p.scores[keep],
                pred_sky=None if p.pred_sky is None else p.pred_sky[keep],
                model_sky_prob=p.model_sky_prob[keep],
            )
        )
    return gated


def sweep_sky_gate(
    predictions: list[Prediction], cfg: EvalConfig, grid: Sequence[float] = GATE_GRID
) -> dict[float, dict[str, Any]]:
    """Each threshold of ``grid`` -> the :data:`SWEEP_KEYS` metrics of the gated detections
    and ``num_pred``, the detections it keeps (a metric that cannot be computed is ``None``)."""
    sweep = {}
    for thr in grid:
        metrics = prediction_metrics(gate_predictions(predictions, thr), cfg)
        sweep[float(thr)] = {key: metrics.get(key) for key in (*SWEEP_KEYS, "num_pred")}
    return sweep


def best_threshold(sweep: dict[float, dict[str, Any]]) -> float:
    """The threshold of the highest mAP07 in a :func:`sweep_sky_gate` result; on a tie the
    lowest, i.e. the gentlest gate."""
    return max(sweep, key=lambda thr: (sweep[thr]["mAP07"], -thr))


def choose_gate_threshold(
    predictions: list[Prediction], cfg: EvalConfig, grid: Sequence[float] = GATE_GRID
) -> tuple[float, dict[str, float]]:
    """:func:`best_threshold` of the sweep, and every threshold's mAP07 (keys ``f"{thr:g}"``)."""
    sweep = sweep_sky_gate(predictions, cfg, grid)
    return best_threshold(sweep), {f"{thr:g}": values["mAP07"] for thr, values in sweep.items()}


def format_sweep(sweep: dict[float, dict[str, Any]], best: float) -> str:
    """A text table of a :func:`sweep_sky_gate` result, ``best`` marked."""
    lines = ["threshold   mAP07   mAP12  FA/Mpx@Pd0.85  FA off sky  detections"]
    for thr, m in sweep.items():
        fa, off = m["irstd_fa_per_mpix_at_pd_0.85"], m["irstd_fa_off_sky_share_at_best_f1"]
        fa = "-" if fa is None else f"{fa:.2f}"
        off = "-" if off is None else f"{100 * off:.0f} %"
        mark = "  <- best mAP07" if thr == best else ""
        lines.append(
            f"{thr:9.2f}  {m['mAP07']:.4f}  {m['mAP12']:.4f}  {fa:>13}  {off:>10}  {m['num_pred']:>10}{mark}"
        )
    return "\n".join(lines)
