"""Datasets and data tools. :func:`open_dataset` is how every command opens a dataset folder.

The readers are imported inside the functions so that ``import bafenet.data.sample`` stays
cheap (no scipy import) for code that only needs the sample type.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bafenet.config import DataConfig
    from bafenet.data.densesirst import DenseSIRST
    from bafenet.data.maskset import MaskDataset

__all__ = ["available_splits", "is_devkit", "open_dataset", "open_for_run"]


def is_devkit(root: str | Path) -> bool:
    """True for a DenseSIRST devkit layout (a ``PNGImages/`` folder)."""
    return (Path(root) / "PNGImages").is_dir()


def open_dataset(
    root: str | Path,
    split: str | Path | None = None,
    cache: bool = False,
    *,
    layout: str | None = None,
    images: str | Path | None = None,
    masks: str | Path | None = None,
    boxes: Literal["masks", "files"] = "masks",
) -> DenseSIRST | MaskDataset:
    """Open a dataset folder: a DenseSIRST devkit or a mask-only IRSTD set (SIRST-V2, SIRST v1,
    NUDT-SIRST, IRSTD-1k, or any image + mask folders), see :mod:`bafenet.data.layouts`.

    Args:
        root: the dataset folder.
        split: a split name, a path to a ``.txt`` list, or ``None`` for every image.
        cache: keep decoded arrays in memory after the first read.
        layout: a layout name to use instead of detecting it.
        images, masks: the image and mask folders (absolute or relative to ``root``), for a
            layout that is not detected.
        boxes: mask sets: boxes of the mask components (``"masks"``) or from the layout's box
            files (``"files"``).

    Raises:
        DataError: the folder is missing or not a dataset, or the split is unknown.
    """
    from bafenet.data.layouts import detect_layout

    root = Path(root).expanduser()
    found = detect_layout(root, layout, images, masks)
    if found.is_devkit:
        from bafenet.data.densesirst import DenseSIRST

        return DenseSIRST(root, split=split, cache=cache)
    from bafenet.data.maskset import MaskDataset

    return MaskDataset(root, split=split, cache=cache, layout=found, boxes=boxes)


def available_splits(root: str | Path) -> list[str]:
    """The split names a dataset folder offers (devkit ``Splits/`` or a mask set's lists)."""
    if is_devkit(root):
        from bafenet.data.densesirst import available_splits as devkit_splits

        return devkit_splits(root)
    from bafenet.data.maskset import available_splits as mask_splits

    return mask_splits(root)


def dataset_location(
    root: str | Path | None, images: str | Path | None = None, masks: str | Path | None = None
) -> tuple[Path, Path | None, Path | None]:
    """The dataset folder, image folder and mask folder named by ``root``, ``images``, ``masks``.

    ``root`` is looked up as :func:`bafenet.paths.resolve_data_root` does (None: the
    environment, then the cache), unless ``images`` / ``masks`` are given: then the root is
    ``root`` as it is, or, without one, the folder holding both (relative folders are then
    taken from the cwd).
    """
    from bafenet.paths import resolve_data_root

    if images is None and masks is None:
        return resolve_data_root(root), None, None
    if root is not None:
        return Path(root).expanduser(), _path(images), _path(masks)
    images, masks = _absolute(images), _absolute(masks)
    given = [str(path) for path in (images, masks) if path is not None]
    return Path(os.path.commonpath(given)), images, masks


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value).expanduser()


def _absolute(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value).expanduser().resolve()


def open_for_run(
    data: DataConfig, split: str, progress: bool = True
) -> tuple[DenseSIRST | MaskDataset, list[str]]:
    """Open a split as training and evaluation do: ``data``'s layout settings, then every sample
    read once (``progress``: a bar); an invalid one is refused, or left out with ``data.skip_invalid``.

    Returns:
        The dataset and one line per left-out sample (see :func:`bafenet.data.screen.screen_samples`).
    """
    from bafenet.data.screen import screen_samples

    root, images, masks = dataset_location(data.root, data.images, data.masks)
    dataset = open_dataset(
        root,
        split,
        cache=data.cache,
        layout=data.layout,
        images=images,
        masks=masks,
        boxes=data.boxes,
    )
    return dataset, screen_samples(dataset, split, skip_invalid=data.skip_invalid, progress=progress)
