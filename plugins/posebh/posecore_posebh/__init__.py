"""posecore-posebh: PoseBH (CVPR 2025) multi-dataset training with keypoint prototypes, and ViTPose++.

posecore imports ``posecore_posebh.plugin`` (and so this package) whenever it lists plugins, so
nothing here imports torch: the classes load on first access.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("posecore-posebh")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_EXPORTS = {
    "ViTMoE": "vit_moe",
    "ExpertMlp": "vit_moe",
    "merge_expert": "vit_moe",
    "read_moe_shapes": "vit_moe",
    "PrototypeHead": "proto_head",
    "KeypointPrototypes": "prototypes",
    "ClusterPrototypes": "prototypes",
    "cluster_prototypes": "prototypes",
    "PoseBHModel": "model",
    "PoseBHTransferModel": "model",
    "KeypointSubset": "datasets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'posecore_posebh' has no attribute {name!r}")
    return getattr(importlib.import_module(f"posecore_posebh.{module}"), name)
