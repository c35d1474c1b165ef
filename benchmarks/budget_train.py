"""Equal-budget CPU ablation on DenseSIRST: fcos, fcos_seg, bafenet and bafenet without BAG-CP.

Protocol (all four runs identical except the named difference): the ``bafenet_hr`` recipe
with ``budget_common.budget_overrides``:

* data: train on ``train_v2``, evaluate the final weights on ``val_v2`` (official protocol:
  legacy and strict VOC mAP07 / mAP12 / recall, Pd / false alarms, by frame size);
* geometry: frames upsampled x2 and cut into 384-px crops around targets, flip, faithful
  BAG-CP (off for ``bafenet_nobagcp``); evaluation on whole frames at x2 (bf16 autocast).
  Reference §7: after the official 512 resize only 34 % of the targets get an FCOS
  positive at stride 8; at x2 with the stride-4 level P2, 98 % do, so the runs can learn
  what the budget allows instead of hitting that ceiling;
* models: the ResNet-18 high-resolution family (``fcos_hr``, ``fcos_seg_hr``, ``bafenet_hr``:
  half-width ResNet-18 with trainable BatchNorm from random initialisation, since no
  ImageNet weights are reachable here, P2-P5, a 32-channel head with 2-conv towers);
* optimiser: AdamW lr 2e-3, weight decay 1e-4, 30-iteration warm-up, lr x 0.1 after 80 % of
  the budget, batch 4, seed 0;
* budget: ``--minutes`` of training wall time per run (default 20) on this 2-core machine,
  then one evaluation (~2 min). Four runs take about 90 minutes.

Finished runs are skipped on a rerun (``benchmarks/results/budget_train/<run>.json``); the
table goes to ``benchmarks/results/budget_train.md`` / ``.json``.

    python benchmarks/budget_train.py --data ../shared/data/DenseSIRST/SIRSTdevkit
"""

from __future__ import annotations

from budget_common import Run, budget_main

RUNS = [
    Run("fcos", "detection only", ["model.name=fcos_hr"]),
    Run("fcos_seg", "+ sky branch, no exchange", ["model.name=fcos_seg_hr"]),
    Run("bafenet", "+ cross-task exchange (full model)", ["model.name=bafenet_hr"]),
    Run(
        "bafenet_nobagcp", "full model without BAG-CP", ["model.name=bafenet_hr", "data.bagcp.enabled=false"]
    ),
]


HEADER = (
    "`python benchmarks/budget_train.py --data DEVKIT --minutes {minutes}` (train_v2 -> val_v2, final"
    " weights, official protocol with legacy widths; strict widths beside). Protocol in the script's"
    " docstring: ResNet-18 high-resolution family from random init, x2 crops, equal training wall"
    " time per run on this 2-core CPU, seed 0, one run each (no error bars)."
)


def main() -> None:
    budget_main(__doc__, RUNS, "budget_train", 20.0, "Equal-budget ablation on DenseSIRST", HEADER)


if __name__ == "__main__":
    main()
