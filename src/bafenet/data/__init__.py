"""Datasets and data tools. :func:`open_dataset` is how every command opens a dataset folder.

The readers are imported inside the functions so that ``import bafenet.data.sample`` stays
cheap (no scipy import) for code that only needs the sample type.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bafenet.errors import DataError

if TYPE_CHECKING:
    from bafenet.data.densesirst import DenseSIRST
    from bafenet.data.maskset import MaskDataset

__all__ = ["available_splits", "is_devkit", "open_dataset"]


def is_devkit(root: str | Path) -> bool:
    """True for a DenseSIRST devkit layout (a ``PNGImages/`` folder)."""
    return (Path(root) / "PNGImages").is_dir()


def open_dataset(
    root: str | Path, split: str | Path | None = None, cache: bool = False
) -> DenseSIRST | MaskDataset:
    """Open a dataset folder: a DenseSIRST devkit (has ``PNGImages/``) or a mask-only IRSTD set.

    Args:
        root: the dataset folder.
        split: a split name, a path to a ``.txt`` list, or ``None`` for every image.
        cache: keep decoded arrays in memory after the first read.

    Raises:
        DataError: the folder is missing or not a dataset, or the split is unknown.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    if is_devkit(root):
        from bafenet.data.densesirst import DenseSIRST

        return DenseSIRST(root, split=split, cache=cache)
    from bafenet.data.maskset import MaskDataset

    return MaskDataset(root, split=split, cache=cache)


def available_splits(root: str | Path) -> list[str]:
    """The split names a dataset folder offers (devkit ``Splits/`` or a mask set's lists)."""
    if is_devkit(root):
        from bafenet.data.densesirst import available_splits as devkit_splits

        return devkit_splits(root)
    from bafenet.data.maskset import available_splits as mask_splits

    return mask_splits(root)
