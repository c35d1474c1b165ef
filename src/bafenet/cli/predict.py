"""``bafenet predict --weights W SOURCE ...``: detect targets in image files, save drawings + JSON."""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from tqdm import tqdm

from bafenet.cli.val import add_geometry_arguments, geometry_overrides
from bafenet.data.imageio import read_image
from bafenet.data.sample import Sample
from bafenet.engine.runs import new_run_dir
from bafenet.errors import BafenetError, DataError
from bafenet.fileio import write_json

OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=")  # section.key=value


def _predict(args: argparse.Namespace) -> int:
    from bafenet.engine.distributed import local_device
    from bafenet.engine.predict import (
        check_output_folder,
        draw_prediction,
        image_files,
        load_trained_model,
        operating_score_thr,
        predict_sample,
        publish_outputs,
    )
    from bafenet.viz import save_png

    sources, overrides = split_sources(args.sources)
    out = check_output_folder(args.out) if args.out else None  # before the work
    device = local_device(args.device)
    model, cfg, ckpt = load_trained_model(
        args.weights, device, [*overrides, *args.overrides, *geometry_overrides(args)]
    )
    files = image_files(sources)
    if args.score_thr is None:
        args.score_thr, source = operating_score_thr(ckpt)
        print(f"score threshold {args.score_thr:.3f} ({source}; --score-thr to change)")
    results = []
    # outputs appear only once every image is done: a bad image leaves nothing behind
    with (
        tempfile.TemporaryDirectory(prefix="bafenet-predict-") as staging,
        tqdm(files, desc="predict", unit="img") as bar,  # closed (its line ended) before any error
    ):
        for path in bar:
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
            drawing = draw_prediction(sample, pred["boxes"], pred["scores"], args.score_thr)
            save_png(Path(staging) / f"{path.stem}.png", drawing)
        write_json(
            Path(staging) / "predictions.json",
            {"weights": str(args.weights), "score_thr": args.score_thr, "images": results},
        )
        if out is None:
            out = _new_run_dir(Path(args.project) / "predict", ckpt["model_name"])
        publish_outputs(Path(staging), out)
    n = sum(len(r["boxes"]) for r in results)
    print(f"{n} detections (score >= {args.score_thr:.3f}) in {len(files)} images; results in {out}")
    return 0


def split_sources(items: list[str]) -> tuple[list[str], list[str]]:
    """SOURCE arguments -> (sources, ``key=value`` config overrides), as every verb takes them.

    An item is an override when it looks like ``section.key=value`` and is not an existing path.
    """
    sources, overrides = [], []
    for item in items:
        is_override = OVERRIDE.match(item) is not None and not Path(item).exists()
        (overrides if is_override else sources).append(item)
    if not sources:
        raise BafenetError("no image source given (files, folders; overrides look like eval.score_thr=0.1)")
    return sources, overrides


def _new_run_dir(base: Path, name: str) -> Path:
    try:
        return new_run_dir(base, name)
    except OSError as exc:
        raise DataError(base, f"cannot create a run folder ({exc.strerror or exc})") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` verb."""
    p = subparsers.add_parser("predict", help="detect targets in image files (drawings + JSON)")
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE|key=value",
        help="image files or folders, then config overrides (e.g. eval.scale=2)",
    )
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
        help="config override, the same as a key=value argument (repeatable)",
    )
    p.set_defaults(func=_predict)
