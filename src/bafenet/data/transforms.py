"""Joint transforms on :class:`~bafenet.data.sample.Sample`: image, boxes, masks, points and sky together.

Every transform maps a Sample to a new Sample (the input is never modified). Random ones
take an explicit ``numpy.random.Generator``; the transform classes all have the signature
``transform(sample, rng)`` so that pipelines can chain them (deterministic ones ignore ``rng``).

Geometry follows the official recipe (reference §2.1):

* **resize**: image bilinear with half-pixel centres and **no antialiasing** by default
  (the cv2 ``INTER_LINEAR`` the official pipeline uses; torchvision's tensor resize with
  ``antialias=False`` computes exactly that), ``antialias=True`` as an option; masks nearest
  (``floor(i * scale)``, cv2 ``INTER_NEAREST``); boxes and points scaled by
  ``(W'/W, H'/H)`` and clipped to the image.
* **pad** at the bottom/right: image 0, target mask 0, sky mask 255 (unknown).
* **horizontal flip**: ``x' = W - x`` for every edge coordinate (box corners, points).
* **random crop around a target** for native-resolution training; boxes cut below a minimum
  visible fraction are dropped together with their points.
* **whole-frame context** (:func:`frame_context`, sky-context training): the whole frame at
  low resolution and where the (cropped, flipped) sample lies in it.

Image, masks and boxes go through ``torchvision.transforms.v2.functional`` with tv_tensors.
Points do not: torchvision's key points are pixel *indices* (its flip is ``W - 1 - x``),
ours are continuous coordinates (pixel centre = index + 0.5, flip ``W - x``), so the few
lines of point arithmetic are done here.

Each output sample carries a :class:`Geometry` (``sample.geometry``) that maps its
coordinates back to the file's original pixels; :func:`get_geometry` reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode

from bafenet.data.sample import UNKNOWN, Sample

# ------------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class Geometry:
    """How a sample's coordinates relate to the original file: ``cur = scale * orig + offset``.

    Per axis, ``(y, x)``. A horizontal flip makes ``scale[1]`` negative.
    """

    original_size: tuple[int, int]  # (H0, W0)
    scale: tuple[float, float] = (1.0, 1.0)  # (ay, ax)
    offset: tuple[float, float] = (0.0, 0.0)  # (by, bx)

    @property
    def flipped(self) -> bool:
        return self.scale[1] < 0

    @property
    def scale_factors(self) -> tuple[float, float]:
        """(sy, sx): the resize factors applied (positive)."""
        return abs(self.scale[0]), abs(self.scale[1])

    def resized(self, fy: float, fx: float) -> Geometry:
        ay, ax = self.scale
        by, bx = self.offset
        return Geometry(self.original_size, (ay * fy, ax * fx), (by * fy, bx * fx))

    def shifted(self, dy: float, dx: float) -> Geometry:
        return Geometry(self.original_size, self.scale, (self.offset[0] + dy, self.offset[1] + dx))

    def hflipped(self, width: int) -> Geometry:
        ay, ax = self.scale
        by, bx = self.offset
        return Geometry(self.original_size, (ay, -ax), (by, width - bx))

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) x1 y1 x2 y2 boxes of the current image back to original pixels."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        (ay, ax), (by, bx) = self.scale, self.offset
        xs = (boxes[:, [0, 2]] - bx) / ax
        ys = (boxes[:, [1, 3]] - by) / ay
        out = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)
        return out.astype(np.float32)


def get_geometry(sample: Sample) -> Geometry:
    """The sample's :class:`Geometry`; identity for a sample straight from a reader.

    It travels in the field ``sample.geometry``, set by :func:`derive` and kept by
    ``Sample.replace`` and ``Sample.copy``.
    """
    geometry = sample.geometry
    return geometry if geometry is not None else Geometry((sample.height, sample.width))


def derive(sample: Sample, geometry: Geometry | None = None, **changes: object) -> Sample:
    """A new sample with ``changes``, carrying ``geometry`` (default: the input's) along."""
    return sample.replace(geometry=geometry if geometry is not None else get_geometry(sample), **changes)


# ------------------------------------------------------------------------ tensor round trip


def _image(a: np.ndarray) -> tv_tensors.Image:
    return tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(a))[None])  # (1, H, W)


def _mask(a: np.ndarray) -> tv_tensors.Mask:
    return tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(a))[None])  # (1, H, W)


def _boxes(sample: Sample) -> tv_tensors.BoundingBoxes:
    return tv_tensors.BoundingBoxes(
        torch.from_numpy(np.ascontiguousarray(sample.boxes)),
        format=tv_tensors.BoundingBoxFormat.XYXY,
        canvas_size=(sample.height, sample.width),
    )


def _plane(t: torch.Tensor) -> np.ndarray:
    return t.as_subclass(torch.Tensor)[0].numpy()  # (1, H, W) -> (H, W)


def _clip_boxes(boxes: tv_tensors.BoundingBoxes) -> np.ndarray:
    """Clamp boxes to their canvas; back to (N, 4) float32 numpy."""
    out = TF.clamp_bounding_boxes(boxes)
    return out.as_subclass(torch.Tensor).numpy().astype(np.float32, copy=False).reshape(-1, 4)


def _clip_points(points: np.ndarray, height: int, width: int) -> np.ndarray:
    out = points.copy()
    out[:, 0] = out[:, 0].clip(0, width)
    out[:, 1] = out[:, 1].clip(0, height)
    return out


# --------------------------------------------------------------------------------- resize


def resized_shape(
    height: int,
    width: int,
    size: int | Sequence[int] | None = None,
    *,
    scale: float | None = None,
    keep_ratio: bool = False,
) -> tuple[int, int]:
    """Output (H, W) of a resize.

    ``size`` is ``(H, W)`` or one int for a square. ``keep_ratio=False``: exactly ``size``.
    ``keep_ratio=True``: the largest scale at which the long side fits the longer of ``size``
    and the short side the shorter one (the official ``keep_ratio`` rule), sides rounded.
    ``scale``: both sides multiplied by it and rounded (``size`` must then be ``None``).
    """
    if (size is None) == (scale is None):
        raise ValueError("give exactly one of size and scale")
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))
    th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if th <= 0 or tw <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if not keep_ratio:
        return th, tw
    factor = min(max(th, tw) / max(height, width), min(th, tw) / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def resize(
    sample: Sample,
    size: int | Sequence[int] | None = None,
    *,
    scale: float | None = None,
    keep_ratio: bool = False,
    antialias: bool = False,
) -> Sample:
    """Resize image (bilinear), masks (nearest), boxes and points (scaled, clipped)."""
    h, w = sample.height, sample.width
    nh, nw = resized_shape(h, w, size, scale=scale, keep_ratio=keep_ratio)
    if (nh, nw) == (h, w):
        return derive(sample)
    out_size = [nh, nw]
    image = TF.resize(_image(sample.image), out_size, InterpolationMode.BILINEAR, antialias=antialias)
    target = TF.resize(_mask(sample.target_mask), out_size, InterpolationMode.NEAREST)
    sky = TF.resize(_mask(sample.sky_mask), out_size, InterpolationMode.NEAREST)
    boxes = TF.resize(_boxes(sample), out_size)
    fy, fx = nh / h, nw / w
    points = _clip_points(sample.points * np.float32([fx, fy]), nh, nw)
    return derive(
        sample,
        get_geometry(sample).resized(fy, fx),
        image=_plane(image),
        target_mask=_plane(target),
        sky_mask=_plane(sky),
        boxes=_clip_boxes(boxes),
        points=points,
    )


# ----------------------------------------------------------------------------- pad, flip


def pad(
    sample: Sample, size: int | Sequence[int] | None = None, *, size_divisor: int | None = None
) -> Sample:
    """Pad at the bottom and right to ``size`` (H, W) or to the next multiple of ``size_divisor``.

    Image and target mask are padded with 0, the sky mask with 255 (unknown). Sizes smaller
    than the image leave that side unchanged. Coordinates do not move.
    """
    h, w = sample.height, sample.width
    if size is not None:
        th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    elif size_divisor is not None:
        th, tw = math.ceil(h / size_divisor) * size_divisor, math.ceil(w / size_divisor) * size_divisor
    else:
        raise ValueError("give size or size_divisor")
    bottom, right = max(0, th - h), max(0, tw - w)
    if bottom == 0 and right == 0:
        return derive(sample)
    padding = [0, 0, right, bottom]  # left, top, right, bottom
    return derive(
        sample,
        image=_plane(TF.pad(_image(sample.image), padding, fill=0.0)),
        target_mask=_plane(TF.pad(_mask(sample.target_mask), padding, fill=0)),
        sky_mask=_plane(TF.pad(_mask(sample.sky_mask), padding, fill=UNKNOWN)),
    )


def hflip(sample: Sample) -> Sample:
    """Mirror left-right: ``x' = W - x`` for box edges and points."""
    w = sample.width
    points = sample.points.copy()
    points[:, 0] = w - points[:, 0]
    boxes = TF.horizontal_flip(_boxes(sample))
    return derive(
        sample,
        get_geometry(sample).hflipped(w),
        image=_plane(TF.horizontal_flip(_image(sample.image))),
        target_mask=_plane(TF.horizontal_flip(_mask(sample.target_mask))),
        sky_mask=_plane(TF.horizontal_flip(_mask(sample.sky_mask))),
        boxes=boxes.as_subclass(torch.Tensor).numpy().reshape(-1, 4),
        points=points,
    )


# ----------------------------------------------------------------------------------- crop


def crop(sample: Sample, top: int, left: int, height: int, width: int, min_visible: float = 0.5) -> Sample:
    """Cut the window ``[top, top+height) x [left, left+width)`` (inside the image).

    Boxes are clipped to the window; a box keeping less than ``min_visible`` of its area
    (or nothing) is dropped with its point. Points of kept boxes are moved inside their
    clipped box. The target mask is cut like the image (a dropped box's visible pixels stay
    marked, they are still target pixels).
    """
    if top < 0 or left < 0 or top + height > sample.height or left + width > sample.width:
        raise ValueError(f"crop {(top, left, height, width)} outside image {(sample.height, sample.width)}")
    area = (sample.boxes[:, 2] - sample.boxes[:, 0]) * (sample.boxes[:, 3] - sample.boxes[:, 1])
    boxes = _clip_boxes(TF.crop(_boxes(sample), top, left, height, width))
    kept_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = (kept_area > 0) & (kept_area >= min_visible * area)
    boxes = boxes[keep]
    points = sample.points[keep] - np.float32([left, top])
    # keep each point inside its (possibly clipped) box, on a pixel centre where the box allows
    half_w = np.minimum(0.5, (boxes[:, 2] - boxes[:, 0]) / 2)
    half_h = np.minimum(0.5, (boxes[:, 3] - boxes[:, 1]) / 2)
    if len(points):
        points[:, 0] = np.clip(points[:, 0], boxes[:, 0] + half_w, boxes[:, 2] - half_w)
        points[:, 1] = np.clip(points[:, 1], boxes[:, 1] + half_h, boxes[:, 3] - half_h)
    window = (slice(top, top + height), slice(left, left + width))
    return derive(
        sample,
        get_geometry(sample).shifted(-top, -left),
        image=sample.image[window].copy(),
        target_mask=sample.target_mask[window].copy(),
        sky_mask=sample.sky_mask[window].copy(),
        boxes=boxes,
        points=points.astype(np.float32),
    )


def random_crop_around_target(
    sample: Sample,
    rng: np.random.Generator,
    size: int | Sequence[int],
    jitter: float = 0.4,
    min_visible: float = 0.5,
    background_prob: float = 0.0,
) -> Sample:
    """Crop ``size`` (H, W) centred near a random target (uniform crop if there is none).

    The crop centre is the chosen box centre moved by up to ``jitter`` x the crop side in
    each axis (uniform), then the window is shifted to lie inside the image. With
    probability ``background_prob`` the crop is placed uniformly instead, wherever the
    targets are (0: no extra random draw, the crops of earlier versions). An image smaller
    than the crop is padded (bottom/right) to the crop size.
    """
    ch, cw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = sample.height, sample.width
    crop_h, crop_w = min(ch, h), min(cw, w)
    near_target = sample.num_targets > 0 and not (background_prob > 0 and rng.random() < background_prob)
    if near_target:
        box = sample.boxes[rng.integers(sample.num_targets)]
        cy = (box[1] + box[3]) / 2 + rng.uniform(-jitter, jitter) * crop_h
        cx = (box[0] + box[2]) / 2 + rng.uniform(-jitter, jitter) * crop_w
        top = int(np.clip(round(cy - crop_h / 2), 0, h - crop_h))
        left = int(np.clip(round(cx - crop_w / 2), 0, w - crop_w))
    else:
        top = int(rng.integers(0, h - crop_h + 1))
        left = int(rng.integers(0, w - crop_w + 1))
    out = crop(sample, top, left, crop_h, crop_w, min_visible)
    return pad(out, (ch, cw)) if (crop_h, crop_w) != (ch, cw) else out


# ------------------------------------------------------------------------ whole-frame context


@dataclass(frozen=True)
class FrameContext:
    """A low-resolution view of the whole frame a sample was cut from (sky-context training).

    ``image`` (h_c, w_c) float32 grey 0..255 and ``sky_mask`` (h_c, w_c) uint8 are the frame
    scaled to a long side of the context size (image antialiased bilinear, mask nearest) and
    mirrored when the sample is. ``box`` = ``x1 y1 x2 y2``: where the sample's whole extent
    ``[0, W) x [0, H)`` lies in the context, in pixel-edge coordinates (beyond the context
    where the sample was padded). BAG-CP pastes and photometric jitter are not shown.
    """

    image: np.ndarray
    sky_mask: np.ndarray
    box: tuple[float, float, float, float]


def frame_context(frame: Sample, sample: Sample, size: int) -> FrameContext:
    """The :class:`FrameContext` of ``sample``, made from ``frame`` by geometric steps.

    Both samples' :class:`Geometry` map the same file's pixels (``frame`` is usually the
    sample as read), so ``sample``'s edges map through the file's coordinates to the context.
    """
    if size < 1:
        raise ValueError(f"context size must be >= 1, got {size}")
    view = Sample(frame.image, sky_mask=frame.sky_mask, image_id=frame.image_id, geometry=frame.geometry)
    view = resize(view, scale=size / max(frame.height, frame.width), antialias=True)
    if get_geometry(view).flipped != get_geometry(sample).flipped:
        view = hflip(view)
    (ay, ax), (by, bx) = get_geometry(sample).scale, get_geometry(sample).offset
    (cy, cx), (dy, dx) = get_geometry(view).scale, get_geometry(view).offset
    # sample coordinate u -> file (u - b) / a -> context c (u - b) / a + d, per axis
    xs = sorted(cx * (u - bx) / ax + dx for u in (0.0, sample.width))
    ys = sorted(cy * (v - by) / ay + dy for v in (0.0, sample.height))
    return FrameContext(view.image, view.sky_mask, (xs[0], ys[0], xs[1], ys[1]))


# ---------------------------------------------------------------------------- photometric


@dataclass(frozen=True)
class PhotometricJitter:
    """Grey-level jitter suited to infrared frames, each part applied with probability ``prob``.

    ``y = 255 * ((gain * x + offset) / 255) ** gamma + noise``, clipped to [0, 255]:
    gain ~ U(gain_range), offset ~ U(offset_range) grey levels, gamma log-uniform in
    ``gamma_range``, Gaussian noise with a standard deviation ~ U(noise_std_range).
    Masks and boxes are unchanged. Not part of the official recipe (off by default).
    """

    gain_range: tuple[float, float] = (0.8, 1.2)
    offset_range: tuple[float, float] = (-20.0, 20.0)
    gamma_range: tuple[float, float] = (0.7, 1.4)
    noise_std_range: tuple[float, float] = (0.0, 4.0)
    prob: float = 0.5

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        image = sample.image.astype(np.float32, copy=True)
        if rng.random() < self.prob:
            image *= rng.uniform(*self.gain_range)
            image += rng.uniform(*self.offset_range)
            np.clip(image, 0, 255, out=image)
        if rng.random() < self.prob:
            gamma = math.exp(rng.uniform(math.log(self.gamma_range[0]), math.log(self.gamma_range[1])))
            image = (255.0 * (image / 255.0) ** gamma).astype(np.float32)
        if rng.random() < self.prob:
            std = rng.uniform(*self.noise_std_range)
            image += (rng.standard_normal(image.shape, dtype=np.float32) * std).astype(np.float32)
        np.clip(image, 0, 255, out=image)
        return derive(sample, image=image)


# ------------------------------------------------------------------ transform objects for pipelines

Transform = Callable[[Sample, np.random.Generator], Sample]


@dataclass(frozen=True)
class Resize:
    """:func:`resize` as a pipeline step (give ``size`` or ``scale``).

    With ``scale`` and ``max_side``, a frame is resized by ``min(scale, max_side / long side)``:
    small frames get the full factor, large ones only as much as keeps them within ``max_side``.
    """

    size: int | tuple[int, int] | None = 512
    scale: float | None = None
    keep_ratio: bool = False
    antialias: bool = False
    max_side: int | None = None

    def _scale(self, height: int, width: int) -> float | None:
        if self.scale is not None and self.max_side is not None:
            return min(self.scale, self.max_side / max(height, width))
        return self.scale

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) that a ``height`` x ``width`` frame gets from this step (nothing is resized)."""
        scale = self._scale(height, width)
        return resized_shape(height, width, self.size, scale=scale, keep_ratio=self.keep_ratio)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        scale = self._scale(sample.height, sample.width)
        if scale is not None and self.size is None and scale == 1.0:
            return sample
        return resize(sample, self.size, scale=scale, keep_ratio=self.keep_ratio, antialias=self.antialias)


@dataclass(frozen=True)
class Pad:
    """:func:`pad` as a pipeline step."""

    size: int | tuple[int, int] | None = None
    size_divisor: int | None = None

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        return pad(sample, self.size, size_divisor=self.size_divisor)


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """:func:`hflip` with probability ``prob``."""

    prob: float = 0.5

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return hflip(sample) if rng.random() < self.prob else sample


@dataclass(frozen=True)
class RandomTargetCrop:
    """:func:`random_crop_around_target` as a pipeline step."""

    size: int | tuple[int, int] = 512
    jitter: float = 0.4
    min_visible: float = 0.5
    background_prob: float = 0.0

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return random_crop_around_target(
            sample, rng, self.size, self.jitter, self.min_visible, self.background_prob
        )


@dataclass(frozen=True)
class Compose:
    """Apply ``steps`` in order, each as ``step(sample, rng)``."""

    steps: tuple[Transform, ...] = field(default_factory=tuple)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        for step in self.steps:
            sample = step(sample, rng)
        return sample
