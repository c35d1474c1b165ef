"""bafenet: clustered infrared small target detection with background semantics.

``bafenet.Detector`` and ``bafenet.Result`` (:mod:`bafenet.api`) are imported on first use,
so ``import bafenet`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Detector", "Result", "__version__"]

if TYPE_CHECKING:
    from bafenet.api import Detector, Result


def __getattr__(name: str) -> Any:
    if name in ("Detector", "Result"):
        from bafenet import api

        return getattr(api, name)
    raise AttributeError(f"module 'bafenet' has no attribute {name!r}")
