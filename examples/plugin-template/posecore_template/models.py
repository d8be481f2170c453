"""The template's architecture: a tiny convolutional backbone and a 1x1 heatmap head.

Both are deliberately small so that the contract checks run in a second on a CPU. Replace them
with your method's modules; keep the attributes and shapes the core relies on (documented in
``core/posecore/hookspecs.py``): a backbone has ``out_channels`` and maps ``(B, 3, H, W)`` to
``(B, C, h, w)``; a head has ``in_channels`` and ``num_keypoints`` and ``decode`` returns
keypoints in input-image pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from posecore.codecs import heatmap_argmax

__all__ = ["TinyConvBackbone", "TinyHeatmapHead"]


class TinyConvBackbone(nn.Module):
    """Stride-2 ``conv 3x3 + BN + ReLU`` stages; each stage doubles the channels.

    Args:
        width: channels of the first stage.
        num_stages: number of stages; the output stride is ``2 ** num_stages``.

    Attributes:
        out_channels: channels of the output feature map, ``width * 2 ** (num_stages - 1)``.
        stride: the output feature map's stride w.r.t. the input image.
    """

    def __init__(self, width: int = 16, num_stages: int = 3) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"TinyConvBackbone.width must be at least 1; got {width}")
        if num_stages < 1:
            raise ValueError(f"TinyConvBackbone.num_stages must be at least 1; got {num_stages}")
        layers: list[nn.Module] = []
        channels = 3
        for stage in range(num_stages):
            out = width * 2**stage
            layers += [
                nn.Conv2d(channels, out, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.stages = nn.Sequential(*layers)
        self.out_channels: int = channels
        self.stride: int = 2**num_stages

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) -> features (B, out_channels, ceil(H / stride), ceil(W / stride))."""
        return self.stages(images)


class TinyHeatmapHead(nn.Module):
    """A 1x1 convolution from backbone features to one heatmap per keypoint.

    Args:
        in_channels: C, channels of the backbone feature map (its ``out_channels``).
        num_keypoints: K, the number of heatmaps and of decoded keypoints.
        input_stride: the feature map's stride w.r.t. the input image (the backbone's
            ``stride``), used to express decoded keypoints in input pixels.
    """

    def __init__(self, in_channels: int, num_keypoints: int, input_stride: int = 8) -> None:
        super().__init__()
        if in_channels < 1 or num_keypoints < 1:
            raise ValueError(
                f"TinyHeatmapHead needs in_channels >= 1 and num_keypoints >= 1; "
                f"got in_channels={in_channels}, num_keypoints={num_keypoints}"
            )
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, kernel_size=1)
        self.in_channels = in_channels
        self.num_keypoints = num_keypoints
        self.input_stride = input_stride

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, C, h, w) -> heatmaps (B, K, h, w)."""
        return self.final_layer(features)

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """heatmaps: (B, K, h, w) -> keypoints (B, K, 2) as x, y in input pixels, scores (B, K).

        A heatmap cell covers ``input_stride`` input pixels, so its centre is returned.
        """
        coords, scores = heatmap_argmax(heatmaps)
        return (coords + 0.5) * self.input_stride, scores
