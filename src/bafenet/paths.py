"""Where data lives: ``--data``, then ``$BAFENET_DATA``, then the cache directory."""

from __future__ import annotations

import os
from pathlib import Path

from bafenet.errors import BafenetError

ENV_VAR = "BAFENET_DATA"


def cache_dir() -> Path:
    """The per-user cache directory (``$XDG_CACHE_HOME/bafenet`` or ``~/.cache/bafenet``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bafenet"


def find_devkit(folder: Path) -> Path | None:
    """Return the DenseSIRST devkit folder at or below ``folder``, if there is one.

    Accepted: the devkit itself (it holds ``PNGImages/``), ``folder/SIRSTdevkit`` or
    ``folder/DenseSIRST/SIRSTdevkit`` (the layout ``bafenet data download`` writes).
    A mask-only IRSTD folder (any layout of :mod:`bafenet.data.layouts`) is returned as is.
    """
    from bafenet.data.layouts import find_layout

    for candidate in (folder, folder / "SIRSTdevkit", folder / "DenseSIRST" / "SIRSTdevkit"):
        if (candidate / "PNGImages").is_dir():
            return candidate
    if folder.is_dir() and find_layout(folder) is not None:
        return folder
    return None


def resolve_data_root(data: str | Path | None) -> Path:
    """Find the dataset: the explicit argument, then ``$BAFENET_DATA``, then the cache dir.

    Raises:
        BafenetError: naming the three ways when none of them holds a dataset.
    """
    tried: list[str] = []
    if data is not None:
        folder = Path(data).expanduser()
        found = find_devkit(folder)
        if found is None:
            from bafenet.data.layouts import NO_LAYOUT_HINT

            raise BafenetError(f"{folder}: no dataset found there ({NO_LAYOUT_HINT})")
        return found
    env = os.environ.get(ENV_VAR)
    if env:
        found = find_devkit(Path(env).expanduser())
        if found is not None:
            return found
        tried.append(f"${ENV_VAR}={env} holds no dataset")
    found = find_devkit(cache_dir())
    if found is not None:
        return found
    tried.append(f"{cache_dir()} holds no dataset")
    raise BafenetError(
        "no dataset given. Pass it with --data DIR (or as the ROOT argument), set "
        f"${ENV_VAR}=DIR, or download it into the cache dir {cache_dir()} with "
        "'bafenet data download densesirst'. (" + "; ".join(tried) + ")"
    )
