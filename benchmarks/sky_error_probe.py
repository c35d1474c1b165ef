"""Probe: where the whole-frame sky map errs, and what its resolution allows (evaluation only).

For finished sky-context runs (``benchmarks/work/budget_hr/<run>/last.pt``) it scores, on every
``val_v2`` frame fed at the run's evaluation geometry (x2), against the native annotation:

* ``context``: the whole-frame sky alone, the context network's finest logits (stride 4 on the
  input scaled to long side 256) resampled onto the frame's native pixels as the detector
  resamples them (:func:`bafenet.models.context.resample_context`), thresholded at 0.5;
* ``ceiling``: the same resampling applied to the *annotation* read at the context cells
  (1 sky, 0 not, ignored cells left out of the average): the best any sky map of that grid can
  do, so the part of the error owed to resolution alone;

both as sky IoU over the whole set (the confusion summed over frames, as ``bafenet val``), by
frame size, and with the wrong pixels split by direction (called sky on annotated non-sky, or
the reverse) and by their distance to the annotated sky boundary (at most 8, 8-32, over 32
native pixels). Writes ``benchmarks/results/sky_error_probe/<run>.json``
(skipped when there) and the table of every probed run to ``benchmarks/results/sky_error_probe.md``.

    python benchmarks/sky_error_probe.py fcos_seg_hr_own_s0 fcos_seg_hr_own_s1 --data DEVKIT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from bafenet.data import open_dataset
from bafenet.data.collate import collate_samples
from bafenet.data.sample import SKY
from bafenet.engine.inference import EvalGeometry, load_trained_model
from bafenet.fileio import write_json, write_text
from bafenet.metrics import SkyIoU
from bafenet.models.context import resample_context, whole_image_context

WORK = "benchmarks/work/budget_hr"
RESULTS = Path("benchmarks/results/sky_error_probe")
BANDS = ((0.0, 8.0), (8.0, 32.0), (32.0, float("inf")))  # native pixels from the annotated boundary
SMALL_LONG_SIDE = 640  # the budget tables' small / large split


def sky_iou(pred: np.ndarray, annotated: np.ndarray) -> float:
    """Sky IoU of one boolean sky map against a 0 / 1 / 255 annotation."""
    metric = SkyIoU()
    metric.add(pred, annotated)
    return metric.compute()["sky_iou"]


def boundary_distance(annotated: np.ndarray) -> np.ndarray:
    """(H, W) distance in pixels of each pixel to the nearest pixel of the other class
    (sky vs not sky; ignored pixels count as neither)."""
    sky = annotated == SKY
    ground = (annotated != SKY) & (annotated != 255)
    if not sky.any() or not ground.any():
        return np.full(annotated.shape, np.inf)
    return np.where(sky, ndimage.distance_transform_edt(~ground), ndimage.distance_transform_edt(~sky))


@torch.no_grad()
def frame_maps(model: torch.nn.Module, transformed, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (H / scale, W / scale) maps on the native pixels of an input ``transformed``
    (H, W) scaled ``scale`` times: the context network's sky and the annotation's ceiling at the
    context grid (see the module). Native pixel ``p`` is input pixel ``scale p``, as a sky cell
    of stride ``scale`` on the input."""
    images, _ = collate_samples([transformed])
    size = (transformed.height, transformed.width)
    native = (transformed.height // scale, transformed.width // scale)
    context = whole_image_context(images, model.context_size, [size])
    logits = model.context_sky(context.images)[0]  # (1, 1, h_c / stride, w_c / stride)
    stride = model.strides[0]
    prob = resample_context(logits.sigmoid(), context, native, scale, stride)[0, 0]
    grid = _annotation_grid(transformed.sky_mask, tuple(context.images.shape[-2:]), stride)
    ceiling = resample_context(grid[None, None], context, native, scale, stride)[0, 0]
    return prob.numpy() > 0.5, ceiling.numpy() > 0.5


def _annotation_grid(sky_mask: np.ndarray, context_shape: tuple[int, int], stride: int) -> torch.Tensor:
    """The annotation read at each context cell (the pixel it sits on, nearest), as 0 / 1, with
    ignored cells set to 0.5 (neither side)."""
    (h_c, w_c), (h, w) = context_shape, sky_mask.shape
    rows = np.minimum(((np.arange(0, h_c, stride) + 0.5) * h / h_c).astype(int), h - 1)
    cols = np.minimum(((np.arange(0, w_c, stride) + 0.5) * w / w_c).astype(int), w - 1)
    cell = sky_mask[np.ix_(rows, cols)]
    return torch.from_numpy(np.where(cell == 255, 0.5, (cell == SKY).astype(np.float32))).float()


def probe(run: str, data: str, work: str) -> dict:
    """Sky IoU of the context sky and of its grid's ceiling on val_v2, with the error by
    boundary distance and by frame size (see the module)."""
    model, cfg, _ = load_trained_model(f"{work}/{run}/last.pt", torch.device("cpu"))
    if getattr(model, "context_size", None) is None:
        raise SystemExit(f"{run}: not a sky-context model")
    model.eval()
    geometry = EvalGeometry.from_config(cfg)
    val = open_dataset(data, "val_v2")
    parts = {"all": {}, "small": {}, "large": {}}
    for i in tqdm(range(len(val)), desc=run, unit="img"):
        sample = val[i]
        transformed = geometry.transform(sample)
        scale = round(transformed.width / sample.width)
        if transformed.width != scale * sample.width or transformed.height != scale * sample.height:
            raise SystemExit(f"{run}: the probe needs an integer evaluation scale")
        maps = dict(zip(("context", "ceiling"), frame_maps(model, transformed, scale), strict=True))
        distance = boundary_distance(sample.sky_mask)
        size = "small" if max(sample.height, sample.width) <= SMALL_LONG_SIDE else "large"
        for name, pred in maps.items():
            for part in ("all", size):
                _add(parts[part].setdefault(name, _empty()), pred, sample.sky_mask, distance)
    return {"run": run, "images": len(val), **{p: _summary(acc) for p, acc in parts.items()}}


def _empty() -> dict:
    return {"sky": SkyIoU(), "wrong_by_band": np.zeros(len(BANDS), np.int64)}


def _add(acc: dict, pred: np.ndarray, annotated: np.ndarray, distance: np.ndarray) -> None:
    acc["sky"].add(pred, annotated)
    wrong = (pred != (annotated == SKY)) & (annotated != 255)
    for k, (lo, hi) in enumerate(BANDS):
        acc["wrong_by_band"][k] += np.sum(wrong & (distance > lo) & (distance <= hi))


def _summary(acc: dict) -> dict:
    out = {}
    for name, a in acc.items():
        wrong, confusion = a["wrong_by_band"].sum(), a["sky"].confusion  # [annotated, predicted]
        out[name] = {
            "sky_iou": a["sky"].compute()["sky_iou"],
            "wrong_pixel_share": float(wrong / confusion.sum()),
            "false_sky_share": float(confusion[0, 1] / wrong) if wrong else 0.0,
            "wrong_share_by_boundary_distance": {
                f"{lo:.0f}-{hi:.0f}": float(n / wrong) if wrong else 0.0
                for (lo, hi), n in zip(BANDS, a["wrong_by_band"], strict=True)
            },
        }
    return out


def _model_sky_iou(run: str) -> str:
    """The run's full sky map IoU from its budget record (``bafenet val``'s), or a dash."""
    path = Path("benchmarks/results/budget_hr") / f"{run}.json"
    iou = json.loads(path.read_text())["metrics"].get("sky_iou") if path.exists() else None
    return "—" if iou is None else f"{iou:.3f}"


def table(records: list[dict]) -> str:
    """One row per probed run: context sky and ceiling, overall and by frame size."""
    bands = " / ".join(f"{lo:.0f}-{hi:.0f}" for lo, hi in BANDS)
    lines = [
        "# Whole-frame sky: error and resolution ceiling (val_v2)",
        "",
        "`python benchmarks/sky_error_probe.py RUN --data DEVKIT`: sky IoU of the model's sky map",
        "(its budget record), of the context network's sky alone, and of the annotation read at the",
        "context grid (the ceiling), on native pixels; the context sky's wrong pixels, the share of",
        f"them called sky on annotated non-sky, and by distance to the annotated boundary ({bands} px).",
        "",
        "| run | model sky IoU | context sky IoU (small / large) | ceiling IoU (small / large)"
        " | context: wrong pixels | called sky | by distance |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        c, g, small, large = r["all"]["context"], r["all"]["ceiling"], r["small"], r["large"]
        by_band = " / ".join(f"{100 * v:.0f} %" for v in c["wrong_share_by_boundary_distance"].values())
        lines.append(
            f"| {r['run']} | {_model_sky_iou(r['run'])} | {c['sky_iou']:.3f} "
            f"({small['context']['sky_iou']:.3f} / {large['context']['sky_iou']:.3f}) | {g['sky_iou']:.3f} "
            f"({small['ceiling']['sky_iou']:.3f} / {large['ceiling']['sky_iou']:.3f}) "
            f"| {100 * c['wrong_pixel_share']:.1f} % | {100 * c['false_sky_share']:.0f} % | {by_band} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="finished sky-context runs under --work")
    parser.add_argument("--data", required=True, help="the SIRSTdevkit folder")
    parser.add_argument("--work", default=WORK)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for run in args.runs:
        path = RESULTS / f"{run}.json"
        if not path.exists():
            write_json(path, probe(run, args.data, args.work))
    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    write_text(RESULTS.parent / "sky_error_probe.md", table(records))
    print(table(records))


if __name__ == "__main__":
    main()
