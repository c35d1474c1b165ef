"""Python API: a trained detector run on frames in memory or image files, no file written.

    import bafenet

    detector = bafenet.Detector.load("weights/fcos_hr_densesirst.pt")  # CPU, or CUDA when present
    result = detector(frame)  # numpy (H, W) / (H, W, 3), uint8 / uint16 / float, or a path
    result.boxes, result.scores, result.sky  # (N, 4) x1 y1 x2 y2 pixels, (N,), (H, W) or None
    rgb = result.plot()  # RGB overlay
    results = detector.predict(frames, batch_size=4)

A frame goes through the checkpoint's evaluation geometry
(:class:`bafenet.engine.inference.EvalGeometry`) and the same model call as ``bafenet val``,
so the detections are the numbers ``bafenet val`` sees on that frame, kept above the
detector's score threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bafenet.config import Config
from bafenet.data.imageio import read_image, to_gray
from bafenet.data.sample import Sample
from bafenet.engine.allocator import HeapTrim, fix_mmap_threshold
from bafenet.engine.distributed import local_device
from bafenet.engine.evaluate import equal_shape_batches
from bafenet.engine.inference import EvalGeometry, load_trained_model, operating_score_thr
from bafenet.errors import BafenetError
from bafenet.viz import detection_overlay

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as bafenet.data.imageio
Frame = np.ndarray | str | Path
"""A frame: an array (H, W) or (H, W, 3) of uint8, uint16 or float 0..255 grey levels, or an image file."""


@dataclass
class Result:
    """Detections of one frame, in the frame's pixels.

    ``boxes`` are ``x1 y1 x2 y2`` pixel edges (pixel ``p`` covers ``[p, p + 1)``).
    """

    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32, each >= score_thr, best first
    sky: np.ndarray | None  # (H, W) float32 sky probability; None without a sky branch
    image: np.ndarray  # (H, W) uint8 grey frame as the model saw it (before scaling)
    name: str | None  # file stem or given name
    score_thr: float

    def plot(self, zoom: bool = True, enlarge: bool = True) -> np.ndarray:
        """(H', W', 3) uint8 RGB overlay: sky tinted blue, boxes in red with their scores.

        With ``enlarge``, frames under 1024 px are drawn enlarged; with ``zoom``, an inset
        enlarges the densest detections, so 3-px boxes stay visible
        (:func:`bafenet.viz.detection_overlay`). ``enlarge=False`` keeps the frame's size (a
        video's annotated frames: 4x fewer pixels to encode).
        """
        return detection_overlay(
            self.image, self.boxes, self.scores, self.sky, zoom=zoom, min_side=1024 if enlarge else 0
        )


class Detector:
    """A trained detector: model, config, evaluation geometry and score threshold of a checkpoint.

    Build it with :meth:`load`; call it on a frame, or :meth:`predict` a list of frames.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: Config,
        checkpoint: dict,
        device: torch.device,
        score_thr: float | None = None,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.device = device
        self.geometry = EvalGeometry.from_config(cfg)
        fix_mmap_threshold()  # flat memory over many frames of many sizes (engine/allocator.py)
        self.heap_trim = HeapTrim()
        if score_thr is None:
            self.score_thr, self.score_thr_source = operating_score_thr(checkpoint)
        elif not isinstance(score_thr, bool) and isinstance(score_thr, (int, float)) and 0 <= score_thr <= 1:
            self.score_thr, self.score_thr_source = float(score_thr), "given"
        else:
            raise BafenetError(f"score_thr {score_thr!r} is not a score threshold in [0, 1]")

    @classmethod
    def load(
        cls,
        weights: str | Path,
        *,
        device: str | torch.device = "auto",
        score_thr: float | None = None,
        overrides: Sequence[str] = (),
        backend: str = "torch",
    ) -> Detector:
        """The detector of a checkpoint (read weights-only).

        Args:
            weights: a ``.pt`` checkpoint (released or from a run); an ``.onnx`` file with
                ``backend="onnxruntime"``.
            device: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"`` or a device.
            score_thr: keep detections at or above it (default: the checkpoint's operating
                point, see :func:`bafenet.engine.inference.operating_score_thr`).
            overrides: config overrides ``key=value``, e.g. ``eval.scale=2`` or ``eval.protocol=tiles``.

        Raises:
            BafenetError: one line naming the file and the problem.
        """
        device = _device(device)
        overrides = [overrides] if isinstance(overrides, str) else list(overrides)
        model, cfg, checkpoint = load_trained_model(weights, device, overrides, backend=backend)
        return cls(model, cfg, checkpoint, device, score_thr)

    def __call__(self, frame: Frame, *, name: str | None = None) -> Result:
        """Detections of one frame (see :data:`Frame`); ``name`` defaults to a file's stem."""
        name = name or _file_stem(frame)
        return self._predict([frame_sample(frame, name or "frame")], [name], batch_size=1)[0]

    def predict(self, frames: Iterable[Frame], *, batch_size: int = 1) -> list[Result]:
        """Detections of each frame, in order; frames of one input shape share a forward pass
        of up to ``batch_size`` (the results do not depend on it)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise BafenetError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        frames = list(frames)
        names = [_file_stem(frame) for frame in frames]
        samples = [frame_sample(frame, names[i] or f"frame {i}") for i, frame in enumerate(frames)]
        return self._predict(samples, names, batch_size)

    def _predict(self, samples: list[Sample], names: list[str | None], batch_size: int) -> list[Result]:
        """Results of ``samples`` in order, named ``names``: the evaluation's batching and model call."""
        outputs = []
        for originals, transformed in equal_shape_batches(
            samples, range(len(samples)), self.geometry, batch_size
        ):
            outputs += self.geometry.predict(self.model, originals, transformed, self.device)
        self.heap_trim.check()
        return [self._result(*args) for args in zip(samples, outputs, names, strict=True)]

    def _result(self, sample: Sample, out: dict[str, torch.Tensor], name: str | None) -> Result:
        """Detections at or above the score threshold and the sky map at the frame's size."""
        keep = out["scores"] >= self.score_thr
        sky = None
        if "sky_prob" in out:  # input resolution -> the frame's
            prob = out["sky_prob"].float()[None, None]
            sky = F.interpolate(prob, size=sample.image.shape, mode="bilinear", antialias=True)[0, 0]
            sky = sky.clamp(0, 1).cpu().numpy()
        return Result(
            boxes=out["boxes"][keep].float().cpu().numpy().reshape(-1, 4),
            scores=out["scores"][keep].float().cpu().numpy(),
            sky=sky,
            image=np.clip(np.rint(sample.image), 0, 255).astype(np.uint8),
            name=name,
            score_thr=self.score_thr,
        )


def _device(device: str | torch.device) -> torch.device:
    """``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a device -> a device here."""
    if device == "auto":
        return local_device("auto")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise BafenetError(f"device {device!r}: use 'auto', 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BafenetError("device 'cuda': CUDA is not available on this machine (use 'cpu' or 'auto')")
    return device


def _file_stem(frame: Frame) -> str | None:
    return Path(frame).stem if isinstance(frame, (str, Path)) else None


def frame_sample(frame: Frame, name: str = "frame") -> Sample:
    """A frame as a :class:`Sample` of (H, W) float32 grey levels in [0, 255].

    A path is read like every dataset image (:func:`bafenet.data.imageio.read_image`).
    Integer arrays are converted as the readers convert decoded files
    (:func:`bafenet.data.imageio.to_gray`: uint8 as is, uint16 stretched from its own minimum
    and maximum, colour to luma); float arrays are grey levels on the 8-bit scale (colour: luma).

    Raises:
        BafenetError / DataError: one line naming the frame (its file, else ``name``, which
        becomes the sample's ``image_id``).
    """
    if isinstance(frame, (str, Path)):
        return Sample(image=read_image(frame), image_id=name, path=Path(frame))
    if not isinstance(frame, np.ndarray):
        raise BafenetError(f"{name}: expected a numpy array or an image path, got {type(frame).__name__}")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise BafenetError(f"{name}: a frame must be (H, W) or (H, W, 3), got shape {frame.shape}")
    if frame.size == 0:
        raise BafenetError(f"{name}: empty frame of shape {frame.shape}")
    if np.issubdtype(frame.dtype, np.floating):
        if not np.isfinite(frame).all():
            raise BafenetError(f"{name}: the frame holds NaN or infinite values")
        grey = _float_gray(frame)
    elif np.issubdtype(frame.dtype, np.integer) or frame.dtype == bool:
        grey = to_gray(frame)
    else:
        raise BafenetError(f"{name}: unsupported frame dtype {frame.dtype} (uint8, uint16 or float)")
    return Sample(image=grey, image_id=name)


def _float_gray(frame: np.ndarray) -> np.ndarray:
    """A float frame (H, W) / (H, W, C) of 0..255 grey levels -> (H, W) float32 in [0, 255].

    Colour becomes the readers' luma (``0.299 R + 0.587 G + 0.114 B``, alpha dropped).
    """
    frame = frame.astype(np.float32)
    if frame.ndim == 3:
        frame = frame[:, :, 0] if frame.shape[2] == 1 else frame[:, :, :3] @ LUMA
    return frame.clip(0, 255)
