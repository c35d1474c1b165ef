"""Evaluation metrics (numpy only, no model imports): VOC AP, IRSTD Pd / false alarms, sky IoU."""

from bafenet.metrics.irstd import TargetLevelEvaluator
from bafenet.metrics.seg import SkyIoU
from bafenet.metrics.voc import DetectionEvaluator

__all__ = ["DetectionEvaluator", "SkyIoU", "TargetLevelEvaluator"]
