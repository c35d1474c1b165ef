"""What ``bafenet predict`` writes into its output folder, and in which format.

Layout (``NAME`` is an input's output name, :mod:`bafenet.engine.sources`):

* ``predictions.json``: COCO: ``images`` (one entry per predicted frame: ``id``, ``file_name``,
  ``width``, ``height``; video frames add ``frame_index`` and ``time`` in seconds),
  ``annotations`` (one per detection: ``id``, ``image_id``, ``category_id``, ``bbox``
  ``[x, y, width, height]`` in pixel edges, ``score``: the COCO results fields), ``categories``;
  plus ``weights``, ``score_thr`` and ``failed`` (the inputs that could not be read).
* ``detections.csv``: one row per detection, the same numbers:
  ``image_id, file, frame, time, x1, y1, x2, y2, score`` (frame and time empty for an image).
* ``overlays/NAME.png`` (an image) or ``overlays/NAME.mp4`` (a video, annotated frame by frame).
* ``sky/NAME.png`` or ``sky/NAME/FRAME.png`` (6-digit frame index) with ``--save-sky``:
  the model's sky map at the frame's size, 255 sky (probability above 0.5), 0 not sky.
"""

from __future__ import annotations

import contextlib
import csv
import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from bafenet.data.video import VideoWriter
from bafenet.fileio import write_json, write_text
from bafenet.viz import save_png

PREDICTIONS_JSON = "predictions.json"
DETECTIONS_CSV = "detections.csv"
OVERLAYS = "overlays"
SKY = "sky"
CATEGORIES = [{"id": 1, "name": "target"}]
CSV_COLUMNS = ("image_id", "file", "frame", "time", "x1", "y1", "x2", "y2", "score")
SKY_THRESHOLD = 0.5  # as the sky IoU of `bafenet val`


@dataclass
class FrameOrigin:
    """Where a predicted frame comes from: the ``file``, its output ``name``, the frame's place in a
    video (``index``, ``time`` in seconds, the video's frame ``rate``) or ``None`` for an image."""

    file: Path
    name: str
    index: int | None = None
    time: float | None = None
    rate: Fraction | None = None


class PredictionOutputs:
    """Writes the outputs of predicted frames into ``folder`` as they come (see the module doc).

    Frames of a video must come in order, one video after the other. Use as a context manager:
    an annotated video is completed when the next video starts or the tables are written
    (:meth:`write_tables`, at the end), and removed if the block ends with an exception.
    """

    def __init__(self, folder: Path, draw: bool = True, save_sky: bool = False) -> None:
        self.folder = folder
        self.draw = draw
        self.save_sky = save_sky
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.failed: list[dict[str, str]] = []
        self.rows: list[list[Any]] = []  # of detections.csv
        self._video: VideoWriter | None = None
        self._video_name: str | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> PredictionOutputs:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.__exit__(*exc_info)

    def add(
        self,
        frame: FrameOrigin,
        boxes: np.ndarray,
        scores: np.ndarray,
        size: tuple[int, int],
        overlay: np.ndarray | None = None,
        sky: np.ndarray | None = None,
    ) -> None:
        """Record the detections of one frame: (N, 4) ``boxes`` x1 y1 x2 y2 pixel edges,
        (N,) ``scores``, frame ``size`` (H, W); write its RGB ``overlay`` and (H, W) ``sky``
        probability map when given and asked for."""
        image_id = len(self.images) + 1
        image: dict[str, Any] = {
            "id": image_id,
            "file_name": str(frame.file),
            "width": size[1],
            "height": size[0],
        }
        if frame.index is not None:
            image.update(frame_index=frame.index, time=round(frame.time or 0.0, 6))
        self.images.append(image)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4).round(2)
        scores = np.asarray(scores, np.float64).reshape(-1).round(4)
        for (x1, y1, x2, y2), score in zip(boxes.tolist(), scores.tolist(), strict=True):
            bbox = [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)]
            ann = {"image_id": image_id, "category_id": CATEGORIES[0]["id"], "bbox": bbox, "score": score}
            self.annotations.append({"id": len(self.annotations) + 1, **ann})
            where = [image_id, frame.file, image.get("frame_index", ""), image.get("time", "")]
            self.rows.append([*where, x1, y1, x2, y2, score])
        if overlay is not None and self.draw:
            self._write_overlay(frame, overlay)
        if sky is not None and self.save_sky:
            save_png(self.sky_path(frame), sky_mask_png(sky))

    def _write_overlay(self, frame: FrameOrigin, overlay: np.ndarray) -> None:
        if frame.index is None:
            save_png(self.folder / OVERLAYS / f"{frame.name}.png", overlay)
            return
        if self._video_name != frame.name:
            self.end_video()
            path = self.folder / OVERLAYS / f"{frame.name}.mp4"
            self._video = self._stack.enter_context(VideoWriter(path, frame.rate or Fraction(25)))
            self._video_name = frame.name
        self._video.write(overlay)

    def end_video(self) -> None:
        """Complete the annotated video being written, if any."""
        self._stack.close()
        self._video = self._video_name = None

    def sky_path(self, frame: FrameOrigin) -> Path:
        """``sky/NAME.png`` for an image, ``sky/NAME/000012.png`` for frame 12 of a video."""
        if frame.index is None:
            return self.folder / SKY / f"{frame.name}.png"
        return self.folder / SKY / frame.name / f"{frame.index:06d}.png"

    def add_failure(self, file: Path, problem: str) -> None:
        """Record an input that could not be read (listed in the JSON)."""
        self.failed.append({"file": str(file), "problem": problem})

    def coco(self, **info: Any) -> dict[str, Any]:
        """The content of ``predictions.json``: ``info`` (weights, threshold), then the COCO tables."""
        return {
            **info,
            "images": self.images,
            "annotations": self.annotations,
            "categories": CATEGORIES,
            "failed": self.failed,
        }

    def csv_text(self) -> str:
        """The content of ``detections.csv``: one row per detection, numbers as in the JSON."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(self.rows)
        return buffer.getvalue()

    def write_tables(self, **info: Any) -> None:
        """Write ``predictions.json`` and ``detections.csv`` (after completing any video)."""
        self.end_video()
        write_json(self.folder / PREDICTIONS_JSON, self.coco(**info))
        write_text(self.folder / DETECTIONS_CSV, self.csv_text())


def sky_mask_png(sky_prob: np.ndarray) -> np.ndarray:
    """(H, W) sky probability -> (H, W) uint8 mask, 255 where above :data:`SKY_THRESHOLD`, else 0."""
    return np.where(np.asarray(sky_prob) > SKY_THRESHOLD, 255, 0).astype(np.uint8)
