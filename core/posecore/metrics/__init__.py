"""Metrics: COCO OKS AP/AR, PCKh, PCK, AUC, EPE and NME over per-instance results.

Every metric follows :class:`Metric` (``reset`` / ``update`` / ``compute``) and documents its
result table in its docstring. Importing this package imports numpy only.
"""

from posecore.metrics._base import InstanceResult, Metric, ResultBuffer, instance_key
from posecore.metrics._coco_ap import CocoAPMetric
from posecore.metrics._coco_eval import evaluate_oks
from posecore.metrics._keypoint_distance import AUCMetric, EPEMetric, MpiiPCKhMetric, NMEMetric, PCKMetric
from posecore.metrics._oks import oks_nms

__all__ = [
    "AUCMetric",
    "CocoAPMetric",
    "EPEMetric",
    "InstanceResult",
    "Metric",
    "MpiiPCKhMetric",
    "NMEMetric",
    "PCKMetric",
    "ResultBuffer",
    "evaluate_oks",
    "instance_key",
    "oks_nms",
]
