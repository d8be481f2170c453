"""Models: the :class:`PoseModel` contract and the core's general components.

The backbones and heads are imported on first use: ``posecore.models.ViT`` pulls in timm, which
code that only needs the contract should not pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from posecore._lazy import lazy_exports
from posecore.models._base import Batch, ImageNormalizer, PoseModel, PoseResult, batch_flip_indices, predict_heatmaps

if TYPE_CHECKING:
    from posecore.models._attention import attention
    from posecore.models._heads import HeatmapDeconvHead, HeatmapSimpleHead
    from posecore.models._topdown import TopdownHeatmapModel
    from posecore.models._vit import VIT_ARCHS, ViT

_EXPORTS = {
    "attention": "posecore.models._attention",
    "HeatmapDeconvHead": "posecore.models._heads",
    "HeatmapSimpleHead": "posecore.models._heads",
    "TopdownHeatmapModel": "posecore.models._topdown",
    "VIT_ARCHS": "posecore.models._vit",
    "ViT": "posecore.models._vit",
}

__all__ = [
    "VIT_ARCHS",
    "Batch",
    "HeatmapDeconvHead",
    "HeatmapSimpleHead",
    "ImageNormalizer",
    "PoseModel",
    "PoseResult",
    "TopdownHeatmapModel",
    "ViT",
    "attention",
    "batch_flip_indices",
    "predict_heatmaps",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
