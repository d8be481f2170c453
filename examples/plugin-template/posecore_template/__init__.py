"""posecore-template: a minimal posecore plugin to copy when starting your own.

posecore imports ``posecore_template.plugin`` (and therefore this package) every time it lists
plugins, so nothing here may import torch: the model classes are loaded on first access.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TinyConvBackbone", "TinyHeatmapHead"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from posecore_template import models

        return getattr(models, name)
    raise AttributeError(f"module 'posecore_template' has no attribute {name!r}")
