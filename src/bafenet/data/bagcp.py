"""BAG-CP, background-aware Gaussian copy-paste (the official ``SkyCopyPaste``, reference §3).

One call takes a random subset of a *source* sample's targets and pastes them, in clusters,
into all-sky windows of the *destination* sample (both already resized/flipped by the
pipeline), using the destination's own sky mask, target mask and boxes.

Faithful mode (the default, reference §3.3):

1. ``k`` uniform in ``{0 .. min(n, max_num_pasted - 1)}`` of the ``n`` source boxes, chosen
   without replacement in random order (all of them, in order, with ``selected=False``).
2. Patch size per box ``w = int(x2) - int(x1)``, ``h = int(y2) - int(y1)``; a patch with a
   side of ``large_side`` (10) px or more is resized (bilinear) to ``large_patch`` (7) px square.
3. Boxes are taken in groups of ``cluster_size`` (5). For each group a free window is sought:
   up to ``max_tries`` (102) random sky pixels as its top-left corner (clamped so the window
   fits), the first whose ``o x o`` window is all sky and holds no target pixel wins; on
   failure ``o`` shrinks by ``window_shrink`` (3), ``window_attempts`` (7) sizes in all,
   starting at ``window_size`` (25). A success keeps the shrunken size for later groups; a
   total failure resets it and leaves the group without a window.
4. Each target: up to ``max_tries`` random top-left positions inside the group's window; it is
   accepted when its rectangle is all sky and the rectangle grown by 1 px touches no target
   pixel (original or pasted). Otherwise (or without a window) the fallback tries
   ``max_tries`` random sky pixels anywhere with the same test.
5. Blending: ``new = min(255, D + lambda * G * P)`` over the pasted rectangle: ``P`` the raw
   source patch (its own background included), ``lambda ~ U(0.5, 1)``, ``G`` a rotated
   anisotropic Gaussian on a ``[-1, 1]`` grid (``sigma_x, sigma_y ~ U(0.3, 0.6)``, centre
   ``-U(0, 0.2)`` per axis, angle an integer degree in ``[-90, 89]``), min-max normalised.
6. New boxes = the pasted rectangles; the target mask marks the rectangles; points are the
   rectangle centres (floor of the mask centroid + 0.5, the dataset's rule); the sky mask
   is unchanged.

Deviations from the official code, all deliberate (see ``docs/augment.md``):

* 1x1 patches use ``G = 1`` (official: 0/0 = NaN -> a saturated 255 pixel).
* No pixel is written twice: the 1-px gap test is clipped at the image border (official
  skips it at row/column 0) and windows/targets never overlap earlier pastes, so the
  official "divide overlapping pastes by their count" darkening cannot happen.
* The fallback drops a target it cannot place validly (official pastes it at the last,
  possibly invalid, spot); a window smaller than the patch also goes to the fallback
  (official crashes); zero-area patches are skipped (official appends a (0,0,0,0) box).
* Occupancy = the destination's target mask **and** its boxes, so a sample whose mask is
  missing or (after resizing) a pixel off its box is still protected. Because pastes then
  never cover a destination target, the official occlusion filter is not needed.
* Masks come from the sample itself (no hard-coded path, no 512 x 512 assumption); the
  image stays float (no uint8 truncation).

Switches beyond the faithful mode (presets in :meth:`BackgroundAwareCopyPaste.from_mode`):
``contrast="background_subtracted"`` pastes the source target's contrast over its own
local background instead of the raw patch, ``mask_from="source_mask"`` marks the source
target's mask pixels instead of the whole rectangle (box = the mask's extent),
``blend="add"`` adds ``lambda * P`` without the Gaussian weighting; the ``improved`` preset
combines the three with ``lambda ~ U(0.75, 1.25)`` (chosen by the realism report, see
:mod:`bafenet.data.realism`). ``placement="anywhere", blend="replace"`` is the ``plain``
preset, the official ``CopyPaste`` mode 1 (random positions anywhere, 1-px gap, not
sky-aware, pixels replaced by the raw patch).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from bafenet.data.sample import SKY, Sample
from bafenet.data.transforms import derive

MODES = ("faithful", "improved", "plain")

_MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "faithful": {},
    # measured on train_v2 (docs/augment.md): the background-subtracted contrast added without
    # the Gaussian weighting, at a gain around 1, matches the real peak-contrast distribution
    "improved": {
        "contrast": "background_subtracted",
        "mask_from": "source_mask",
        "blend": "add",
        "lam_range": (0.75, 1.25),
    },
    # official plain CopyPaste mode 1 retries without a cap; we stop after 1,000 positions
    "plain": {"placement": "anywhere", "blend": "replace", "max_tries": 1000},
}


@dataclass
class PasteRecord:
    """One pasted target, for previews and statistics."""

    box: tuple[float, float, float, float]  # x1 y1 x2 y2 in the destination
    source_id: str
    source_index: int  # index of the copied box in the source sample
    group: int  # cluster number (i // cluster_size)
    in_window: bool  # False: placed by the fallback (or no windows in this mode)
    lam: float  # lambda, the random gain (1 for "replace")
    peak_gain: float  # largest grey-level increase over the destination pixel

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = [round(float(v), 2) for v in self.box]
        d["size"] = [int(self.box[2] - self.box[0]), int(self.box[3] - self.box[1])]
        d["lam"] = round(self.lam, 4)
        d["peak_gain"] = round(self.peak_gain, 2)
        return d


@dataclass
class _Patch:
    pixels: np.ndarray  # (h, w) float32, what is added (or written)
    mask: np.ndarray  # (h, w) bool, the target pixels inside the rectangle
    index: int  # source box index


def _box_pixels(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, 4) int64 ``r0 c0 r1 c1``: the pixel rectangles the boxes touch, clipped to the image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    r0 = np.floor(boxes[:, 1]).clip(0, height)
    c0 = np.floor(boxes[:, 0]).clip(0, width)
    r1 = np.maximum(np.ceil(boxes[:, 3]).clip(0, height), r0)
    c1 = np.maximum(np.ceil(boxes[:, 2]).clip(0, width), c0)
    return np.stack([r0, c0, r1, c1], axis=1).astype(np.int64)


def occupied_rectangles(sample: Sample) -> np.ndarray:
    """(M, 4) int64 ``r0 c0 r1 c1`` whose union is every occupied pixel of ``sample``.

    Occupied = a pixel some box touches, or a target-mask pixel (mask pixels outside every
    box, rare, become 1x1 rectangles). A list of rectangles is much cheaper to test than an
    image-sized map because targets are few and small.
    """
    rects = _box_pixels(sample.boxes, sample.height, sample.width)
    stray = sample.target_mask > 0
    if len(rects):
        stray = stray.copy()
        for r0, c0, r1, c1 in rects:
            stray[r0:r1, c0:c1] = False
    rows, cols = np.nonzero(stray)
    pixels = np.stack([rows, cols, rows + 1, cols + 1], axis=1).astype(np.int64)
    return np.concatenate([rects, pixels])


def occupancy_map(sample: Sample) -> np.ndarray:
    """(H, W) bool: target-mask pixels and every pixel a box touches."""
    occupied = sample.target_mask > 0
    for r0, c0, r1, c1 in _box_pixels(sample.boxes, sample.height, sample.width):
        occupied[r0:r1, c0:c1] = True
    return occupied


def _integral(mask: np.ndarray) -> np.ndarray:
    """(H+1, W+1) int32 summed-area table of a boolean (H, W) mask."""
    h, w = mask.shape
    table = np.zeros((h + 1, w + 1), dtype=np.int32)
    np.cumsum(np.cumsum(mask, axis=1, dtype=np.int32), axis=0, out=table[1:, 1:])
    return table


def _rect_sum(
    table: np.ndarray, r0: np.ndarray, c0: np.ndarray, r1: np.ndarray, c1: np.ndarray
) -> np.ndarray:
    """Sums over the rectangles ``[r0, r1) x [c0, c1)`` (vectorised, bounds already clipped)."""
    return table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]


def _clip(a: np.ndarray, hi: int) -> np.ndarray:
    return np.minimum(np.maximum(a, 0), hi)


class _Canvas:
    """Where targets may go: the sky (a summed-area table) and occupied rectangles.

    ``rects`` starts with the destination's occupied pixels and grows by one rectangle per
    paste, so "no occupied pixel" and "no earlier paste" are one test.
    """

    def __init__(self, sample: Sample) -> None:
        self.height, self.width = sample.height, sample.width
        not_sky = sample.sky_mask != SKY
        self.not_sky = _integral(not_sky)
        self.sky_pixels = np.flatnonzero(~not_sky)  # flat indices
        self.rects = occupied_rectangles(sample)  # (M, 4) r0, c0, r1, c1

    def random_sky_pixels(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of ``n`` sky pixels drawn uniformly with replacement."""
        flat = self.sky_pixels[rng.integers(0, len(self.sky_pixels), size=n)]
        return np.divmod(flat, self.width)

    def _occupied(self, r0: np.ndarray, c0: np.ndarray, r1: np.ndarray, c1: np.ndarray) -> np.ndarray:
        """Which rectangles ``[r0, r1) x [c0, c1)`` meet an occupied rectangle."""
        p = self.rects
        if len(p) == 0:
            return np.zeros(len(r0), dtype=bool)
        overlap = (
            (p[:, 0] < r1[:, None])
            & (r0[:, None] < p[:, 2])
            & (p[:, 1] < c1[:, None])
            & (c0[:, None] < p[:, 3])
        )  # (K, M)
        return overlap.any(axis=1)

    def free_windows(self, rows: np.ndarray, cols: np.ndarray, side: int) -> np.ndarray:
        """Which ``side x side`` windows at (rows, cols) lie inside, all sky, with no target."""
        H, W = self.height, self.width
        inside = (rows >= 0) & (cols >= 0) & (rows + side <= H) & (cols + side <= W)
        r0, c0, r1, c1 = _clip(rows, H), _clip(cols, W), _clip(rows + side, H), _clip(cols + side, W)
        sky = _rect_sum(self.not_sky, r0, c0, r1, c1) == 0
        return inside & sky & ~self._occupied(r0, c0, r1, c1)

    def fits(self, rows: np.ndarray, cols: np.ndarray, h: int, w: int, need_sky: bool) -> np.ndarray:
        """Which ``h x w`` rectangles (clipped to the image) are valid spots for a target.

        Valid: non-empty after clipping, all sky (if ``need_sky``), and the rectangle grown by
        1 px (clipped to the image) meets no occupied or pasted pixel.
        """
        H, W = self.height, self.width
        r0, c0, r1, c1 = _clip(rows, H), _clip(cols, W), _clip(rows + h, H), _clip(cols + w, W)
        ok = (rows >= 0) & (cols >= 0) & (r1 > r0) & (c1 > c0)
        if need_sky:
            ok &= _rect_sum(self.not_sky, r0, c0, r1, c1) == 0
        grown = _clip(r0 - 1, H), _clip(c0 - 1, W), _clip(r1 + 1, H), _clip(c1 + 1, W)
        return ok & ~self._occupied(*grown)

    def add(self, r0: int, c0: int, r1: int, c1: int) -> None:
        self.rects = np.concatenate([self.rects, np.array([[r0, c0, r1, c1]], dtype=np.int64)])


def _first(ok: np.ndarray) -> int | None:
    return int(np.argmax(ok)) if ok.any() else None


def gaussian_weights(
    h: int,
    w: int,
    rng: np.random.Generator,
    sigma_range: tuple[float, float] = (0.3, 0.6),
    max_shift: float = 0.2,
) -> np.ndarray:
    """(h, w) rotated anisotropic Gaussian on a [-1, 1] grid, min-max normalised to [0, 1].

    ``sigma_x, sigma_y ~ U(sigma_range)``; centre ``(-U(0, max_shift), -U(0, max_shift))``;
    rotation by an integer degree in [-90, 89]. A constant grid (1x1) gives all ones.
    """
    sigma_x, sigma_y = rng.uniform(*sigma_range, size=2)
    mu_x, mu_y = -rng.uniform(0.0, max_shift, size=2)
    theta = math.radians(int(rng.integers(-90, 90)))
    dx = np.linspace(-1.0, 1.0, w)[None, :] - mu_x  # (1, w)
    dy = np.linspace(-1.0, 1.0, h)[:, None] - mu_y  # (h, 1)
    u = math.cos(theta) * dx - math.sin(theta) * dy  # (h, w)
    v = math.sin(theta) * dx + math.cos(theta) * dy
    g = np.exp(-(u**2 / (2 * sigma_x**2) + v**2 / (2 * sigma_y**2)))
    span = g.max() - g.min()
    if span <= 1e-12:
        return np.ones((h, w), dtype=np.float32)
    return ((g - g.min()) / span).astype(np.float32)


def _resize_patch(a: np.ndarray, side: int, mode: str) -> np.ndarray:
    """Resize a small (h, w) array to (side, side): bilinear (half-pixel, no antialias) or nearest."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    if mode == "bilinear":
        out = F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)
    else:
        out = F.interpolate(t, size=(side, side), mode="nearest")
    return out[0, 0].numpy()


def local_background(image: np.ndarray, box: np.ndarray, exclude: np.ndarray, ring: int) -> float:
    """Median grey level around ``box`` within ``ring`` px, ignoring pixels where ``exclude`` is set.

    Falls back to the minimum of the box itself when nothing is left.
    """
    h, w = image.shape
    x1, y1, x2, y2 = (int(v) for v in box)
    r0, c0 = max(0, y1 - ring), max(0, x1 - ring)
    r1, c1 = min(h, max(y2, y1 + 1) + ring), min(w, max(x2, x1 + 1) + ring)
    values = image[r0:r1, c0:c1][~exclude[r0:r1, c0:c1]]
    if values.size:
        return float(np.median(values))
    inner = image[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)]
    return float(inner.min()) if inner.size else 0.0


@dataclass(frozen=True)
class BackgroundAwareCopyPaste:
    """BAG-CP as a transform: ``out = bagcp(sample, source, rng)``.

    Defaults reproduce the official behaviour (module docstring); :meth:`from_mode` gives
    the ``faithful``, ``improved`` and ``plain`` presets.

    Args:
        prob: probability of doing anything at all.
        placement: ``"sky_clusters"`` (BAG-CP) or ``"anywhere"`` (plain copy-paste: uniform
            positions in the whole image, no sky test, no clusters).
        blend: ``"gaussian"`` (``min(255, D + lambda G P)``), ``"add"`` (``min(255, D + lambda P)``,
            no Gaussian weighting) or ``"replace"`` (``P``).
        contrast: ``"raw"`` (P = source pixels) or ``"background_subtracted"``
            (P = source pixels minus the source target's local background, floored at 0).
        mask_from: ``"box"`` (the whole pasted rectangle is target) or ``"source_mask"``
            (the source's target-mask pixels inside it; box = their extent).
        max_num_pasted: at most ``max_num_pasted - 1`` targets are pasted per call.
        selected: paste a random subset (True) or every source target (False).
        cluster_size: targets per cluster window.
        window_size, window_shrink, window_attempts: the first window side, the shrink step
            and the number of sizes tried per cluster.
        max_tries: random positions tried per window / target / fallback.
        large_side, large_patch: patches with a side >= ``large_side`` are resized to
            ``large_patch`` x ``large_patch`` (``large_side=None`` keeps them).
        lam_range, sigma_range, max_shift: the Gaussian blending's random parameters.
        background_ring: ring width (px) for the source's local background.
    """

    prob: float = 1.0
    placement: Literal["sky_clusters", "anywhere"] = "sky_clusters"
    blend: Literal["gaussian", "add", "replace"] = "gaussian"
    contrast: Literal["raw", "background_subtracted"] = "raw"
    mask_from: Literal["box", "source_mask"] = "box"
    max_num_pasted: int = 100
    selected: bool = True
    cluster_size: int = 5
    window_size: int = 25
    window_shrink: int = 3
    window_attempts: int = 7
    max_tries: int = 102
    large_side: int | None = 10
    large_patch: int = 7
    lam_range: tuple[float, float] = (0.5, 1.0)
    sigma_range: tuple[float, float] = (0.3, 0.6)
    max_shift: float = 0.2
    background_ring: int = 3

    def __post_init__(self) -> None:
        checks = [
            (0.0 <= self.prob <= 1.0, "prob must be in [0, 1]"),
            (self.placement in ("sky_clusters", "anywhere"), f"unknown placement {self.placement!r}"),
            (self.blend in ("gaussian", "add", "replace"), f"unknown blend {self.blend!r}"),
            (self.contrast in ("raw", "background_subtracted"), f"unknown contrast {self.contrast!r}"),
            (self.mask_from in ("box", "source_mask"), f"unknown mask_from {self.mask_from!r}"),
            (self.max_num_pasted >= 1, "max_num_pasted must be >= 1"),
            (self.cluster_size >= 1, "cluster_size must be >= 1"),
            (self.window_size >= 1 and self.window_shrink >= 0, "window sizes must be positive"),
            (self.window_attempts >= 1 and self.max_tries >= 1, "attempts must be >= 1"),
            (self.large_patch >= 1, "large_patch must be >= 1"),
            (0 < self.lam_range[0] <= self.lam_range[1], "lam_range must be increasing and positive"),
            (0 < self.sigma_range[0] <= self.sigma_range[1], "sigma_range must be increasing and positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"BackgroundAwareCopyPaste: {message}")

    @classmethod
    def from_mode(cls, mode: str = "faithful", **overrides: Any) -> BackgroundAwareCopyPaste:
        """The ``faithful`` (official), ``improved`` or ``plain`` preset, with ``overrides``."""
        if mode not in _MODE_SETTINGS:
            raise ValueError(f"unknown BAG-CP mode {mode!r} (choose from {', '.join(MODES)})")
        return replace(cls(), **{**_MODE_SETTINGS[mode], **overrides})

    def __call__(self, sample: Sample, source: Sample, rng: np.random.Generator) -> Sample:
        return self.paste(sample, source, rng)[0]

    # ------------------------------------------------------------------------------ steps

    def _select(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if not self.selected or n == 0:
            return np.arange(n)
        k = int(rng.integers(0, min(n + 1, self.max_num_pasted)))
        return rng.choice(n, size=k, replace=False)

    def _patch(self, source: Sample, index: int, exclude: np.ndarray | None) -> _Patch | None:
        x1, y1, x2, y2 = (int(v) for v in source.boxes[index])
        x1, y1 = max(x1, 0), max(y1, 0)
        pixels = source.image[y1:y2, x1:x2]
        if pixels.size == 0:
            return None
        if exclude is not None:  # background-subtracted contrast
            background = local_background(source.image, source.boxes[index], exclude, self.background_ring)
            pixels = np.maximum(pixels - background, 0.0)
        mask = source.target_mask[y1:y2, x1:x2] > 0
        h, w = pixels.shape
        if self.large_side is not None and (h >= self.large_side or w >= self.large_side):
            pixels = _resize_patch(pixels, self.large_patch, "bilinear")
            mask = _resize_patch(mask, self.large_patch, "nearest") > 0.5
        if self.mask_from == "box" or not mask.any():
            mask = np.ones(pixels.shape, dtype=bool)
        return _Patch(pixels.astype(np.float32), mask, index)

    def _find_window(
        self, canvas: _Canvas, rng: np.random.Generator, side: int
    ) -> tuple[tuple[int, int, int] | None, int]:
        """A free window ``(row, col, side)`` or None, and the side to start from next time."""
        for _ in range(self.window_attempts):
            if side >= 1:
                rows, cols = canvas.random_sky_pixels(rng, self.max_tries)
                rows = np.minimum(rows, canvas.height - side)
                cols = np.minimum(cols, canvas.width - side)
                k = _first(canvas.free_windows(rows, cols, side))
                if k is not None:
                    return (int(rows[k]), int(cols[k]), side), side
            side -= self.window_shrink
        return None, self.window_size

    def _position(
        self, canvas: _Canvas, rng: np.random.Generator, h: int, w: int, window: tuple[int, int, int] | None
    ) -> tuple[int, int, bool] | None:
        """Top-left (row, col) for an h x w patch and whether it is inside the window, or None."""
        n = self.max_tries
        if self.placement == "anywhere":
            if h > canvas.height or w > canvas.width:
                return None
            rows = rng.integers(0, canvas.height - h + 1, size=n)
            cols = rng.integers(0, canvas.width - w + 1, size=n)
            k = _first(canvas.fits(rows, cols, h, w, need_sky=False))
            return None if k is None else (int(rows[k]), int(cols[k]), False)
        if window is not None:
            top, left, side = window
            if side > h and side > w:
                rows = top + rng.integers(0, side - h, size=n)
                cols = left + rng.integers(0, side - w, size=n)
                k = _first(canvas.fits(rows, cols, h, w, need_sky=True))
                if k is not None:
                    return int(rows[k]), int(cols[k]), True
        rows, cols = canvas.random_sky_pixels(rng, n)  # fallback: anywhere in the sky
        k = _first(canvas.fits(rows, cols, h, w, need_sky=True))
        return None if k is None else (int(rows[k]), int(cols[k]), False)

    def _blend(
        self, before: np.ndarray, pixels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, float]:
        """Blend a target patch ``pixels`` onto the background ``before`` (both (h, w) float32);
        returns the new pixels and the intensity factor lambda drawn (1.0 for ``"replace"``)."""
        if self.blend == "replace":
            return pixels, 1.0
        lam = float(rng.uniform(*self.lam_range))
        if self.blend == "gaussian":
            h, w = pixels.shape
            weights = gaussian_weights(h, w, rng, self.sigma_range, self.max_shift)
            return np.minimum(255.0, before + lam * weights * pixels), lam
        return np.minimum(255.0, before + lam * pixels), lam

    def paste(
        self, sample: Sample, source: Sample, rng: np.random.Generator
    ) -> tuple[Sample, list[PasteRecord]]:
        """Paste source targets into ``sample``; returns the new sample and one record per paste.

        The input samples are not modified. Without sky (sky-aware placement), without source
        targets, or when the ``prob`` draw fails, ``sample`` itself is returned with no records.
        """
        if self.prob < 1.0 and rng.random() >= self.prob:
            return sample, []
        order = self._select(source.num_targets, rng)
        if len(order) == 0:
            return sample, []
        canvas = _Canvas(sample)
        if self.placement == "sky_clusters" and len(canvas.sky_pixels) == 0:
            return sample, []

        image = sample.image.astype(np.float32, copy=True)
        target_mask = sample.target_mask.copy()
        new_boxes: list[list[float]] = []
        new_points: list[list[float]] = []
        records: list[PasteRecord] = []
        side, window = self.window_size, None
        exclude = occupancy_map(source) if self.contrast == "background_subtracted" else None
        for i, index in enumerate(order):
            if self.placement == "sky_clusters" and i % self.cluster_size == 0:
                window, side = self._find_window(canvas, rng, side)
            patch = self._patch(source, int(index), exclude)
            if patch is None:
                continue  # zero-area box: nothing to paste
            h, w = patch.pixels.shape
            spot = self._position(canvas, rng, h, w, window)
            if spot is None:
                continue  # no valid place: dropped (official pastes it anyway)
            r, c, in_window = spot
            r1, c1 = min(r + h, canvas.height), min(c + w, canvas.width)
            canvas.add(r, c, r1, c1)
            hh, ww = r1 - r, c1 - c  # clipped at the image border (fallback only)
            pixels, mask = patch.pixels[:hh, :ww], patch.mask[:hh, :ww]
            before = image[r:r1, c:c1]
            after, lam = self._blend(before, pixels, rng)
            peak_gain = float((after - before).max())
            image[r:r1, c:c1] = after
            if not mask.any():
                mask = np.ones_like(mask)
            target_mask[r:r1, c:c1] |= mask.astype(np.uint8)
            rows, cols = np.nonzero(mask)
            box = (c + cols.min(), r + rows.min(), c + cols.max() + 1, r + rows.max() + 1)
            new_boxes.append([float(v) for v in box])
            new_points.append([c + math.floor(cols.mean()) + 0.5, r + math.floor(rows.mean()) + 0.5])
            records.append(
                PasteRecord(
                    box=tuple(float(v) for v in box),
                    source_id=source.image_id,
                    source_index=patch.index,
                    group=i // self.cluster_size if self.placement == "sky_clusters" else i,
                    in_window=in_window,
                    lam=lam,
                    peak_gain=peak_gain,
                )
            )
        if not records:
            return sample, []
        out = derive(
            sample,
            image=image,
            target_mask=target_mask,
            boxes=np.concatenate([sample.boxes, np.asarray(new_boxes, dtype=np.float32)]),
            points=np.concatenate([sample.points, np.asarray(new_points, dtype=np.float32)]),
        )
        return out, records
