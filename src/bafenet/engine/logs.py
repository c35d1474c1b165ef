"""Training logs: CSV files, TensorBoard events and PNG curves in the run folder."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from bafenet.fileio import atomic_path

# the validation metrics drawn in metric_curves.png (epochs.csv holds every numeric metric)
CURVE_METRICS = ("mAP07", "mAP12", "strict_mAP07", "recall", "irstd_pd", "sky_iou")


class RunLogger:
    """Writes ``iters.csv`` (per logged iteration), ``epochs.csv`` (per epoch) and TensorBoard events.

    Only the main process should create one with ``enabled=True``; a disabled logger
    does nothing, so callers need no rank checks.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a dependency, but stay usable without it
                self._writer = None

    def _append(self, name: str, row: dict[str, Any]) -> None:
        """Append a row; rewrite the file (atomically) only when the columns change."""
        path = self.run_dir / name
        header = _header(path)
        if header == list(row):
            with open(path, "a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=header).writerow(row)
            return
        rows = read_csv(path) + [{k: str(v) for k, v in row.items()}]
        _rewrite(path, rows)

    def log_iter(self, step: int, values: dict[str, float]) -> None:
        """One row of training scalars at global iteration ``step``."""
        if not self.enabled:
            return
        self._append("iters.csv", {"step": step, **values})
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(f"train/{key}", value, step)

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        """One row of epoch-level values (mean losses, validation metrics)."""
        if not self.enabled:
            return
        self._append("epochs.csv", {"epoch": epoch, **values})
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(f"epoch/{key}", value, epoch)
            self._writer.flush()

    def truncate_after(self, epoch: int, step: int) -> None:
        """Keep only the rows of epochs ``<= epoch`` and global steps ``<= step``.

        Used when resuming from a checkpoint taken after ``epoch`` completed epochs and
        ``step`` iterations: the rows that the interrupted run logged after it (and a row
        torn by a kill while it was being written) go, so every epoch and step is logged
        once when the run continues.
        """
        if not self.enabled:
            return
        for name, key, limit in (("epochs.csv", "epoch", epoch), ("iters.csv", "step", step)):
            path = self.run_dir / name
            if path.exists():
                _rewrite(path, [r for r in read_csv(path) if _number(r.get(key)) <= limit])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts (empty list when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def plot_curves(run_dir: str | Path) -> list[Path]:
    """Draw loss curves (per iteration) and validation metrics (per epoch) as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    written: list[Path] = []
    for name, xkey, title, out in (
        ("iters.csv", "step", "training losses", "loss_curves.png"),
        ("epochs.csv", "epoch", "validation metrics", "metric_curves.png"),
    ):
        rows = read_csv(run_dir / name)
        if not rows:
            continue
        keys = [k for k in rows[0] if k != xkey and _numeric(rows, k)]
        if name == "iters.csv":
            keys = [k for k in keys if k.startswith("loss")]
        else:
            keys = [k for k in keys if k in CURVE_METRICS]
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        xs = [float(r[xkey]) for r in rows]
        for key in keys:
            ys = [float(r[key]) if r.get(key) not in ("", None) else math.nan for r in rows]
            ax.plot(xs, ys, label=key)
        ax.set_xlabel(xkey)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_path(run_dir / out) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        written.append(run_dir / out)
    return written


def _numeric(rows: list[dict[str, str]], key: str) -> bool:
    try:
        for r in rows:
            if r.get(key) not in ("", None):
                float(r[key])
        return True
    except ValueError:
        return False


def _number(text: str | None) -> float:
    """``text`` as a number; +inf for an empty or unreadable cell (a torn row)."""
    try:
        return float(text) if text else math.inf
    except ValueError:
        return math.inf


def _header(path: Path) -> list[str] | None:
    if not path.exists():
        return None
    with open(path, newline="") as fh:
        return next(csv.reader(fh), None)


def _rewrite(path: Path, rows: list[dict[str, str]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in keys})
