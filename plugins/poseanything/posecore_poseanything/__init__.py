"""posecore-poseanything: Pose Anything, category-agnostic pose with a graph transformer decoder (ECCV 2024).

posecore imports ``posecore_poseanything.plugin`` (and so this package) whenever it lists plugins,
so nothing here imports torch: the public names below load on first access.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("posecore-poseanything")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_EXPORTS = {
    "Category": "category",
    "FewShotPose": "predictor",
    "PoseAnything": "model",
    "SwinV2Backbone": "swinv2",
    "category_from_files": "category",
    "convert_original": "model",
    "load_category": "category",
    "load_poseanything": "predictor",
    "save_category": "category",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'posecore_poseanything' has no attribute {name!r}")
    return getattr(importlib.import_module(f"posecore_poseanything.{module}"), name)
