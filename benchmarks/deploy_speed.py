"""Deployment on this CPU: seconds per frame by runtime, ``bafenet predict`` on a video, memory.

For the released ``weights/fcos_hr_densesirst.pt`` and, with ``--sky-weights``, a sky model,
at each checkpoint's own evaluation geometry (native, x2) on 2 threads (``--threads``: PyTorch's
intra-op threads; the onnxruntime session takes the same number):

* ``onnx``: the checkpoint exported by ``bafenet export`` (dynamic, float32) and a static int8
  form of it (``onnxruntime.quantization.quantize_static``: QDQ, uint8 activations, int8
  weights per channel, MinMax ranges from a few ``train_v2`` frames); export and
  quantisation time, file sizes;
* ``frame/WxH``: seconds per real ``val_v2`` frame of 640x512 and of 1280x1024 through the
  Python API (``Detector.__call__``: conversion, x2 resize, network, post-processing, sky
  map), and of the network alone (``head_outputs``), for PyTorch float32, PyTorch under
  bf16 autocast (the ``eval.amp`` path: float32 on a CPU without native bf16), onnxruntime
  float32 and onnxruntime int8: medians
  of ``--reps`` repetitions after ``--warmup`` calls, the runtime order rotating every
  repetition so that a slow phase of the machine hits every runtime alike, with a 0.1 s pause
  before each timed call (the previous runtime's threads stop spin-waiting);
* ``memory/RUNTIME``: peak resident memory (``getrusage`` maxrss) of a process that loads
  one runtime and predicts the 640x512 frame, then the 1280x1024 frame (the high-water mark
  after each);
* ``int8_accuracy``: mAP07 of onnxruntime int8 and float32 on every ``--val-every``-th
  ``val_v2`` frame (a subset, not the full split);
* ``video/draw`` and ``video/no_draw``: frames per second of ``bafenet predict`` (the CLI's
  own code, ``bafenet.cli.main``) on a 640x512 H.264 video that this script writes from real
  ``val_v2`` frames with synthetic motion (each frame held for 10 video frames while the view
  pans 2 px a frame), with and without drawing, and its peak memory. Steady frames per second
  come from two videos (5 and ``--video-frames`` frames): the extra frames over the extra
  time, which leaves out model loading and start-up; end-to-end is frames / wall time of the
  whole command on the long video (model loading included, Python start-up not).

Every measurement runs in its own process, forked from a server that has imported the
libraries, so peaks do not mix and the parent's memory is not counted. Each is a record
(key ``<weights stem>@<sha256 prefix>/<measurement>``) in ``<out>/deploy_speed.json``, skipped
when present (``--force [SUBSTRING ...]`` redoes all, or the keys holding a substring); the
table ``<out>/deploy_speed.md`` is rewritten after each (both atomically).

    python benchmarks/deploy_speed.py --sky-weights weights/bafenet_hr_densesirst.pt
    python benchmarks/deploy_speed.py --smoke --out /tmp/deploy   # tiny untrained models, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import math
import multiprocessing
import platform
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Subset

from bafenet.api import Detector
from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import config_to_dict, load_config
from bafenet.data import open_dataset
from bafenet.data.collate import collate_samples
from bafenet.data.densesirst import DenseSIRST
from bafenet.data.sample import Sample
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.data.video import VideoWriter, encoder
from bafenet.engine.checkpoint import load_checkpoint, save_checkpoint
from bafenet.engine.evaluate import evaluate
from bafenet.engine.inference import autocast_dtype
from bafenet.engine.onnx_backend import export_model, require
from bafenet.engine.setup import build_model_from_config
from bafenet.errors import BafenetError, DataError
from bafenet.fileio import atomic_path, write_json, write_text
from budget_common import cpu_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "benchmarks" / "work"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "DenseSIRST" / "SIRSTdevkit"
DEFAULT_WEIGHTS = REPO / "weights" / "fcos_hr_densesirst.pt"
NAME = "deploy_speed"

THREADS = 2  # PyTorch intra-op threads and onnxruntime's (--threads)
SIZES = ((640, 512), (1280, 1024))  # (width, height) of the timed frames, small first
SMOKE_SIZES = ((96, 80), (128, 96))
VIDEO_RATE = 25
VIDEO_HOLD = 10  # video frames per real frame
VIDEO_STEP = 2  # pan in pixels per video frame
SHORT_VIDEO = 5  # frames of the short video (steady frames per second: long minus short)
PAUSE_S = 0.1  # before each timed call of the interleaved timing (spinning threads settle)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
MIB = 2**20


@dataclass(frozen=True)
class Runtime:
    """One way to run a checkpoint: its label, the file it loads and its config overrides."""

    name: str
    label: str
    file: str  # "pt" (the checkpoint), "fp32" or "int8" (its ONNX files)
    overrides: tuple[str, ...] = ()

    @property
    def backend(self) -> str:
        return "torch" if self.file == "pt" else "onnxruntime"


RUNTIMES = (
    Runtime("torch_fp32", "PyTorch float32", "pt", ("eval.amp=false",)),
    Runtime("torch_bf16", "PyTorch bf16 autocast (eval.amp)", "pt", ("eval.amp=true",)),
    Runtime("ort_fp32", "onnxruntime float32", "fp32"),
    Runtime("ort_int8", "onnxruntime int8 (static, QDQ)", "int8"),
)
QUANTISATION = {
    "function": "onnxruntime.quantization.quantize_static after quant_pre_process(skip_symbolic_shape=True)",
    "format": "QDQ",
    "activations": "uint8, asymmetric, one range per tensor",
    "weights": "int8, per output channel",
    "calibration": "MinMax over the calibration frames at the evaluation geometry",
}


# ------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class Checkpoint:
    """A weights file and what identifies it in the records."""

    path: Path
    model_name: str
    sha256: str
    eval: dict[str, Any]  # protocol, scale, amp of its stored config

    @classmethod
    def of(cls, path: str | Path) -> Checkpoint:
        """Read ``path`` weights-only (:func:`load_checkpoint` checks it)."""
        path = Path(path)
        ckpt = load_checkpoint(path)
        ev = ckpt["config"].get("eval", {})
        settings = {k: ev.get(k) for k in ("protocol", "scale", "amp")}
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return cls(path, ckpt["model_name"], digest, settings)

    @property
    def key(self) -> str:
        return f"{self.path.stem}@{self.sha256[:8]}"

    def record(self) -> dict[str, Any]:
        path = self.path.resolve()
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        return {"path": str(shown), "model_name": self.model_name, "sha256": self.sha256, "eval": self.eval}


def size_name(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def devkit_split(data: Path, split: str) -> DenseSIRST:
    """A split of a DenseSIRST devkit (the frames' files are needed, not only their pixels)."""
    dataset = open_dataset(data, split)
    if not isinstance(dataset, DenseSIRST):
        raise DataError(data, "not a DenseSIRST devkit (no PNGImages/)")
    return dataset


def ids_of_size(dataset: DenseSIRST, size: tuple[int, int]) -> list[str]:
    """Image ids of ``dataset`` whose frames are exactly ``size`` (width, height), in split order."""
    ids = []
    for image_id in dataset.ids:
        with Image.open(dataset.files(image_id).image) as image:  # reads the header only
            if image.size == size:
                ids.append(image_id)
    return ids


def real_frame(data: Path, size: tuple[int, int]) -> Sample:
    """The first ``val_v2`` frame of ``size`` (width, height)."""
    dataset = devkit_split(data, "val_v2")
    ids = ids_of_size(dataset, size)
    if not ids:
        raise DataError(data, f"val_v2 holds no frame of {size_name(size)}")
    return dataset.load(ids[0])


def write_video(path: Path, frames: list[np.ndarray], num_frames: int) -> Path:
    """``num_frames`` frames of synthetic motion over real (H, W) uint8 frames, H.264 at 25 fps:
    each real frame is held :data:`VIDEO_HOLD` video frames while the view pans
    :data:`VIDEO_STEP` px to the right a frame (the edge beyond the frame mirrored)."""
    pad = VIDEO_HOLD * VIDEO_STEP
    with VideoWriter(path, VIDEO_RATE) as writer:
        for i in range(num_frames):
            frame = frames[(i // VIDEO_HOLD) % len(frames)]
            shift = (i % VIDEO_HOLD) * VIDEO_STEP
            view = np.pad(frame, ((0, 0), (0, pad)), mode="reflect")[:, shift : shift + frame.shape[1]]
            writer.write(np.repeat(view[:, :, None], 3, axis=2))
    return path


def video_frames(data: Path, size: tuple[int, int], num_frames: int) -> tuple[list[np.ndarray], list[str]]:
    """The real ``val_v2`` frames of ``size`` that a video of ``num_frames`` frames shows, and their ids."""
    dataset = devkit_split(data, "val_v2")
    ids = ids_of_size(dataset, size)[: math.ceil(num_frames / VIDEO_HOLD)]
    if not ids:
        raise DataError(data, f"val_v2 holds no frame of {size_name(size)} for the video")
    frames = [np.clip(np.rint(dataset.load(i).image), 0, 255).astype(np.uint8) for i in ids]
    return frames, ids


# ------------------------------------------------------------------------------ isolation
PRELOAD = (
    *("torch", "onnx", "onnxruntime", "onnxruntime.quantization", "av"),
    *(
        "bafenet.api",
        "bafenet.cli",
        "bafenet.engine.onnx_backend",
        "bafenet.engine.evaluate",
        "budget_common",
    ),
)


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def machine() -> dict[str, Any]:
    """CPU model and features, threads and library versions of this process."""
    try:
        onnxruntime = importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        onnxruntime = None
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return {
        "cpu": cpu_model(),
        "cpu_flags": [f for f in CPU_FLAGS if f in flags],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime,
        "python": platform.python_version(),
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (``getrusage`` maxrss, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """This process's resident memory now: ``VmRSS`` of ``/proc/self/status``, else psutil's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        raise BafenetError("resident memory needs /proc/self/status (Linux) or the psutil package") from None
    return psutil.Process().memory_info().rss / MIB


def _measure(fn: Callable[..., dict[str, Any]], threads: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement on ``threads`` threads; add the machine and the peak memory."""
    torch.set_num_threads(threads)
    try:
        record = fn(**kwargs)
    except BafenetError as exc:  # a DataError does not survive pickling back: send its message
        raise BafenetError(str(exc)) from None
    record["machine"] = machine()
    record["process_peak_rss_mib"] = round(peak_rss_mib(), 1)
    return record


@cache
def _forkserver() -> multiprocessing.context.BaseContext:
    """The process server of :func:`isolated`; it imports :data:`PRELOAD` when it starts."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context


def isolated(fn: Callable[..., dict[str, Any]], threads: int, **kwargs: Any) -> dict[str, Any]:
    """``fn(**kwargs)`` on ``threads`` threads in a fresh process, forked from a server that has
    imported the libraries (:data:`PRELOAD`): its memory is its own, start-up takes no time."""
    with ProcessPoolExecutor(max_workers=1, mp_context=_forkserver()) as pool:
        return pool.submit(_measure, fn, threads, kwargs).result()


# ------------------------------------------------------------------------------ measurements
def load_runtime(runtime: Runtime, files: dict[str, str]) -> Detector:
    """The detector of ``runtime`` on the CPU; ``files``: ``pt``, ``fp32`` and ``int8`` paths."""
    return Detector.load(
        files[runtime.file], device="cpu", backend=runtime.backend, overrides=list(runtime.overrides)
    )


def network_call(detector: Detector, sample: Sample) -> Callable[[], object]:
    """The network alone on ``sample``'s network input: ``head_outputs`` under the detector's
    autocast setting, as :meth:`EvalGeometry.predict` (:func:`autocast_dtype`: bf16 on a CPU with
    native bf16, else float32)."""
    transformed = detector.geometry.transform(sample)
    images, _ = collate_samples([transformed])
    sizes = [(transformed.height, transformed.width)]
    dtype = autocast_dtype(torch.device("cpu"), detector.geometry.amp)

    def call() -> object:
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            return detector.model.head_outputs(images, image_sizes=sizes)

    return call


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_frame(
    files: dict[str, str], data: str, size: tuple[int, int], reps: int, warmup: int, pause: float
) -> dict:
    """Seconds per frame and of the network alone, every runtime, interleaved (module doc); a
    ``pause`` before each timed call lets the previous runtime's threads stop spin-waiting."""
    sample = real_frame(Path(data), size)
    detectors = {r.name: load_runtime(r, files) for r in RUNTIMES}
    calls = {
        name: {"frame": lambda d=d: d(sample.image), "network": network_call(d, sample)}
        for name, d in detectors.items()
    }
    for _ in range(warmup):
        for pair in calls.values():
            pair["frame"]()
            pair["network"]()
    times: dict[str, dict[str, list[float]]] = {name: {"frame": [], "network": []} for name in calls}
    names = list(calls)
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            for part in ("frame", "network"):
                time.sleep(pause)
                times[name][part].append(_seconds(calls[name][part]))
    runtimes = {}
    for name, detector in detectors.items():
        result = detector(sample.image)
        runtimes[name] = {
            "frame_s": statistics.median(times[name]["frame"]),
            "network_s": statistics.median(times[name]["network"]),
            "frame_all_s": [round(t, 4) for t in times[name]["frame"]],
            "network_all_s": [round(t, 4) for t in times[name]["network"]],
            "detections": len(result.scores),
            "score_thr": detector.score_thr,
        }
        if hasattr(detector.model, "session"):
            options = detector.model.session.get_session_options()
            runtimes[name]["ort_intra_op_threads"] = options.intra_op_num_threads
    geometry = detectors["torch_fp32"].geometry
    return {
        "size": size_name(size),
        "image_id": sample.image_id,
        "network_input": list(geometry.input_shape(sample.height, sample.width)),
        "protocol": geometry.protocol,
        "reps": reps,
        "warmup": warmup,
        "pause_s": pause,
        "runtimes": runtimes,
    }


def measure_memory(files: dict[str, str], data: str, runtime: str, sizes: list[tuple[int, int]]) -> dict:
    """Peak resident memory of one runtime: loaded, then after two calls on each size (small first)."""
    start = rss_mib()
    frames = [real_frame(Path(data), size) for size in sizes]
    detector = load_runtime(next(r for r in RUNTIMES if r.name == runtime), files)
    loaded = rss_mib()
    peaks = {}
    for size, sample in zip(sizes, frames, strict=True):
        for _ in range(2):
            detector(sample.image)
        peaks[size_name(size)] = round(peak_rss_mib(), 1)
    return {
        "runtime": runtime,
        "rss_start_mib": round(start, 1),
        "rss_loaded_mib": round(loaded, 1),
        "peak_mib": peaks,
        "calls_per_size": 2,
    }


class RecordingSession:
    """An onnxruntime session that keeps the inputs it is run on (in ``fed``)."""

    def __init__(self, session: Any, fed: list[dict[str, np.ndarray]]) -> None:
        self.session = session
        self.fed = fed

    def run(self, output_names: Any, feeds: dict[str, np.ndarray], *args: Any, **kwargs: Any) -> Any:
        self.fed.append(feeds)
        return self.session.run(output_names, feeds, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def graph_feeds(detector: Detector, samples: list[Sample]) -> list[dict[str, np.ndarray]]:
    """The ONNX graph's inputs for each sample, as the onnxruntime detector feeds its sessions
    (a sky-context model's two parts, run one after the other, merged into one graph's inputs)."""
    model = detector.model
    fed: list[dict[str, np.ndarray]] = []
    model.session = RecordingSession(model.session, fed)
    if model.context_session is not None:
        model.context_session = RecordingSession(model.context_session, fed)
    feeds = []
    for sample in samples:
        fed.clear()
        detector(sample.image)
        feeds.append({name: array for inputs in fed for name, array in inputs.items()})
    return feeds


def quantise(fp32: Path, int8: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Static int8 quantisation of ``fp32`` into ``int8`` (settings: :data:`QUANTISATION`)."""
    quantization = require("onnxruntime").quantization

    class Feeds(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory(prefix="bafenet-quant-") as tmp, atomic_path(int8) as out:
        prepared = Path(tmp) / "prepared.onnx"
        quantization.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantization.quantize_static(
            str(prepared),
            str(out),
            Feeds(),
            quant_format=quantization.QuantFormat.QDQ,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,
            calibrate_method=quantization.CalibrationMethod.MinMax,
        )


def make_onnx(weights: str, folder: str, data: str, calib_frames: int) -> dict:
    """Export the checkpoint (float32, dynamic) and quantise it, calibrated on every n-th
    ``train_v2`` frame; the files go to ``folder``."""
    folder_path = Path(folder)
    fp32, int8 = folder_path / "model_fp32.onnx", folder_path / "model_int8.onnx"
    start = time.perf_counter()
    export_model(weights, fp32)
    export_s = time.perf_counter() - start
    train = devkit_split(Path(data), "train_v2")
    ids = train.ids[:: max(1, len(train) // calib_frames)][:calib_frames]
    start = time.perf_counter()
    feeds = graph_feeds(
        Detector.load(fp32, device="cpu", backend="onnxruntime"), [train.load(i) for i in ids]
    )
    quantise(fp32, int8, feeds)
    return {
        "export_s": export_s,
        "quantise_s": time.perf_counter() - start,
        "fp32_mib": round(fp32.stat().st_size / MIB, 2),
        "int8_mib": round(int8.stat().st_size / MIB, 2),
        "quantisation": {**QUANTISATION, "calibration_frames": f"train_v2: {', '.join(ids)}"},
    }


def measure_int8_accuracy(files: dict[str, str], data: str, every: int) -> dict:
    """mAP07 (and mAP12, recall) of onnxruntime int8 and float32 on every ``every``-th val_v2 frame."""
    val = devkit_split(Path(data), "val_v2")
    subset = Subset(val, range(0, len(val), every))
    runtimes = {}
    for runtime in (r for r in RUNTIMES if r.backend == "onnxruntime"):
        detector = load_runtime(runtime, files)
        start = time.perf_counter()
        metrics, _ = evaluate(
            detector.model, subset, detector.geometry, detector.cfg.eval, detector.device, progress=False
        )
        runtimes[runtime.name] = {
            **{k: metrics[k] for k in ("mAP07", "mAP12", "recall")},
            "seconds": time.perf_counter() - start,
        }
    name = "every val_v2 frame" if every == 1 else f"every {every}th val_v2 frame"
    return {
        "subset": {"split": "val_v2", "every": every, "frames": len(subset), "name": name},
        "runtimes": runtimes,
    }


def measure_predict(weights: str, video: str, draw: bool, out: str) -> dict:
    """``bafenet predict`` on ``video`` (the CLI's code in this process); checks its outputs."""
    from bafenet.cli import main as cli

    argv = ["predict", "--weights", weights, video, "--out", out, "--device", "cpu"]
    argv += [] if draw else ["--no-draw"]
    start = time.perf_counter()
    code = cli(argv)
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"bafenet {' '.join(argv)} exited with {code}")
    images = json.loads((Path(out) / "predictions.json").read_text())["images"]
    overlays = sorted(p.name for p in (Path(out) / "overlays").glob("*")) if draw else []
    return {"frames": len(images), "wall_s": wall, "overlays": overlays}


# ------------------------------------------------------------------------------ tasks
@dataclass
class Task:
    """One record to measure: its key, kind and how (``run`` returns the record's own fields)."""

    key: str
    kind: str
    run: Callable[[], dict[str, Any]]
    ready: Callable[[], bool] = lambda: True  # what the task leaves behind (files) is still there


def video_record(
    ckpt: Checkpoint, videos: dict[str, dict[str, Any]], draw: bool, work: Path, threads: int
) -> dict:
    """``bafenet predict`` on the short and the long video; steady and end-to-end frames per second
    (steady: ``None`` when the long run did not take longer, which only a tiny smoke video can do)."""
    runs = {}
    for length, video in videos.items():
        with tempfile.TemporaryDirectory(prefix="predict-", dir=work) as tmp:
            out = f"{tmp}/out"
            runs[length] = isolated(
                measure_predict, threads, weights=str(ckpt.path), video=video["path"], draw=draw, out=out
            )
            if runs[length]["frames"] != video["frames"]:
                raise RuntimeError(f"predict gave {runs[length]['frames']} frames of {video['frames']}")
    short, long = runs["short"], runs["long"]
    machine = long.pop("machine")
    short.pop("machine")
    extra_s = long["wall_s"] - short["wall_s"]
    return {
        "draw": draw,
        "video": {k: v for k, v in videos["long"].items() if k != "path"},
        "short_video_frames": short["frames"],
        "runs": runs,
        "machine": machine,
        "fps_steady": (long["frames"] - short["frames"]) / extra_s if extra_s > 0 else None,
        "fps_end_to_end": long["frames"] / long["wall_s"],
        "peak_mib": long["process_peak_rss_mib"],
    }


def make_videos(data: Path, size: tuple[int, int], lengths: dict[str, int], work: Path) -> dict[str, dict]:
    """The short and long videos (written once into ``work``), with what they show."""
    frames, ids = video_frames(data, size, max(lengths.values()))
    videos = {}
    for length, count in lengths.items():
        path = work / f"video_{size_name(size)}_{count}f.mp4"
        if not path.exists():
            write_video(path, frames, count)
        videos[length] = {
            "path": str(path),
            "size": size_name(size),
            "frames": count,
            "rate": VIDEO_RATE,
            "codec": encoder()[0],
            "source": f"synthetic motion of real val_v2 frames ({', '.join(ids)}): each held {VIDEO_HOLD}"
            f" video frames while the view pans {VIDEO_STEP} px a frame",
        }
    return videos


def checkpoint_tasks(
    ckpt: Checkpoint, args: argparse.Namespace, sizes: tuple[tuple[int, int], ...]
) -> list[Task]:
    """Every measurement of one checkpoint, in the order they run (the ONNX files first)."""
    folder = args.work / ckpt.key.replace("@", "-")
    files = {
        "pt": str(ckpt.path),
        "fp32": str(folder / "model_fp32.onnx"),
        "int8": str(folder / "model_int8.onnx"),
    }
    data, threads = str(args.data), args.threads
    make = partial(
        isolated,
        make_onnx,
        threads,
        weights=files["pt"],
        folder=str(folder),
        data=data,
        calib_frames=args.calib_frames,
    )
    tasks = [
        Task(
            f"{ckpt.key}/onnx",
            "onnx",
            make,
            ready=lambda: all(Path(files[k]).exists() for k in ("fp32", "int8")),
        )
    ]
    for size in sizes:
        measure = partial(
            isolated,
            measure_frame,
            threads,
            files=files,
            data=data,
            size=size,
            reps=args.reps,
            warmup=args.warmup,
            pause=args.pause,
        )
        tasks.append(Task(f"{ckpt.key}/frame/{size_name(size)}", "frame", measure))
    for runtime in RUNTIMES:
        measure = partial(
            isolated, measure_memory, threads, files=files, data=data, runtime=runtime.name, sizes=list(sizes)
        )
        tasks.append(Task(f"{ckpt.key}/memory/{runtime.name}", "memory", measure))
    measure = partial(isolated, measure_int8_accuracy, threads, files=files, data=data, every=args.val_every)
    tasks.append(Task(f"{ckpt.key}/int8_accuracy/every{args.val_every}", "int8_accuracy", measure))
    lengths = {"short": SHORT_VIDEO, "long": args.video_frames}
    for draw in (True, False):

        def predict_video(draw: bool = draw) -> dict:
            videos = make_videos(args.data, sizes[0], lengths, args.work)
            return video_record(ckpt, videos, draw, args.work, threads)

        tasks.append(Task(f"{ckpt.key}/video/{'draw' if draw else 'no_draw'}", "video", predict_video))
    return tasks


def forced(force: list[str] | None, key: str) -> bool:
    """``--force`` alone redoes every record; ``--force SUBSTRING ...`` the keys holding one."""
    return force is not None and (not force or any(s in key for s in force))


# ------------------------------------------------------------------------------ report
def _cell(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _frame_table(group: dict[str, dict], sizes: list[str]) -> list[str]:
    """Seconds per frame, network seconds, ratio to PyTorch float32 and peak memory by runtime."""
    head = " | ".join(f"{s}: s / frame | network s | x PyTorch fp32 | peak MiB" for s in sizes)
    lines = [f"| runtime | {head} |", "|---|" + "---|---|---|---|" * len(sizes)]
    for runtime in RUNTIMES:
        cells = [runtime.label]
        memory = group.get(f"memory/{runtime.name}", {}).get("peak_mib", {})
        for size in sizes:
            times = group.get(f"frame/{size}", {}).get("runtimes", {})
            row, base = times.get(runtime.name), times.get("torch_fp32")
            ratio = row["frame_s"] / base["frame_s"] if row and base else None
            cells += [
                _cell(row and row["frame_s"], 3),
                _cell(row and row["network_s"], 3),
                _cell(ratio, 2),
                _cell(memory.get(size), 0),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _frame_lines(group: dict[str, dict], sizes: list[str]) -> list[str]:
    frames = [r for r in group.values() if r["kind"] == "frame"]
    if not frames and not any(r["kind"] == "memory" for r in group.values()):
        return []
    lines = [
        "Seconds per real val_v2 frame (medians of interleaved repetitions after warm-up calls, a"
        " pause before each): the Python API call on a decoded frame (conversion, resize, network,"
        " post-processing, sky map); 'network' is `head_outputs` alone on the network input. Peak"
        " MiB: resident memory of a process that loaded only that runtime and predicted the sizes in"
        " order (high-water mark after each size).",
        "",
        *_frame_table(group, sizes),
        "",
    ]
    for r in frames:
        h, w = r["network_input"]
        counts = ", ".join(f"{name} {v['detections']}" for name, v in r["runtimes"].items())
        lines.append(
            f"{r['size']}: frame `{r['image_id']}`, network input {w}x{h}, {r['reps']} repetitions after"
            f" {r['warmup']} warm-up call(s), pause {r['pause_s']} s; detections {counts}."
        )
    memory = [r for r in group.values() if r["kind"] == "memory"]
    if memory:
        low, high = (f(r["rss_start_mib"] for r in memory) for f in (min, max))
        span = f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"
        lines.append(f"Resident memory before loading (libraries imported): {span} MiB.")
    return [*lines, ""]


def _onnx_lines(onnx: dict) -> list[str]:
    q = onnx["quantisation"]
    return [
        f"ONNX: float32 {onnx['fp32_mib']} MiB (export {onnx['export_s']:.1f} s); int8 {onnx['int8_mib']}"
        f" MiB (calibration and quantisation {onnx['quantise_s']:.1f} s): {q['function']}, {q['format']},"
        f" activations {q['activations']}, weights {q['weights']}; {q['calibration']}"
        f" ({q['calibration_frames']}).",
        "",
    ]


def _accuracy_lines(r: dict) -> list[str]:
    subset = r["subset"]
    lines = [
        f"Accuracy on {subset['name']} ({subset['frames']} frames; a subset, not the full split):",
        "",
        "| runtime | mAP07 | mAP12 | recall | seconds |",
        "|---|---|---|---|---|",
    ]
    for runtime in RUNTIMES:
        if m := r["runtimes"].get(runtime.name):
            lines.append(
                f"| {runtime.label} | {m['mAP07']:.4f} | {m['mAP12']:.4f} | {m['recall']:.4f}"
                f" | {m['seconds']:.0f} |"
            )
    return [*lines, ""]


def _video_lines(videos: list[dict], amp: str) -> list[str]:
    video = videos[0]["video"]
    lines = [
        f"`bafenet predict` on a {video['size']} video of {video['frames']} frames ({video['codec']},"
        f" {video['rate']} fps; {video['source']}), {amp}: steady frames per second = the extra frames"
        f" of this video over a {videos[0]['short_video_frames']}-frame one / the extra time; end to end ="
        " frames / wall time of the whole command (model loading included, Python start-up not).",
        "",
        "| outputs | frames / s steady | frames / s end to end | peak MiB |",
        "|---|---|---|---|",
    ]
    for r in videos:
        what = "overlays: annotated video" if r["draw"] else "`--no-draw` (tables only)"
        lines.append(
            f"| {what} | {_cell(r['fps_steady'], 2)} | {r['fps_end_to_end']:.2f} | {r['peak_mib']:.0f} |"
        )
    return [*lines, ""]


def _checkpoint_section(group: dict[str, dict]) -> list[str]:
    """The tables of one checkpoint's records (``group``: measurement -> record)."""
    ckpt = next(iter(group.values()))["checkpoint"]
    ev = ckpt["eval"]
    amp = "bf16 autocast" if ev.get("amp") else "float32"
    lines = [
        f"## {Path(ckpt['path']).stem} ({ckpt['model_name']}, sha256 {ckpt['sha256'][:12]})",
        "",
        f"`{ckpt['path']}`; its evaluation settings: protocol {ev.get('protocol')}, scale {ev.get('scale')},"
        f" {amp} (what `bafenet predict` and the API use by default).",
        "",
        *_frame_lines(group, _sizes(group)),
    ]
    by_kind = {
        kind: [r for r in group.values() if r["kind"] == kind] for kind in ("onnx", "int8_accuracy", "video")
    }
    for r in by_kind["onnx"]:
        lines += _onnx_lines(r)
    for r in by_kind["int8_accuracy"]:
        lines += _accuracy_lines(r)
    if by_kind["video"]:
        lines += _video_lines(by_kind["video"], amp)
    return lines


def markdown(records: dict[str, dict], smoke: bool) -> str:
    """The tables of every record, one section per checkpoint."""
    machines = {json.dumps(r["machine"], sort_keys=True): r["machine"] for r in records.values()}
    lines = ["# Deployment speed (CPU)", ""]
    if smoke:
        lines += ["**Smoke run** (tiny untrained models, synthetic frames): the numbers mean nothing.", ""]
    lines += [
        "`python benchmarks/deploy_speed.py` (see its docstring). Measured on "
        + "; ".join(
            f"{m['cpu']} ({', '.join(m['cpu_flags']) or 'no AVX2'}), threads: {m['threads']},"
            f" torch {m['torch']}, onnxruntime {m['onnxruntime']}"
            for m in machines.values()
        )
        + ".",
        "",
    ]
    if len(machines) > 1:
        lines += ["The records come from more than one machine or library version: compare with care.", ""]
    groups: dict[str, dict[str, dict]] = {}
    for key, record in records.items():
        ckpt, _, measurement = key.partition("/")
        groups.setdefault(ckpt, {})[measurement] = record
    for group in groups.values():
        lines += _checkpoint_section(group)
    return "\n".join(lines).rstrip() + "\n"


def _sizes(group: dict[str, dict]) -> list[str]:
    """The frame sizes that a checkpoint's records measured, small first."""
    found = {r["size"] for r in group.values() if r["kind"] == "frame"}
    found |= {size for r in group.values() if r["kind"] == "memory" for size in r["peak_mib"]}
    return sorted(found, key=lambda size: [int(v) for v in size.split("x")])


def load_records(path: Path) -> dict[str, dict]:
    """The records of an earlier run (none when ``path`` does not exist)."""
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            path, f"cannot read the earlier records ({exc}); move it away to start afresh"
        ) from None


def save(records: dict[str, dict], out: Path, smoke: bool) -> None:
    write_json(out / f"{NAME}.json", records)
    write_text(out / f"{NAME}.md", markdown(records, smoke))


# ------------------------------------------------------------------------------ smoke
def tiny_checkpoint(path: Path, devkit: Path, overrides: list[str]) -> Path:
    """A small untrained HR checkpoint (native x2, bf16 autocast as the recipe) that detects plenty."""
    cfg = load_config(
        PACKAGED_CONFIGS / "bafenet_hr.yaml",
        [
            "model.kwargs.channels=16",
            "model.kwargs.backbone_width=8",
            "model.kwargs.tower_depth=1",
            f"data.root={devkit}",
            *overrides,
        ],
    )
    with _threads(1):
        torch.manual_seed(0)
        model: nn.Module = build_model_from_config(cfg)
        with torch.no_grad():
            model.head.cls_pred.bias.fill_(0.0)  # class probability 0.5: detections on every frame
    metadata = {"operating_score_thr": 0.0}  # keep every detection of the post-processing
    return save_checkpoint(path, model, cfg.model.name, config_to_dict(cfg), metadata=metadata)


def smoke_inputs(work: Path) -> tuple[Path, Path, Path]:
    """(devkit, plain checkpoint, sky-context checkpoint) of ``--smoke``: synthetic frames of
    :data:`SMOKE_SIZES` and tiny untrained models, written into ``work`` once."""
    devkit = work / "devkit"
    if not devkit.exists():
        write_synthetic_devkit(devkit, n=8, seed=0, sizes=SMOKE_SIZES)  # val_v2 holds both sizes
    plain, sky = work / "tiny_fcos_hr.pt", work / "tiny_sky_context.pt"
    if not plain.exists():
        tiny_checkpoint(plain, devkit, ["model.name=fcos_hr"])
    if not sky.exists():
        context = ["model.kwargs.sky_context=true", "model.kwargs.context_size=64"]
        tiny_checkpoint(sky, devkit, ["model.name=fcos_seg_hr", *context])
    return devkit, plain, sky


# ------------------------------------------------------------------------------ command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="checkpoint (default: fcos_hr)")
    parser.add_argument(
        "--sky-weights", type=Path, default=None, help="a second checkpoint: the best sky model"
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="DenseSIRST devkit (val_v2, train_v2)"
    )
    parser.add_argument("--threads", type=int, default=THREADS, help=f"threads (default {THREADS})")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per runtime (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up calls per runtime (default 1)")
    parser.add_argument("--val-every", type=int, default=4, help="int8 accuracy on every k-th val_v2 frame")
    parser.add_argument("--calib-frames", type=int, default=8, help="train_v2 frames calibrating int8")
    parser.add_argument("--video-frames", type=int, default=60, help="frames of the video (default 60)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument(
        "--work", type=Path, default=None, help=f"ONNX files, videos (benchmarks/work/{NAME})"
    )
    parser.add_argument(
        "--force",
        nargs="*",
        default=None,
        metavar="SUBSTRING",
        help="redo every record, or those keys holding one",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the whole path in seconds: tiny untrained models, synthetic frames",
    )
    args = parser.parse_args(argv)
    for name in ("threads", "reps", "warmup", "val_every", "calib_frames"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            parser.error(f"--{name.replace('_', '-')} must be at least {0 if name == 'warmup' else 1}")
    if args.video_frames <= SHORT_VIDEO:
        parser.error(f"--video-frames must be more than {SHORT_VIDEO} (the short video)")
    if args.smoke:
        # one thread: two on a busy two-core machine spin-wait for each other (tiny models, 50x slower)
        args.threads, args.reps, args.warmup, args.val_every, args.calib_frames = 1, 2, 1, 1, 2
        args.video_frames = SHORT_VIDEO + 3
    args.pause = 0.0 if args.smoke else PAUSE_S
    args.work = (args.work or WORK / (f"{NAME}_smoke" if args.smoke else NAME)).resolve()
    args.out = args.out or (args.work / "results" if args.smoke else RESULTS)
    return args


def run(args: argparse.Namespace) -> int:
    """Measure every record not done yet; write the records and tables after each."""
    require("onnx")
    require("onnxruntime")
    sizes = SMOKE_SIZES if args.smoke else SIZES
    weights = [args.weights, args.sky_weights]
    if args.smoke:
        args.data, *weights = smoke_inputs(args.work)
    checkpoints = [Checkpoint.of(w) for w in weights if w is not None]
    devkit_split(args.data, "val_v2")  # a bad --data is named before any work
    args.work.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{NAME}.json"
    records = load_records(path)
    failed = []
    for ckpt in checkpoints:
        for task in checkpoint_tasks(ckpt, args, sizes):
            if task.key in records and task.ready() and not forced(args.force, task.key):
                print(f"{task.key}: done before, skipped")
                continue
            print(f"{task.key}: measuring", flush=True)
            try:
                fields = task.run()
            except BafenetError as exc:
                print(f"{task.key}: failed: {exc}", file=sys.stderr)
                failed.append(task.key)
                continue
            except Exception:
                traceback.print_exc()
                print(f"{task.key}: failed (traceback above)", file=sys.stderr)
                failed.append(task.key)
                continue
            records[task.key] = {
                "key": task.key,
                "kind": task.kind,
                "checkpoint": ckpt.record(),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "smoke": args.smoke,
                **fields,
            }
            save(records, args.out, args.smoke)
    save(records, args.out, args.smoke)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    if failed:
        print(f"deploy_speed: {len(failed)} measurements failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BafenetError as exc:
        print(f"deploy_speed: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
