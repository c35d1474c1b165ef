"""``bafenet predict --weights W SOURCE ...``: detect targets in image files, save drawings + JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from bafenet.cli.val import add_geometry_arguments, geometry_overrides
from bafenet.data.imageio import read_image
from bafenet.data.sample import Sample
from bafenet.engine.runs import new_run_dir
from bafenet.fileio import write_json


def _predict(args: argparse.Namespace) -> int:
    from bafenet.engine.distributed import local_device
    from bafenet.engine.predict import (
        draw_prediction,
        image_files,
        load_trained_model,
        operating_score_thr,
        predict_sample,
    )
    from bafenet.viz import save_png

    device = local_device(args.device)
    model, cfg, ckpt = load_trained_model(args.weights, device, [*args.overrides, *geometry_overrides(args)])
    files = image_files(args.sources)
    if args.score_thr is None:
        args.score_thr, source = operating_score_thr(ckpt)
        print(f"score threshold {args.score_thr:.3f} ({source}; --score-thr to change)")
    out = Path(args.out) if args.out else new_run_dir(Path(args.project) / "predict", ckpt["model_name"])
    results = []
    for path in tqdm(files, desc="predict", unit="img"):
        sample = Sample(image=read_image(path), image_id=path.stem, path=path)
        pred = predict_sample(model, cfg, sample, device)
        keep = pred["scores"] >= args.score_thr
        results.append(
            {
                "image": str(path),
                "boxes": pred["boxes"][keep].round(2).tolist(),
                "scores": pred["scores"][keep].round(4).tolist(),
            }
        )
        save_png(
            out / f"{path.stem}.png", draw_prediction(sample, pred["boxes"], pred["scores"], args.score_thr)
        )
    write_json(
        out / "predictions.json",
        {"weights": str(args.weights), "score_thr": args.score_thr, "images": results},
    )
    n = sum(len(r["boxes"]) for r in results)
    print(f"{n} detections (score >= {args.score_thr:.3f}) in {len(files)} images; results in {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` verb."""
    p = subparsers.add_parser("predict", help="detect targets in image files (drawings + JSON)")
    p.add_argument("sources", nargs="+", help="image files or folders")
    p.add_argument("--weights", required=True, help="checkpoint")
    p.add_argument(
        "--score-thr",
        type=float,
        default=None,
        help="keep detections at or above (default: the checkpoint's operating point, else 0.3)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_geometry_arguments(p)
    p.add_argument("--out", default=None, help="output folder (default: runs/predict/NAME)")
    p.add_argument("--project", default="runs", help="folder holding the runs (default: runs)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="key=value",
        help="config override, e.g. --set eval.protocol=native (repeatable)",
    )
    p.set_defaults(func=_predict)
