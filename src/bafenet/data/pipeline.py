"""Train and eval pipelines, and the dataset wrapper that applies them reproducibly.

The training pipeline follows the official recipe (reference §2.1): every image -- the
sample and its copy-paste source alike -- is resized to 512 x 512 (bilinear, no
antialiasing, aspect ratio not kept) and flipped left-right with probability 0.5; then
BAG-CP pastes some of the source's targets into the sample. The source is a second
uniformly random item of the (repeated) dataset, which may be the sample itself, as the
official mixing dataset does.

With ``context_size`` (sky-context models) every training sample also carries the whole
frame it was cut from, at a long side of ``context_size``, flipped like the sample, and the
sample's place in it (:func:`bafenet.data.transforms.frame_context`). It draws no random
numbers, so the samples themselves are the same with or without it.

:class:`AugmentedDataset` draws all randomness of item ``i`` in epoch ``e`` from a generator
seeded with ``(seed, e, i)``: the same run always sees the same augmented samples, and a
resumed run continues exactly where the interrupted one was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from bafenet.data.bagcp import BackgroundAwareCopyPaste, PasteRecord
from bafenet.data.sample import Sample
from bafenet.data.transforms import (
    Compose,
    PhotometricJitter,
    RandomHorizontalFlip,
    RandomTargetCrop,
    Resize,
    Transform,
    frame_context,
)


class _SampleSource(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Sample: ...


@dataclass(frozen=True)
class TrainPipeline:
    """Geometric steps (on the sample and on the copy-paste source), BAG-CP, photometric jitter;
    optionally the whole-frame context (``context_size``: its long side)."""

    geometric: Compose
    copy_paste: BackgroundAwareCopyPaste | None = None
    photometric: PhotometricJitter | None = None
    context_size: int | None = None

    @property
    def needs_source(self) -> bool:
        """Whether :meth:`__call__` wants a second sample to copy targets from."""
        return self.copy_paste is not None

    def apply(
        self, sample: Sample, rng: np.random.Generator, source: Sample | None = None
    ) -> tuple[Sample, list[PasteRecord]]:
        """Run the pipeline; also return the BAG-CP records (for previews)."""
        out = self.geometric(sample, rng)
        if self.context_size is not None:
            out = out.replace(context=frame_context(sample, out, self.context_size))
        records: list[PasteRecord] = []
        if self.copy_paste is not None and source is not None:
            out, records = self.copy_paste.paste(out, self.geometric(source, rng), rng)
        if self.photometric is not None:
            out = self.photometric(out, rng)
        return out, records

    def __call__(self, sample: Sample, rng: np.random.Generator, source: Sample | None = None) -> Sample:
        return self.apply(sample, rng, source)[0]


def _geometric_steps(
    mode: str,
    size: int | Sequence[int],
    keep_ratio: bool,
    scale: float,
    crop_size: int | Sequence[int],
    crop_jitter: float,
    crop_min_visible: float,
    background_crop_prob: float,
    antialias: bool,
) -> list[Transform]:
    if mode == "resize":
        return [
            Resize(
                size=size if isinstance(size, int) else tuple(size),
                keep_ratio=keep_ratio,
                antialias=antialias,
            )
        ]
    if mode == "native":
        steps: list[Transform] = []
        if scale != 1.0:
            steps.append(Resize(size=None, scale=scale, antialias=antialias))
        crop = crop_size if isinstance(crop_size, int) else tuple(crop_size)
        steps.append(
            RandomTargetCrop(
                size=crop,
                jitter=crop_jitter,
                min_visible=crop_min_visible,
                background_prob=background_crop_prob,
            )
        )
        return steps
    raise ValueError(f"unknown input mode {mode!r} (resize or native)")


def build_train_pipeline(
    *,
    mode: Literal["resize", "native"] = "resize",
    size: int | Sequence[int] = 512,
    keep_ratio: bool = False,
    scale: float = 1.0,
    crop_size: int | Sequence[int] = 512,
    crop_jitter: float = 0.4,
    crop_min_visible: float = 0.5,
    background_crop_prob: float = 0.0,
    antialias: bool = False,
    flip_prob: float = 0.5,
    bagcp: Literal["faithful", "improved", "plain"] | None = "faithful",
    bagcp_prob: float = 1.0,
    bagcp_options: dict[str, Any] | None = None,
    photometric: PhotometricJitter | None = None,
    context_size: int | None = None,
) -> TrainPipeline:
    """The training pipeline; the defaults are the official recipe.

    Args:
        mode: ``"resize"`` (whole frame to ``size``) or ``"native"`` (frame resized by
            ``scale``, then a ``crop_size`` crop near a random target).
        size, keep_ratio: resize target (H, W) or side, and whether to keep the aspect ratio.
        scale, crop_size, crop_jitter, crop_min_visible, background_crop_prob: native mode
            (see :func:`bafenet.data.transforms.random_crop_around_target`).
        antialias: antialiased downscaling (the official recipe has none).
        flip_prob: horizontal flip probability.
        bagcp: BAG-CP preset (:meth:`BackgroundAwareCopyPaste.from_mode`) or None for none.
        bagcp_prob, bagcp_options: its probability and any other constructor arguments.
        photometric: optional grey-level jitter applied last.
        context_size: attach the whole-frame context at this long side (sky-context models).
    """
    steps = _geometric_steps(
        mode,
        size,
        keep_ratio,
        scale,
        crop_size,
        crop_jitter,
        crop_min_visible,
        background_crop_prob,
        antialias,
    )
    if flip_prob > 0:
        steps.append(RandomHorizontalFlip(flip_prob))
    copy_paste = None
    if bagcp is not None:
        copy_paste = BackgroundAwareCopyPaste.from_mode(bagcp, prob=bagcp_prob, **(bagcp_options or {}))
    return TrainPipeline(Compose(tuple(steps)), copy_paste, photometric, context_size)


def build_eval_pipeline(
    *,
    mode: Literal["resize", "native"] = "resize",
    size: int | Sequence[int] = 512,
    keep_ratio: bool = False,
    scale: float = 1.0,
    antialias: bool = False,
    max_side: int | None = None,
) -> Compose:
    """The evaluation pipeline, called as ``pipeline(sample)``: the official 512 x 512 resize,
    or the native resolution (optionally resized by ``scale``, at most to a long side of
    ``max_side``)."""
    if mode == "resize":
        return Compose(
            (
                Resize(
                    size=size if isinstance(size, int) else tuple(size),
                    keep_ratio=keep_ratio,
                    antialias=antialias,
                ),
            )
        )
    if mode == "native":
        return Compose((Resize(size=None, scale=scale, antialias=antialias, max_side=max_side),))
    raise ValueError(f"unknown input mode {mode!r} (resize or native)")


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of item ``index`` in ``epoch`` (all three must be >= 0)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))


class AugmentedDataset(Dataset):
    """``dataset`` repeated ``repeat`` times, each item run through ``pipeline`` reproducibly.

    ``pipeline`` is a :class:`TrainPipeline` (it then also gets a random copy-paste source)
    or any ``pipeline(sample, rng)``. The epoch lives in shared memory, so
    :meth:`set_epoch` reaches DataLoader worker processes, persistent ones included.
    """

    def __init__(self, dataset: _SampleSource, pipeline: Any, seed: int = 0, repeat: int = 1) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.dataset = dataset
        self.pipeline = pipeline
        self.seed = int(seed)
        self.repeat = int(repeat)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations :meth:`__getitem__` produces."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return self.repeat * len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        rng = sample_rng(self.seed, self.epoch, index)
        n = len(self.dataset)
        sample = self.dataset[index % n]
        if getattr(self.pipeline, "needs_source", False):
            source = self.dataset[int(rng.integers(len(self))) % n]
            return self.pipeline(sample, rng, source)
        return self.pipeline(sample, rng)
