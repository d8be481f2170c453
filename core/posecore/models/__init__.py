"""Models: the :class:`PoseModel` contract and the core's general components.

The backbones and heads are imported on first use: ``posecore.models.ViT`` pulls in timm, which
code that only needs the contract should not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from posecore.models._base import Batch, ImageNormalizer, PoseModel, PoseResult, batch_flip_indices

if TYPE_CHECKING:
    from posecore.models._heads import HeatmapDeconvHead, HeatmapSimpleHead
    from posecore.models._topdown import TopdownHeatmapModel
    from posecore.models._vit import VIT_ARCHS, ViT

_EXPORTS = {
    "HeatmapDeconvHead": "heads",
    "HeatmapSimpleHead": "heads",
    "TopdownHeatmapModel": "topdown",
    "VIT_ARCHS": "vit",
    "ViT": "vit",
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
    "batch_flip_indices",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'posecore.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"posecore.models._{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
