"""``bafenet val --weights W [--data ROOT] [--split val_v2]``: evaluate a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bafenet.cli.arguments import int_at_least
from bafenet.cli.data import add_layout_arguments, apply_layout_arguments
from bafenet.engine.runs import new_run_dir

if TYPE_CHECKING:
    from torch import nn

    from bafenet.config import Config
    from bafenet.engine.evaluate import Prediction


def add_backend_argument(p: argparse.ArgumentParser) -> None:
    """``--backend``, shared by ``val`` and ``predict``: what runs the network."""
    p.add_argument(
        "--backend",
        choices=["torch", "onnxruntime"],
        default="torch",
        help="onnxruntime: run a .onnx file of bafenet export (a .pt is exported first), float32; "
        "needs bafenet[export]",
    )


def add_geometry_arguments(p: argparse.ArgumentParser) -> None:
    """The evaluation-geometry flags shared by ``val`` and ``predict`` (eval.* overrides)."""
    g = p.add_argument_group("input geometry (default: the checkpoint's eval settings)")
    g.add_argument(
        "--protocol",
        choices=["resize", "native", "tiles"],
        default=None,
        help="resize: whole frame to the training size (official 512x512); native: whole frame "
        "at --scale; tiles: the frame at --scale in overlapping tiles merged by NMS",
    )
    g.add_argument("--scale", type=float, default=None, help="native/tiles: resize factor (e.g. 2)")
    g.add_argument(
        "--max-side",
        type=int,
        default=None,
        help="native/tiles: at most this long side after scaling (large frames get a smaller factor)",
    )
    g.add_argument("--tile-size", type=int, default=None, help="tiles: tile side in input pixels")
    g.add_argument("--tile-overlap", type=int, default=None, help="tiles: overlap in input pixels")
    g.add_argument(
        "--amp",
        action="store_true",
        default=None,
        help="run the network under autocast (fp16 on CUDA; bf16 on a CPU with native bf16: ~1.7x faster;"
        " float32 on other CPUs, where emulated bf16 would be ~6x slower)",
    )


def geometry_overrides(args: argparse.Namespace) -> list[str]:
    """The ``eval.*`` overrides named by :func:`add_geometry_arguments` flags."""
    pairs = [
        ("protocol", args.protocol),
        ("scale", args.scale),
        ("max_side", args.max_side),
        ("tile_size", args.tile_size),
        ("tile_overlap", args.tile_overlap),
        ("amp", "true" if args.amp else None),
    ]
    return [f"eval.{key}={value}" for key, value in pairs if value is not None]


def _val(args: argparse.Namespace) -> int:
    from bafenet.data import open_for_run
    from bafenet.engine import distributed as dist_utils
    from bafenet.engine.evaluate import SIZE_GROUPS, evaluate_with_config, group_counts, metrics_by_frame_size
    from bafenet.engine.inference import load_trained_model, operating_score_thr
    from bafenet.engine.report import check_eval_out, format_table, write_eval_outputs
    from bafenet.errors import BafenetError

    overrides = list(args.overrides)
    if args.split:
        overrides.append(f"eval.split={args.split}")
    if args.batch_size:
        overrides.append(f"eval.batch_size={args.batch_size}")
    overrides += geometry_overrides(args)
    if args.sky_gate_sweep and args.backend != "torch":
        raise BafenetError("--sky-gate-sweep runs with --backend torch (it reads the model's own sky map)")
    device = dist_utils.local_device(args.device)
    model, cfg, ckpt = load_trained_model(args.weights, device, overrides, backend=args.backend)
    if args.sky_gate_sweep:
        _turn_sky_gate_off(model, ckpt["model_name"], args.weights)
    if args.data or args.images or args.masks:  # a dataset named here: its layout, not the training data's
        cfg.data.root, cfg.data.layout, cfg.data.images, cfg.data.masks = args.data, None, None, None
    apply_layout_arguments(cfg.data, args)
    if args.out:
        check_eval_out(args.out)  # refuse a bad output folder before the work
    dataset, skipped = open_for_run(cfg.data, cfg.eval.split)
    root = dataset.root
    stated_thr, stated_source = operating_score_thr(ckpt)
    stated_thr = None if stated_source == "default" else stated_thr  # the checkpoint states none
    metrics, details = evaluate_with_config(
        model, dataset, cfg, device, keep_predictions=True, stated_score_thr=stated_thr
    )
    by_size = metrics_by_frame_size(details["predictions"], cfg.eval, stated_thr)
    if stated_thr is not None:
        metrics["stated_score_thr_source"] = stated_source
    metrics["model"] = ckpt["model_name"]
    metrics["weights"] = str(args.weights)
    metrics["split"] = cfg.eval.split
    metrics["protocol"] = cfg.eval.protocol
    metrics["backend"] = args.backend
    if hasattr(model, "sky_gate_thr"):
        metrics["sky_gate_thr"] = model.sky_gate_thr  # the gate applied; None: none
    metrics["skipped_samples"] = skipped  # invalid samples left out (--skip-invalid), one line each
    out = (
        Path(args.out)
        if args.out
        else new_run_dir(Path(args.project) / "val", Path(args.weights).parent.name)
    )
    print(
        f"{ckpt['model_name']} on {root} split {cfg.eval.split} "
        f"({cfg.eval.protocol} protocol, {args.backend} backend)"
    )
    print(format_table(metrics))
    for group, values in by_size.items():
        numbers = ", ".join(f"{k} {values[k]:.4f}" for k in ("mAP07", "mAP12", "recall", "strict_mAP07"))
        print(f"{group} frames ({SIZE_GROUPS[group]}): {group_counts(values)}: {numbers}")
    if skipped:
        print(f"left out {len(skipped)} invalid sample(s): {'; '.join(skipped)}")
    metrics["by_frame_size"] = by_size
    for path in write_eval_outputs(out, metrics, details):
        print(f"wrote {path}")
    if args.sky_gate_sweep:
        print(f"wrote {write_sky_gate_sweep(out, details['predictions'], cfg)}")
    return 0


def _turn_sky_gate_off(model: nn.Module, model_name: str, weights: str) -> None:
    """Check that ``model`` is a sky model and take its gate off: the sweep needs every detection."""
    from bafenet.errors import BafenetError
    from bafenet.models.zoo import model_options

    if "sky_gate_thr" not in model_options(model_name):
        raise BafenetError(f"{weights}: --sky-gate-sweep needs a sky model, not {model_name}")
    if model.sky_gate_thr is not None:
        print(f"the checkpoint's sky gate ({model.sky_gate_thr:g}) is off for the sweep")
        model.sky_gate_thr = None


def write_sky_gate_sweep(out: Path, predictions: list[Prediction], cfg: Config) -> Path:
    """Print the sky-gate sweep of ungated ``predictions`` and write it to ``out/sky_gate.json``."""
    from bafenet.engine.sky_gate import best_threshold, format_sweep, sweep_sky_gate
    from bafenet.fileio import write_json

    sweep = sweep_sky_gate(predictions, cfg.eval)  # a torch sky model: every detection has its sky
    best = best_threshold(sweep)
    print(f"sky gate on {cfg.eval.split} (detections whose own sky probability is below it dropped):")
    print(format_sweep(sweep, best))
    if best == 0:
        print(f"no threshold beats the ungated model on {cfg.eval.split}: leave the gate off")
    else:
        print(
            f"use it: model.kwargs.sky_gate_thr={best:g} (bafenet val / predict); chosen on "
            f"{cfg.eval.split}: choose on training data, not on the data you report"
        )
    path = out / "sky_gate.json"
    record = {
        "split": cfg.eval.split,
        "best_threshold": best,
        "chosen_by": "highest mAP07; on a tie the lowest threshold",
        "sweep": {f"{thr:g}": m for thr, m in sweep.items()},
    }
    write_json(path, record)
    return path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``val`` verb."""
    p = subparsers.add_parser("val", help="evaluate a checkpoint (VOC mAP07/mAP12, Pd/FA, sky IoU)")
    p.add_argument("--weights", required=True, help="checkpoint (best.pt / last.pt / a released file)")
    p.add_argument("--data", default=None, help="dataset folder (default: config, $BAFENET_DATA, cache)")
    p.add_argument("--split", default=None, help="split to evaluate (default: the config's eval.split)")
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=None, help="images per forward pass (same results)"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_backend_argument(p)
    add_geometry_arguments(p)
    add_layout_arguments(p, skip_invalid=True)
    p.add_argument(
        "--sky-gate-sweep",
        action="store_true",
        help="sky models: evaluate without the sky gate, then score each gate threshold (mAP07, "
        "false alarms) and name the best; writes sky_gate.json. Run it on training data, not on the "
        "data you report",
    )
    p.add_argument("--out", default=None, help="output folder (default: runs/val/NAME)")
    p.add_argument("--project", default="runs", help="folder holding the runs (default: runs)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, e.g. eval.score_thr=0.1")
    p.set_defaults(func=_val, overrides_dest="overrides")
