"""The core's codec declarations (torch-free: read when plugins load)."""

from __future__ import annotations

from posecore._components import Component

__all__ = ["CODECS"]

CODECS: list[Component] = [
    Component(
        "msra_heatmap",
        "posecore.codecs._heatmap:MSRAHeatmap",
        "Gaussian heatmaps at stride input/heatmap; argmax + quarter-pixel shift, or DARK (unbiased=True)",
        example={"input_size": (48, 64), "heatmap_size": (24, 32), "sigma": 2.0},
    ),
    Component(
        "udp_heatmap",
        "posecore.codecs._heatmap:UDPHeatmap",
        "UDP Gaussian heatmaps at stride (input-1)/(heatmap-1), decoded with DARK-UDP",
        example={"input_size": (48, 64), "heatmap_size": (24, 32), "sigma": 2.0},
    ),
    Component(
        "keypoint_regression",
        "posecore.codecs._regression:KeypointRegression",
        "keypoints as fractions of the input crop (PoseAnything, CapeFormer)",
        example={"input_size": (64, 64)},
    ),
]
