"""ONNX export of the network: the graph returns the raw per-level head outputs.

Post-processing (threshold, top-k, box decoding, NMS, sky map) is not in the graph: a runtime
feeds the graph's outputs to :meth:`FCOSDetector.postprocess`, the code the PyTorch model
uses (:class:`bafenet.engine.onnx_backend.OnnxDetector`).

Graph inputs:

* ``images`` (B, 1, H, W) float32 grey levels 0..255, zero-padded at the bottom / right to a
  multiple of the coarsest stride (32), as the collate function pads a batch;
* ``sky_context`` models only: ``context_images`` (B, 1, h_c, w_c), the whole-frame context
  (:func:`bafenet.models.context.whole_image_context`, computed outside the graph), and
  ``sky_prior_{l}`` (B, 1, H_l, W_l) per level, the context sky logits resampled onto the
  level's grid (:func:`bafenet.models.context.resample_context`, outside the graph too).

Graph outputs, per level ``l`` (finest first), the fields of
:class:`~bafenet.models.head.HeadOutputs`: ``cls_logits_{l}`` (B, C, H_l, W_l),
``box_distances_{l}`` (B, 4, H_l, W_l), ``centerness_logits_{l}`` (B, 1, H_l, W_l) and, for sky
models, ``sky_logits_{l}`` (B, 1, H_l, W_l); ``sky_context`` models also give
``context_sky_logits`` (B, 1, h'_c, w'_c), the finest context level's sky logits, computed
from ``context_images`` alone.

Why the context is split this way: the antialiased resize that makes the context image has no
ONNX operator that matches it, and ``roi_align`` (the resampling) is exported as ``RoiAlign``,
whose output size is a constant of the graph, so a graph holding it takes one frame size
only. The graph therefore holds two independent parts sharing the weights: the context part
(``context_images`` -> ``context_sky_logits``) and the main part (``images`` and the priors
-> head outputs); the runtime runs the first, resamples with torchvision, then runs the second.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from bafenet.fileio import atomic_path
from bafenet.models.context import context_shape
from bafenet.models.detector import FCOSDetector

HEAD_FIELDS = ("cls_logits", "box_distances", "centerness_logits", "sky_logits")
OPSETS = range(11, 21)  # what the exporter writes for every zoo model (11: chunk with any batch)


def output_names(num_levels: int, with_sky: bool, with_context: bool) -> list[str]:
    """Names of the graph's outputs, in order (see the module docstring)."""
    fields = HEAD_FIELDS if with_sky else HEAD_FIELDS[:3]
    names = [f"{field}_{level}" for field in fields for level in range(num_levels)]
    return names + (["context_sky_logits"] if with_context else [])


def input_names(num_levels: int, with_context: bool) -> list[str]:
    """Names of the graph's inputs, in order (see the module docstring)."""
    if not with_context:
        return ["images"]
    return ["images", "context_images"] + [f"sky_prior_{level}" for level in range(num_levels)]


class HeadGraph(nn.Module):
    """The exported function: inputs -> raw per-level head outputs (see the module docstring)."""

    def __init__(self, model: FCOSDetector) -> None:
        super().__init__()
        self.model = model
        self.num_levels = len(model.strides)
        self.with_sky = model.head.with_sky
        self.with_context = model.head.with_context

    @property
    def input_names(self) -> list[str]:
        return input_names(self.num_levels, self.with_context)

    @property
    def output_names(self) -> list[str]:
        return output_names(self.num_levels, self.with_sky, self.with_context)

    def forward(
        self, images: Tensor, context_images: Tensor | None = None, *sky_priors: Tensor
    ) -> list[Tensor]:
        """The tensors named by :attr:`output_names`, from the tensors named by :attr:`input_names`."""
        model = self.model
        outputs = model.head(model.pyramid(images), list(sky_priors) if self.with_context else None)
        fields = HEAD_FIELDS if self.with_sky else HEAD_FIELDS[:3]
        flat = [x for field in fields for x in getattr(outputs, field)]
        if self.with_context:  # the finest context level only, as FCOSDetector.head_outputs uses it
            flat += model.context_sky(context_images)[:1]
        return flat


def example_inputs(model: FCOSDetector, height: int, width: int) -> tuple[Tensor, ...]:
    """Zero inputs of the graph for a batch of one ``height`` x ``width`` image."""
    device = next(model.parameters()).device
    images = torch.zeros(1, 1, height, width, device=device)
    if not model.head.with_context:
        return (images,)
    context = torch.zeros(1, 1, *context_shape(height, width, model.context_size), device=device)
    priors = [torch.zeros(1, 1, -(-height // s), -(-width // s), device=device) for s in model.strides]
    return (images, context, *priors)


def dynamic_axes(graph: HeadGraph, dynamic: bool) -> dict[str, dict[int, str]] | None:
    """The ``dynamic_axes`` of :func:`torch.onnx.export`: with ``dynamic``, batch, height and
    width of every tensor; the context part always takes any size (nothing in it fixes one)."""
    axes = {}
    if graph.with_context:
        axes["context_images"] = {0: "batch", 2: "context_height", 3: "context_width"}
        axes["context_sky_logits"] = {0: "batch", 2: "context_height_0", 3: "context_width_0"}
    if dynamic:
        axes["images"] = {0: "batch", 2: "height", 3: "width"}
        for name in graph.input_names[2:] + graph.output_names:
            level = name.rsplit("_", 1)[-1]
            if level.isdigit():
                axes[name] = {0: "batch", 2: f"height_{level}", 3: f"width_{level}"}
    return axes or None


def export_onnx(
    model: FCOSDetector,
    path: str | Path,
    height: int = 512,
    width: int = 512,
    opset: int = 17,
    dynamic: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Export ``model`` to an ONNX file at ``path``, atomically (see the module docstring).

    Args:
        height, width: the input size of a fixed graph (batch 1), the example size of a
            dynamic one; multiples of 32.
        opset: ONNX opset version.
        dynamic: batch size, height and width of every input and output are dynamic
            (else batch 1 and ``height`` x ``width``; the context part of a ``sky_context``
            model takes any size either way).
        metadata: key -> text pairs stored in the file's ``metadata_props``.
    """
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(f"the export size must be positive multiples of 32, got {height}x{width}")
    if opset not in OPSETS:
        raise ValueError(f"the ONNX opset must be in {OPSETS.start}..{OPSETS.stop - 1}, got {opset}")
    graph = HeadGraph(model.eval()).eval()
    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notes, not problems of the file
        torch.onnx.export(
            graph,
            example_inputs(model, height, width),
            str(tmp),
            input_names=graph.input_names,
            output_names=graph.output_names,
            dynamic_axes=dynamic_axes(graph, dynamic),
            opset_version=opset,
            dynamo=False,
        )
        if metadata:
            import onnx  # the export extra, as onnxruntime

            proto = onnx.load(str(tmp))
            for key, value in metadata.items():
                proto.metadata_props.add(key=key, value=value)
            onnx.save(proto, str(tmp))
    return path
