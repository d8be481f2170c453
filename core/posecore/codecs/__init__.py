"""Codecs: keypoints -> training targets (``encode``) and network outputs -> keypoints (``decode``).

The names below are imported on first use, so that reading :mod:`posecore.codecs._catalog` while
plugins load does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from posecore.codecs._base import Codec
    from posecore.codecs._flip import average_flipped, flip_heatmaps, flip_keypoints
    from posecore.codecs._gaussian import msra_gaussian_heatmaps, udp_gaussian_heatmaps
    from posecore.codecs._heatmap import MSRAHeatmap, UDPHeatmap, heatmap_argmax, heatmap_maxima
    from posecore.codecs._refine import dark_refine, dark_udp_refine, gaussian_blur, quarter_pixel_shift
    from posecore.codecs._regression import KeypointRegression

_EXPORTS = {
    "Codec": "base",
    "KeypointRegression": "regression",
    "MSRAHeatmap": "heatmap",
    "UDPHeatmap": "heatmap",
    "average_flipped": "flip",
    "dark_refine": "refine",
    "dark_udp_refine": "refine",
    "flip_heatmaps": "flip",
    "flip_keypoints": "flip",
    "gaussian_blur": "refine",
    "heatmap_argmax": "heatmap",
    "heatmap_maxima": "heatmap",
    "msra_gaussian_heatmaps": "gaussian",
    "quarter_pixel_shift": "refine",
    "udp_gaussian_heatmaps": "gaussian",
}

__all__ = [
    "Codec",
    "KeypointRegression",
    "MSRAHeatmap",
    "UDPHeatmap",
    "average_flipped",
    "dark_refine",
    "dark_udp_refine",
    "flip_heatmaps",
    "flip_keypoints",
    "gaussian_blur",
    "heatmap_argmax",
    "heatmap_maxima",
    "msra_gaussian_heatmaps",
    "quarter_pixel_shift",
    "udp_gaussian_heatmaps",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'posecore.codecs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"posecore.codecs._{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
