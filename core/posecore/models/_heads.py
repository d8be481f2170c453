"""Heatmap heads provided by the core."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from posecore.codecs import heatmap_argmax

__all__ = ["HeatmapDeconvHead", "HeatmapSimpleHead"]


def _init_heatmap_layers(module: nn.Module) -> None:
    """SimpleBaseline's and ViTPose's initialisation: convolution weights N(0, 0.001), zero biases,
    so training starts from heatmaps near zero, the value of almost every target pixel."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, std=0.001)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _argmax_decode(heatmaps: torch.Tensor, stride: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmap maxima in input pixels: keypoints (B, K, 2), scores (B, K).

    Sub-pixel refinement (quarter-pixel shift, DARK, UDP) belongs to the codecs.
    """
    coords, scores = heatmap_argmax(heatmaps)
    return (coords + 0.5) * stride, scores


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
        _init_heatmap_layers(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, C, h, w) -> heatmaps (B, K, h * 2^n, w * 2^n).

        The deconvolutions run channels-last: oneDNN's CPU kernels for transposed convolutions
        are 1.5-2x faster in that layout (forward and backward), and they are most of the head's
        work. The heatmaps come back in the ordinary layout for the losses and decoders."""
        features = features.contiguous(memory_format=torch.channels_last)
        return self.final_layer(self.deconv_layers(features)).contiguous()

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap maxima in input pixels: keypoints (B, K, 2), scores (B, K)."""
        return _argmax_decode(heatmaps, self.heatmap_stride)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold each BatchNorm into the deconvolution before it (which gains a bias), for inference.

        The BatchNorms become identities: the head then predicts as before in eval mode, one pass
        over the largest maps in the model fewer. ``posecore``'s predictors call this through
        ``timm.utils.reparameterize_model``; a folded head is for inference, not for training."""
        layers = self.deconv_layers
        for i in range(len(layers) - 1):
            if isinstance(layers[i], nn.ConvTranspose2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
                layers[i] = fuse_conv_bn_eval(layers[i].eval(), layers[i + 1].eval(), transpose=True)
                layers[i + 1] = nn.Identity()


class HeatmapSimpleHead(nn.Module):
    """ViTPose's "simple decoder": ReLU, bilinear upsampling, then one convolution to K heatmaps.

    The layout of the original (``TopdownHeatmapSimpleHead`` with no deconvolutions,
    ``upsample=4``, ``final_conv_kernel=3``) and of Hugging Face's ``VitPoseSimpleDecoder``; its
    only parameters are ``final_layer.{weight (K, C, k, k), bias (K,)}``.

    Args:
        in_channels: channels of the backbone feature map.
        num_keypoints: K, the number of heatmaps.
        upsample: bilinear scale factor (align_corners off, as the original).
        kernel_size: 3 (padding 1) or 1.
        input_stride: the feature map's stride w.r.t. the input image.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        upsample: int = 4,
        kernel_size: int = 3,
        input_stride: int = 16,
    ) -> None:
        super().__init__()
        if kernel_size not in (1, 3):
            raise ValueError(f"HeatmapSimpleHead.kernel_size must be 1 or 3; got {kernel_size}")
        if upsample < 1:
            raise ValueError(f"HeatmapSimpleHead.upsample must be >= 1; got {upsample}")
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, kernel_size, padding=kernel_size // 2)
        self.upsample = upsample
        self.in_channels = in_channels
        self.num_keypoints = num_keypoints
        self.heatmap_stride = input_stride / upsample
        _init_heatmap_layers(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, C, h, w) -> heatmaps (B, K, h * upsample, w * upsample)."""
        features = F.relu(features)
        if self.upsample > 1:
            features = F.interpolate(features, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return self.final_layer(features)

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap maxima in input pixels: keypoints (B, K, 2), scores (B, K)."""
        return _argmax_decode(heatmaps, self.heatmap_stride)
