"""``bafenet predict --weights W SOURCE ...``: detect targets in images and videos.

Writes overlays, ``predictions.json`` (COCO), ``detections.csv`` and optional sky masks
(:mod:`bafenet.engine.outputs`) into a run folder. An input that cannot be read is named on one
line and skipped; the others are still predicted, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from bafenet.cli.arguments import int_at_least
from bafenet.cli.val import add_backend_argument, add_geometry_arguments, geometry_overrides
from bafenet.data.imageio import read_image
from bafenet.data.video import VideoReader
from bafenet.engine.outputs import DETECTIONS_CSV, PREDICTIONS_JSON, FrameOrigin, PredictionOutputs
from bafenet.engine.predict import check_output_folder, publish_outputs
from bafenet.engine.runs import new_run_dir
from bafenet.engine.sources import Input, expand_sources
from bafenet.errors import BafenetError, DataError

if TYPE_CHECKING:
    from bafenet.api import Detector, Result

OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=")  # section.key=value


def _predict(args: argparse.Namespace) -> int:
    from bafenet.api import Detector

    sources, overrides = split_sources(args.sources)
    out = check_output_folder(args.out) if args.out else None  # before the work
    detector = Detector.load(
        args.weights,
        device=args.device,
        backend=args.backend,
        score_thr=args.score_thr,
        overrides=[*overrides, *args.overrides, *geometry_overrides(args)],
    )
    if args.score_thr is None:
        print(
            f"score threshold {detector.score_thr:.3f} ({detector.score_thr_source}; --score-thr to change)"
        )
    inputs, problems = expand_sources(sources, recursive=args.recursive)
    failed: dict[Path, str] = {}  # input -> its problem, reported once
    for problem in problems:
        _report(failed, problem.path, problem.problem)
    # outputs are staged and published together once every frame is done: a crash leaves nothing
    with (
        tempfile.TemporaryDirectory(prefix="bafenet-predict-") as staging,
        PredictionOutputs(Path(staging), draw=not args.no_draw, save_sky=args.save_sky) as outputs,
        tqdm(total=_count_frames(inputs), desc="predict", unit="frame") as bar,
    ):
        no_sky = False
        frames = _read_frames(inputs, failed)
        for frame, result in _predict_batches(detector, frames, args.batch_size, failed):
            # a video keeps its size (its inset still zooms on the targets)
            overlay = result.plot(enlarge=frame.index is None) if outputs.draw else None
            outputs.add(frame, result.boxes, result.scores, result.image.shape, overlay, result.sky)
            no_sky = no_sky or result.sky is None
            bar.update()
        if not outputs.images:
            return 1  # every input failed, each on its error line: nothing to write
        for path, problem in failed.items():
            outputs.add_failure(path, problem)
        outputs.write_tables(weights=str(args.weights), score_thr=detector.score_thr)
        if out is None:
            out = _new_run_dir(Path(args.project) / "predict", detector.checkpoint["model_name"])
        publish_outputs(Path(staging), out, last=(PREDICTIONS_JSON, DETECTIONS_CSV))
    if args.save_sky and no_sky:
        print("no sky masks: this model has no sky branch (--save-sky)")
    print(
        f"{len(outputs.annotations)} detections (score >= {detector.score_thr:.3f}) in "
        f"{len(outputs.images)} frames; results in {out}"
    )
    if failed:
        total = len(inputs) + len(problems)
        print(f"bafenet: {len(failed)} of {total} inputs could not be read (named above)", file=sys.stderr)
        return 1
    return 0


def _report(failed: dict[Path, str], path: Path, problem: str) -> None:
    """Name a failed input on one line (once), above the progress bar."""
    if path not in failed:
        failed[path] = problem
        tqdm.write(f"bafenet: error: {path}: {problem}", file=sys.stderr)


def _count_frames(inputs: list[Input]) -> int | None:
    """Frames to predict (for the progress bar): one per image, as stated by each video; ``None``
    when a video does not state it."""
    total = 0
    for item in inputs:
        if not item.is_video:
            total += 1
            continue
        try:
            with VideoReader(item.path) as video:
                if video.num_frames <= 0:
                    return None
                total += video.num_frames
        except DataError:
            continue  # named when it is read
    return total


def _read_frames(inputs: list[Input], failed: dict[Path, str]) -> Iterator[tuple[FrameOrigin, np.ndarray]]:
    """Every frame of every input, in order, as (where it comes from, (H, W) grey image).

    An input that cannot be read is reported and skipped; a video that breaks keeps the frames
    read before.
    """
    for item in inputs:
        try:
            if item.is_video:
                with VideoReader(item.path) as video:
                    for f in video:
                        yield FrameOrigin(item.path, item.name, f.index, f.time, video.rate), f.image
            else:
                yield FrameOrigin(item.path, item.name), read_image(item.path)
        except DataError as exc:
            _report(failed, item.path, exc.problem)


def _predict_batches(
    detector: Detector,
    frames: Iterable[tuple[FrameOrigin, np.ndarray]],
    batch_size: int,
    failed: dict[Path, str],
) -> Iterator[tuple[FrameOrigin, Result]]:
    """(frame, result) of every frame the detector accepts, ``batch_size`` frames at a time.

    A batch holding a frame the detector refuses (too small, too large) is predicted again
    frame by frame, so that only that frame's input is reported and skipped.
    """
    frames = iter(frames)
    while batch := list(islice(frames, batch_size)):
        try:
            results = detector.predict([image for _, image in batch], batch_size=batch_size)
        except BafenetError:  # find the frame refused, keep the others
            results = [_predict_one(detector, frame, image, failed) for frame, image in batch]
        for (frame, _), result in zip(batch, results, strict=True):
            if result is not None:
                yield frame, result


def _predict_one(
    detector: Detector, frame: FrameOrigin, image: np.ndarray, failed: dict[Path, str]
) -> Result | None:
    """The result of one frame, or ``None`` (its input reported) when the detector refuses it."""
    try:
        return detector(image, name=frame.name)
    except BafenetError as exc:
        _report(failed, frame.file, exc.problem if isinstance(exc, DataError) else str(exc))
        return None


def split_sources(items: list[str]) -> tuple[list[str], list[str]]:
    """SOURCE arguments -> (sources, ``key=value`` config overrides), as every verb takes them.

    An item is an override when it looks like ``section.key=value`` and is not an existing path.
    """
    sources, overrides = [], []
    for item in items:
        is_override = OVERRIDE.match(item) is not None and not Path(item).exists()
        (overrides if is_override else sources).append(item)
    if not sources:
        raise BafenetError(
            "no image source given (files, folders, patterns, .txt lists, videos; "
            "overrides look like eval.score_thr=0.1)"
        )
    return sources, overrides


def _new_run_dir(base: Path, name: str) -> Path:
    try:
        return new_run_dir(base, name)
    except OSError as exc:
        raise DataError(base, f"cannot create a run folder ({exc.strerror or exc})") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` verb."""
    p = subparsers.add_parser(
        "predict", help="detect targets in images and videos (overlays, COCO JSON, CSV, sky masks)"
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE|key=value",
        help="image or video files, folders, quoted glob patterns ('frames/**/*.png'), .txt lists "
        "(one path per line), then config overrides (e.g. eval.scale=2)",
    )
    p.add_argument("--weights", required=True, help="checkpoint")
    p.add_argument(
        "--score-thr",
        type=float,
        default=None,
        help="keep detections at or above (default: the checkpoint's operating point, else 0.3)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_backend_argument(p)
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=1, help="frames per forward pass (default 1)"
    )
    p.add_argument("--recursive", action="store_true", help="also take the files in sub-folders of a folder")
    p.add_argument("--save-sky", action="store_true", help="write the model's sky map of each frame as PNG")
    p.add_argument("--no-draw", action="store_true", help="write no overlays (images) or annotated videos")
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
