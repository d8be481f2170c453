"""Heatmap heads provided by the core."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from posecore.codecs import heatmap_argmax

__all__ = ["HeatmapDeconvHead"]


class HeatmapDeconvHead(nn.Module):
    """The SimpleBaseline / ViTPose "classic" head: stride-2 deconvolutions with BN + ReLU, then a
    1x1 convolution to one heatmap per keypoint.

    Args:
        in_channels: channels of the backbone feature map.
        num_keypoints: K, the number of heatmaps.
        deconv_channels: output channels of each deconvolution (their count sets the upsampling).
        deconv_kernel: 4 (padding 1), 3 (padding 1, output padding 1) or 2 (no padding).
        input_stride: the feature map's stride w.r.t. the input image, used to express decoded
            keypoints in input pixels.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        deconv_channels: Sequence[int] = (256, 256),
        deconv_kernel: int = 4,
        input_stride: int = 16,
    ) -> None:
        super().__init__()
        padding, output_padding = {4: (1, 0), 3: (1, 1), 2: (0, 0)}.get(deconv_kernel, (None, None))
        if padding is None:
            raise ValueError(f"HeatmapDeconvHead.deconv_kernel must be one of 2, 3, 4; got {deconv_kernel}")
        layers: list[nn.Module] = []
        channels = in_channels
        for out in deconv_channels:
            layers += [
                nn.ConvTranspose2d(channels, out, deconv_kernel, stride=2, padding=padding,
                                   output_padding=output_padding, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels, num_keypoints, kernel_size=1)
        self.in_channels = in_channels
        self.num_keypoints = num_keypoints
        self.heatmap_stride = input_stride / 2 ** len(deconv_channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, C, h, w) -> heatmaps (B, K, h * 2^n, w * 2^n)."""
        return self.final_layer(self.deconv_layers(features))

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap maxima in input pixels: keypoints (B, K, 2), scores (B, K).

        Sub-pixel refinement (quarter-pixel shift, DARK, UDP) belongs to the codecs.
        """
        coords, scores = heatmap_argmax(heatmaps)
        return (coords + 0.5) * self.heatmap_stride, scores
