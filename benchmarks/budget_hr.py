"""The high-resolution configuration and its ablations under the anchor's 40-minute budget.

Protocol (as the general-detector anchor): train on ``train_v2`` for the budget on 2 CPU
threads, evaluate the final weights on ``val_v2`` under the official protocol. The budget is
the anchor's: 40 minutes on its CPU, whose calibration forward pass
(``budget_common.calibrate``: torchvision FCOS-R50, 512 x 512, batch 1, 2 threads) takes
638 ms; on this machine ``40 x (its ms / 638)`` minutes, measured at the start of each
session and stored in every record (``--minutes`` sets the wall time instead). The sky
ablation runs with ``--by-images``: each configuration's images/s, measured once in a quiet
moment, times those minutes gives its image budget (``results/budget_hr/image_budgets.json``),
which every seed then trains for, whatever else the machine runs; a configuration added later
gets ``fcos_hr``'s budget scaled by the ratio of the two rates measured in one window (a single
timing drifts by 10-30 % between sessions on this CPU); a run cut off by the end of a session
continues from its last epoch.

The sky ablation, three seeds each (``<configuration>_s0`` .. ``_s2``):

* ``fcos_hr``: no sky branch;
* ``fcos_seg_hr_ctx``: sky branch with the whole-frame sky context, no exchange;
* ``bafenet_hr_ctx``: the full model, its cross-task exchange fed by the context-aware sky;
* ``fcos_seg_hr_ctx_scoring``: sky context and sky-conditioned scoring (these two are defined
  but no longer planned: the own context net below replaced the shared pass);
* ``fcos_seg_hr_own``, ``fcos_seg_hr_own_scoring``, ``bafenet_hr_own``: the same three with
  the whole-frame sky from a narrow network of its own (``context_net``,
  ``models/context_net.py``) instead of the detector's body, which then stays ``fcos_hr``'s
  (the probe ``cross_sky_gate.py`` gated ``fcos_hr``'s detections with a separate sky model);
* ``fcos_hr_bg``: ``fcos_hr`` with a quarter of the training crops placed uniformly over the
  frame instead of near a target (``data.input.background_crop_prob=0.25``), the first
  large-frame candidate: target-free background and ground clutter seen in training;
* ``fcos_hr_ema``: ``fcos_hr`` evaluated on a moving average of its weights
  (``train.ema_decay``, ``engine/ema.py``; same speed, so ``fcos_hr``'s budget): does the
  seed spread of the final weights (0.10 mAP07) shrink, and the mean rise;
* and, for every sky model, the post-hoc sky gate (``budget_common.sky_gate_record``): its
  threshold chosen by mAP07 on every 4th ``train_v2`` frame, applied to the ``val_v2``
  detections.

Older runs (one budget of 40 minutes on another CPU, no calibration recorded) stay listed:
``bafenet_hr`` (seeds 0, 1), ``fcos_seg_hr`` (seeds 0, 1), ``fcos_hr``, ``bafenet_hr_nobagcp``
(no BAG-CP) and ``bafenet_r18_512`` (the published recipe: 512 x 512 resize, full-width R18,
frozen BatchNorm, DAdaptAdam, batch 2, random init).

Each run is its packaged recipe (``src/bafenet/configs/bafenet_hr.yaml``; ``bafenet_r18_cpu.yaml``
for the last) with ``budget_common.budget_overrides`` (data, budget, seed, CPU) and the run's
own overrides. Every run writes ``benchmarks/results/budget_hr/<run>.json`` and is skipped when
that exists, so the benchmark resumes across sessions; ``--complete`` adds the newer metrics
and the sky gate to finished records whose weights are in ``--work``. The tables (one per CPU
model, mean and min-max over seeds) go to ``benchmarks/results/budget_hr.md`` / ``.json``.

    python benchmarks/budget_hr.py --data ../shared/data/DenseSIRST/SIRSTdevkit --by-images \
        --runs fcos_hr_s0 fcos_seg_hr_ctx_s0
    python benchmarks/budget_hr.py --smoke    # the whole path on synthetic frames, in seconds
"""

from __future__ import annotations

from budget_common import Run, budget_main, seeded_runs

CONTEXT = ["model.kwargs.sky_context=true"]
OWN_NET = [*CONTEXT, "model.kwargs.context_net=true"]

RUNS = [
    # in the order a plain run takes them: the most telling arms first
    *seeded_runs("fcos_hr", "no sky branch", ["model.name=fcos_hr"]),
    *seeded_runs(
        "fcos_hr_ema",
        "no sky branch, weights averaged (train.ema_decay=0.9999)",
        ["model.name=fcos_hr", "train.ema_decay=0.9999"],
        speed_group="fcos_hr",
    ),
    *seeded_runs(
        "fcos_seg_hr_own",
        "sky from a context net of its own (detector body = fcos_hr's), no exchange",
        ["model.name=fcos_seg_hr", *OWN_NET],
    ),
    *seeded_runs(
        "bafenet_hr_own",
        "full model: exchange fed by the own context net's sky",
        ["model.name=bafenet_hr", *OWN_NET],
    ),
    *seeded_runs(
        "fcos_seg_hr_own_scoring",
        "own context net + sky-conditioned scoring",
        ["model.name=fcos_seg_hr", *OWN_NET, "model.kwargs.sky_scoring=true"],
    ),
    *seeded_runs(
        "fcos_hr_bg",
        "no sky branch, a quarter of the crops uniform over the frame",
        ["model.name=fcos_hr", "data.input.background_crop_prob=0.25"],
    ),
    *seeded_runs(
        "fcos_seg_hr_ctx",
        "sky branch with whole-frame context, no exchange",
        ["model.name=fcos_seg_hr", *CONTEXT],
    ),
    *seeded_runs(
        "bafenet_hr_ctx", "full model: exchange fed by the context sky", ["model.name=bafenet_hr", *CONTEXT]
    ),
    *seeded_runs(
        "fcos_seg_hr_ctx_scoring",
        "sky context + sky-conditioned scoring",
        ["model.name=fcos_seg_hr", *CONTEXT, "model.kwargs.sky_scoring=true"],
    ),
    # older runs: no sky context, one budget of 40 minutes on another CPU
    Run("bafenet_hr", "high-resolution BAFE-Net, seed 0", ["model.name=bafenet_hr"]),
    Run("bafenet_hr_seed1", "same, seed 1", ["model.name=bafenet_hr"], seed=1, config="bafenet_hr"),
    Run("fcos_seg_hr", "sky branch, no exchange", ["model.name=fcos_seg_hr"]),
    Run("fcos_hr", "no sky branch", ["model.name=fcos_hr"]),
    Run("bafenet_hr_nobagcp", "no BAG-CP", ["model.name=bafenet_hr", "data.bagcp.enabled=false"]),
    Run("bafenet_r18_512", "published recipe (512 resize, R18, DAdaptAdam)", [], base="bafenet_r18_cpu.yaml"),
    Run(
        "fcos_seg_hr_seed1",
        "sky branch, no exchange, seed 1",
        ["model.name=fcos_seg_hr"],
        seed=1,
        config="fcos_seg_hr",
    ),
]

SMOKE_RUNS = ["fcos_hr_s0", "fcos_seg_hr_ctx_s0", "bafenet_hr_ctx_s0", "fcos_seg_hr_ctx_scoring_s0"]

HEADER = (
    "`python benchmarks/budget_hr.py --data DEVKIT`: train_v2 -> val_v2, final weights, official"
    " protocol (legacy widths; strict beside). Budget: the anchor's 40 minutes at a calibration of"
    " 638 ms, scaled by the calibration of the session that fixed it ({minutes} minutes of training"
    " per run); with `--by-images` each configuration's budget is fixed once as images"
    " (`budget_hr/image_budgets.json`) and holds on any CPU. Latest session's calibration:"
    " {calibration} ms. Anchor (general detector, 40 minutes at 638 ms):"
    " val_v2 mAP07 0.831 / mAP12 0.860 / strict 0.780; 0.887 / 0.915 / 0.831 with a short warm-up"
    " and mosaic kept; 1.81 s per 1280x1024 frame on its CPU."
)


def main() -> None:
    budget_main(
        __doc__,
        RUNS,
        "budget_hr",
        40.0,
        "High-resolution configuration under the anchor's 40-minute CPU budget",
        HEADER,
        normalised=True,
        smoke_runs=SMOKE_RUNS,
        reference_run="fcos_hr_s0",
    )


if __name__ == "__main__":
    main()
