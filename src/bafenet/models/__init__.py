"""BAFE-Net and its ablations: ``build_model(name, **switches)``; see ``docs/model.md``."""

from bafenet.models.detector import FCOSDetector
from bafenet.models.zoo import build_model, list_models

__all__ = ["FCOSDetector", "build_model", "list_models"]
