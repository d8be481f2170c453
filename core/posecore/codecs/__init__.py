"""Codecs: keypoints -> training targets (``encode``) and network outputs -> keypoints (``decode``).

The names below are imported on first use, so that reading :mod:`posecore.codecs._catalog` while
plugins load does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from posecore._lazy import lazy_exports

if TYPE_CHECKING:
    from posecore.codecs._base import Codec
    from posecore.codecs._flip import average_flipped, flip_heatmaps, flip_keypoints
    from posecore.codecs._gaussian import msra_gaussian_heatmaps, udp_gaussian_heatmaps
    from posecore.codecs._heatmap import MSRAHeatmap, UDPHeatmap, heatmap_argmax, heatmap_maxima
    from posecore.codecs._refine import dark_refine, dark_udp_refine, gaussian_blur, quarter_pixel_shift
    from posecore.codecs._regression import KeypointRegression

_EXPORTS = {
    "Codec": "posecore.codecs._base",
    "KeypointRegression": "posecore.codecs._regression",
    "MSRAHeatmap": "posecore.codecs._heatmap",
    "UDPHeatmap": "posecore.codecs._heatmap",
    "average_flipped": "posecore.codecs._flip",
    "dark_refine": "posecore.codecs._refine",
    "dark_udp_refine": "posecore.codecs._refine",
    "flip_heatmaps": "posecore.codecs._flip",
    "flip_keypoints": "posecore.codecs._flip",
    "gaussian_blur": "posecore.codecs._refine",
    "heatmap_argmax": "posecore.codecs._heatmap",
    "heatmap_maxima": "posecore.codecs._heatmap",
    "msra_gaussian_heatmaps": "posecore.codecs._gaussian",
    "quarter_pixel_shift": "posecore.codecs._refine",
    "udp_gaussian_heatmaps": "posecore.codecs._gaussian",
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


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
