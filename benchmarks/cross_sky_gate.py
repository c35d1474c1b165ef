"""Probe: one run's detections gated by another run's sky map (evaluation only).

Loads two finished budget runs (``benchmarks/work/budget_hr/<run>/last.pt``): a detector and
a sky model with the same evaluation geometry. Every frame goes through both; the detector's
boxes get the sky model's sky probability at their centres, and the post-hoc sky gate of
``budget_common`` (threshold chosen by mAP07 on every 4th ``train_v2`` frame) is applied to the
``val_v2`` detections. Writes the ungated and gated metrics to
``benchmarks/results/cross_sky_gate/<detector>__<sky model>.json`` (skipped when there) and the
table of every pair to ``benchmarks/results/cross_sky_gate.md``.

    python benchmarks/cross_sky_gate.py fcos_hr_s0 fcos_seg_hr_ctx_s0 --data DEVKIT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Subset

from bafenet.data import open_dataset
from bafenet.engine.evaluate import evaluate_with_config, prediction_metrics
from bafenet.engine.inference import load_trained_model
from bafenet.engine.sky_gate import choose_gate_threshold, gate_predictions
from bafenet.fileio import write_json, write_text
from budget_common import GATE_EVERY

WORK = "benchmarks/work/budget_hr"
RESULTS = Path("benchmarks/results/cross_sky_gate")
KEYS = ("mAP07", "mAP12", "strict_mAP07", "irstd_fa_per_mpix_at_pd_0.85", "irstd_fa_off_sky_share")


class SkyFromOther(nn.Module):
    """``detector``'s detections with ``sky_model``'s ``sky_prob`` (same input batch)."""

    def __init__(self, detector: nn.Module, sky_model: nn.Module) -> None:
        super().__init__()
        self.detector, self.sky_model = detector, sky_model

    def forward(self, images: torch.Tensor, **kwargs) -> list[dict[str, torch.Tensor]]:
        outputs = self.detector(images, **kwargs)
        for out, sky in zip(outputs, self.sky_model(images, **kwargs), strict=True):
            out["sky_prob"] = sky["sky_prob"]
        return outputs


def probe(detector_run: str, sky_run: str, data: str, work: str) -> dict:
    """Evaluate ``detector_run``'s detections gated by ``sky_run``'s sky map (see the module)."""
    cpu = torch.device("cpu")
    detector, cfg, _ = load_trained_model(f"{work}/{detector_run}/last.pt", cpu)
    sky_model, sky_cfg, _ = load_trained_model(f"{work}/{sky_run}/last.pt", cpu)
    if cfg.eval != sky_cfg.eval:
        raise SystemExit("the two runs evaluate with different geometries")
    both = SkyFromOther(detector, sky_model).eval()
    train = open_dataset(data, "train_v2")
    subset = Subset(train, range(0, len(train), GATE_EVERY))
    _, chosen = evaluate_with_config(both, subset, cfg, cpu, progress=False, keep_predictions=True)
    threshold, grid = choose_gate_threshold(chosen["predictions"], cfg.eval)
    val = open_dataset(data, "val_v2")
    metrics, details = evaluate_with_config(both, val, cfg, cpu, keep_predictions=True)
    gated = prediction_metrics(gate_predictions(details["predictions"], threshold), cfg.eval)
    return {
        "detector": detector_run,
        "sky_model": sky_run,
        "threshold": threshold,
        "train_mAP07_by_threshold": grid,
        "sky_iou": metrics.get("sky_iou"),
        "ungated": {k: metrics.get(k) for k in KEYS},
        "gated": {k: gated.get(k) for k in KEYS},
    }


def table(records: list[dict]) -> str:
    """Every probed pair: ungated -> gated."""
    lines = [
        "# A detector's detections gated by another run's sky map (val_v2)",
        "",
        "`python benchmarks/cross_sky_gate.py DETECTOR_RUN SKY_RUN --data DEVKIT`: the gate threshold"
        f" chosen by mAP07 on every {GATE_EVERY}th train_v2 frame; FA at Pd 0.85 per Mpx, interpolated;"
        " 'off sky': share of the false alarms at score 0.3 on annotated non-sky.",
        "",
        "| detector | sky map of | sky IoU | threshold | mAP07 | mAP12 | strict mAP07 | FA / Mpx at Pd 0.85"
        " | off sky |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        cells = [r["detector"], r["sky_model"], f"{r['sky_iou']:.3f}", f"{r['threshold']:.2f}"]
        for key in KEYS:
            before, after = r["ungated"][key], r["gated"][key]
            cells.append("—" if before is None or after is None else f"{before:.3f} -> {after:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("detector_run")
    parser.add_argument("sky_run")
    parser.add_argument("--data", required=True, help="DenseSIRST devkit")
    parser.add_argument("--work", default=WORK)
    args = parser.parse_args()
    path = RESULTS / f"{args.detector_run}__{args.sky_run}.json"
    if not path.exists():
        write_json(path, probe(args.detector_run, args.sky_run, args.data, args.work))
    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    write_text(RESULTS.with_suffix(".md"), table(records))
    print(json.dumps(json.loads(path.read_text()), indent=1))


if __name__ == "__main__":
    main()
