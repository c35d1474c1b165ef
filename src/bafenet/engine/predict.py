"""The output folder of ``bafenet predict`` and drawings of predictions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from bafenet.data.sample import Sample
from bafenet.errors import DataError
from bafenet.fileio import atomic_path
from bafenet.viz import GREEN, RED, draw_boxes, gray_to_rgb


def check_output_folder(out: str | Path) -> Path:
    """Refuse, before any work, an output place that is not a folder that can be written.

    ``out`` may exist (a folder) or not (it is created later, with its missing parents).

    Raises:
        DataError: naming ``out`` and why it cannot hold the results.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder; the output needs a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(out, f"cannot be created: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(out, f"cannot be written: no write permission in {existing}")
    return out


def publish_outputs(staging: Path, out: Path, last: tuple[str, ...] = ()) -> None:
    """Move every file under folder ``staging`` to the same place under folder ``out``.

    Each file replaces its namesake at once (temporary name, then rename); the files named in
    ``last`` (e.g. the tables that list the others) are moved after all the others.

    Raises:
        DataError: naming ``out`` when it cannot be created or written.
    """
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(staging).as_posix() in last)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path in files:
            with atomic_path(out / path.relative_to(staging)) as tmp:
                shutil.move(path, tmp)
    except OSError as exc:
        raise DataError(out, f"cannot write the results ({exc.strerror or exc})") from None


def draw_prediction(sample: Sample, boxes: np.ndarray, scores: np.ndarray, score_thr: float) -> np.ndarray:
    """RGB drawing: ground truth (if any) in green, detections above ``score_thr`` in red."""
    rgb = gray_to_rgb(sample.image)
    if sample.num_targets:
        rgb = draw_boxes(rgb, sample.boxes, GREEN)
    return draw_boxes(rgb, boxes[scores >= score_thr], RED)
