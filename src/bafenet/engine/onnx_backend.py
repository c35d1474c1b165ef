"""ONNX Runtime backend: an exported ``.onnx`` file run as the PyTorch detector runs.

``bafenet export`` (:func:`export_model`) writes the network's graph
(:mod:`bafenet.models.export`) with the checkpoint's model name, config and metadata in the
file's ``metadata_props``, so the file alone is enough to predict and evaluate.
:func:`load_onnx_model` reads it back into an :class:`OnnxDetector`, called like
:class:`~bafenet.models.detector.FCOSDetector` in eval mode: ONNX Runtime computes the raw
head outputs and :meth:`FCOSDetector.postprocess` (the same code as the PyTorch path, on a
weightless copy of the model built from the stored config) turns them into detections.

onnx and onnxruntime are optional (``pip install bafenet[export]``).
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bafenet.config import Config, config_to_dict
from bafenet.engine.inference import checkpoint_config, load_trained_model
from bafenet.engine.setup import build_model_from_config
from bafenet.errors import BafenetError, DataError
from bafenet.models.context import resample_context, whole_image_context
from bafenet.models.detector import FCOSDetector
from bafenet.models.export import OPSETS, export_onnx, input_names, output_names
from bafenet.models.head import HeadOutputs

FORMAT = "bafenet-onnx"
FORMAT_VERSION = 1
INSTALL_HINT = "pip install bafenet[export]"


def require(package: str) -> ModuleType:
    """Import ``package`` (``"onnx"`` or ``"onnxruntime"``), or say how to install it."""
    try:
        return __import__(package)
    except ImportError:
        raise BafenetError(
            f"ONNX export and the onnxruntime backend need the package {package}: {INSTALL_HINT}"
        ) from None


def export_model(
    weights: str | Path,
    path: str | Path,
    *,
    dynamic: bool = True,
    opset: int = 17,
    height: int = 512,
    width: int = 512,
) -> Path:
    """Export the checkpoint ``weights`` to the ONNX file ``path`` (written atomically).

    Args:
        dynamic: any batch size and input size (a multiple of 32, padded by the caller);
            else batch 1 and ``height`` x ``width`` only.
        opset: ONNX opset version.

    Raises:
        DataError / BafenetError: a bad checkpoint, a missing package, a failed export (one line).
    """
    require("onnx")
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise BafenetError(f"the export size must be positive multiples of 32, got {height}x{width}")
    if opset not in OPSETS:
        raise BafenetError(f"the ONNX opset must be in {OPSETS.start}..{OPSETS.stop - 1}, got {opset}")
    model, cfg, ckpt = load_trained_model(weights, torch.device("cpu"))
    metadata = {
        "bafenet.format": FORMAT,
        "bafenet.format_version": str(FORMAT_VERSION),
        "bafenet.model_name": ckpt["model_name"],
        "bafenet.config": json.dumps(config_to_dict(cfg)),
        "bafenet.metadata": json.dumps(ckpt.get("metadata") or {}, default=_tensor_as_list),
    }
    try:
        return export_onnx(model, path, height, width, opset=opset, dynamic=dynamic, metadata=metadata)
    except OSError as exc:
        raise DataError(path, f"cannot be written ({exc.strerror or exc})") from None
    except Exception as exc:  # the exporter's own errors (an operator it cannot write, ...)
        raise BafenetError(f"ONNX export of {weights} at opset {opset} failed: {_first_line(exc)}") from None


def _tensor_as_list(value: Any) -> Any:
    """JSON for the tensors a checkpoint's metadata may hold (every other value is plain)."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _first_line(exc: Exception) -> str:
    """The first line of an exception's message (its type when it has none)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_onnx_model(
    path: str | Path, device: torch.device, overrides: Iterable[str] = ()
) -> tuple[OnnxDetector, Config, dict[str, Any]]:
    """An :class:`OnnxDetector` with its config and a checkpoint-like dict
    (``model_name``, ``config``, ``metadata``) from a file written by :func:`export_model`.

    A ``.pt`` checkpoint is first exported (dynamic) to a temporary file. ``overrides``
    (``key=value``) update the stored config, e.g. the ``eval.*`` thresholds; the graph
    itself does not change. On CUDA the session uses ONNX Runtime's CUDA provider when it is
    installed (onnxruntime-gpu), else the CPU; it uses ``torch.get_num_threads()`` threads.

    Raises:
        DataError / ConfigError: one line naming the file and the problem.
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        with tempfile.TemporaryDirectory(prefix="bafenet-onnx-") as tmp:
            exported = export_model(path, Path(tmp) / f"{path.stem}.onnx")
            return load_onnx_model(exported, device, overrides)
    onnx = require("onnx")
    ort = require("onnxruntime")
    if not path.is_file():
        raise DataError(path, "ONNX file not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)  # never follow paths in the file
    except Exception as exc:  # truncated or not protobuf at all
        raise DataError(path, f"not a readable ONNX file ({_first_line(exc)})") from None
    if any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer):
        raise DataError(path, "its weights are in external data files, which bafenet does not read")
    ckpt = _read_metadata(path, proto)
    cfg = checkpoint_config(ckpt, path, overrides)
    with torch.device("meta"):  # the post-processing settings only: no weights are allocated
        postprocessor = build_model_from_config(cfg)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            warnings.warn(
                "onnxruntime has no CUDA provider here (onnxruntime-gpu); running on the CPU", stacklevel=2
            )
    levels = len(postprocessor.strides)
    with_sky, with_context = postprocessor.head.with_sky, postprocessor.context_size is not None
    graph_inputs = [i.name for i in proto.graph.input]
    graph_outputs = [o.name for o in proto.graph.output]
    if graph_inputs != input_names(levels, with_context) or graph_outputs != output_names(
        levels, with_sky, with_context
    ):
        raise DataError(path, f"the graph does not fit its stored config ({ckpt['model_name']})")
    graphs = [proto]
    if with_context:  # two independent parts of one graph (bafenet.models.export), two sessions
        extractor = onnx.utils.Extractor(proto)
        graphs = [
            extractor.extract_model(
                [name for name in graph_inputs if name != "context_images"], graph_outputs[:-1]
            ),
            extractor.extract_model(["context_images"], ["context_sky_logits"]),
        ]
    try:
        sessions = [
            ort.InferenceSession(graph.SerializeToString(), options, providers=providers) for graph in graphs
        ]
    except Exception as exc:  # a graph ONNX Runtime refuses (broken nodes, unknown operators)
        raise DataError(path, f"ONNX Runtime cannot load the graph ({_first_line(exc)})") from None
    return OnnxDetector(postprocessor, *sessions, name=str(path)), cfg, ckpt


def _read_metadata(path: Path, proto: Any) -> dict[str, Any]:
    """The checkpoint-like dict (``model_name``, ``config``, ``metadata``) stored in the file's metadata."""
    props = {prop.key: prop.value for prop in proto.metadata_props}
    if props.get("bafenet.format") != FORMAT:
        raise DataError(path, "not an ONNX file written by bafenet export (no bafenet metadata)")
    version = props.get("bafenet.format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise DataError(path, f"bafenet ONNX format {version!r} is not one this bafenet understands")
    try:
        ckpt = {
            "model_name": props["bafenet.model_name"],
            "config": json.loads(props["bafenet.config"]),
            "metadata": json.loads(props["bafenet.metadata"]),
        }
    except (KeyError, json.JSONDecodeError) as exc:
        raise DataError(path, f"broken bafenet metadata ({exc})") from None
    for key in ("config", "metadata"):
        if not isinstance(ckpt[key], dict):
            raise DataError(path, f"broken bafenet metadata (bafenet.{key} is not a mapping)")
    return ckpt


def _postprocess_setting(name: str) -> property:
    """A post-processing attribute of the detector, read from and written to its postprocessor."""
    return property(
        lambda self: getattr(self.postprocessor, name),
        lambda self, value: setattr(self.postprocessor, name, value),
        doc=f"``{name}`` of :class:`FCOSDetector` (post-processing).",
    )


class OnnxDetector:
    """An exported graph run by ONNX Runtime, called like :class:`FCOSDetector` in eval mode.

    Args:
        postprocessor: the detector built from the stored config (its weights are never
            used): its :meth:`~FCOSDetector.postprocess` and post-processing settings.
        session: ONNX Runtime session of the main part (images -> head outputs).
        context_session: session of the context part (``sky_context`` models only).
        name: the file, named in error messages.
    """

    training = False
    score_thresh = _postprocess_setting("score_thresh")
    pre_nms_top_n = _postprocess_setting("pre_nms_top_n")
    nms_thresh = _postprocess_setting("nms_thresh")
    detections_per_img = _postprocess_setting("detections_per_img")
    sky_gate_thr = _postprocess_setting("sky_gate_thr")

    def __init__(
        self, postprocessor: FCOSDetector, session: Any, context_session: Any = None, name: str = "model.onnx"
    ) -> None:
        self.postprocessor = postprocessor
        self.session = session
        self.context_session = context_session
        self.name = name
        height, width = session.get_inputs()[0].shape[-2:]
        self.fixed_size = (height, width) if isinstance(height, int) and isinstance(width, int) else None

    @property
    def strides(self) -> list[int]:
        return self.postprocessor.strides

    @property
    def context_size(self) -> int | None:
        return self.postprocessor.context_size

    @property
    def with_sky(self) -> bool:
        return self.postprocessor.head.with_sky

    def eval(self) -> OnnxDetector:
        return self

    def train(self, mode: bool = True) -> OnnxDetector:
        if mode:
            raise ValueError("an ONNX Runtime model cannot be trained")
        return self

    def head_outputs(
        self, images: Tensor, image_sizes: Sequence[tuple[int, int]] | None = None
    ) -> HeadOutputs:
        """Raw per-level head outputs of a (B, 1, H, W) batch, as :meth:`FCOSDetector.head_outputs`."""
        height, width = images.shape[-2:]
        if self.fixed_size is not None and (height, width) != self.fixed_size:
            raise DataError(
                self.name,
                f"the graph takes {self.fixed_size[0]}x{self.fixed_size[1]} input only (exported "
                f"without --dynamic), got {height}x{width}; export with --dynamic for any size",
            )
        feeds = {"images": images.float()}
        if self.context_session is not None:
            context = whole_image_context(images, self.context_size, image_sizes)
            logits = self._run(self.context_session, {"context_images": context.images})["context_sky_logits"]
            for level, stride in enumerate(self.strides):
                size = (math.ceil(height / stride), math.ceil(width / stride))
                feeds[f"sky_prior_{level}"] = resample_context(logits, context, size, stride, self.strides[0])
        outputs = self._run(self.session, feeds)

        def per_level(field: str) -> list[Tensor]:
            return [outputs[f"{field}_{level}"] for level in range(len(self.strides))]

        sky_logits = per_level("sky_logits") if self.with_sky else None
        return HeadOutputs(
            per_level("cls_logits"), per_level("box_distances"), per_level("centerness_logits"), sky_logits
        )

    def __call__(
        self,
        images: Tensor,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        original_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]:
        """One detection dict per image, as :meth:`FCOSDetector.forward` in eval mode (float32
        throughout: an enclosing autocast does not apply)."""
        with torch.autocast(images.device.type, enabled=False):
            outputs = self.head_outputs(images, image_sizes)
            return self.postprocessor.postprocess(
                outputs, tuple(images.shape[-2:]), image_sizes, original_sizes
            )

    @staticmethod
    def _run(session: Any, feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        """``session`` on ``feeds`` (image by image when its batch size is fixed) -> its outputs
        by name, on the device of the inputs."""
        device = next(iter(feeds.values())).device
        arrays = {name: np.ascontiguousarray(x.detach().float().cpu().numpy()) for name, x in feeds.items()}
        batch = len(next(iter(arrays.values())))
        fixed_batch = session.get_inputs()[0].shape[0]
        if not isinstance(fixed_batch, int) or batch == fixed_batch:
            results = session.run(None, arrays)
        else:
            parts = [session.run(None, {k: v[i : i + 1] for k, v in arrays.items()}) for i in range(batch)]
            results = [np.concatenate(column) for column in zip(*parts, strict=True)]
        names = [output.name for output in session.get_outputs()]
        return {name: torch.from_numpy(x).to(device) for name, x in zip(names, results, strict=True)}
