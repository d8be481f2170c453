"""``posebh_proto_head``: PoseBH's keypoint-embedding head and its prototype banks.

Original: ``KptProtoHead`` in https://github.com/uyoung-jeong/PoseBH
(``mmpose/models/heads/kpt_proto_head.py``). From the backbone map to a ``D``-dimensional (64)
embedding per heatmap pixel:

* two stride-2 deconvolutions with BN + ReLU, as a keypoint head's (``deconv_layers.{0,1,3,4}``);
* a residual block with SiLU (``neck.{conv1, bn1, conv2, bn2, downsample.{0,1}}``);
* conv 3x3 + BN + SiLU + conv 1x1 (``head.{0,1,3}``);

plus ``kpt_prototype`` (:class:`~posecore_posebh.prototypes.KeypointPrototypes`, 3 sub-prototypes
for each keypoint of each dataset) and ``cluster_prototype`` (the CPS clusters). The names are
the original ones, so PoseBH checkpoints need no renaming here.

As a ``heads`` component the head's output is the embedding map; :meth:`PrototypeHead.decode`
turns it into keypoints through the prototype heatmaps (``|cos|`` with the prototypes), which is
how the original visualises them. PoseBH's predictions come from the keypoint heads; the
prototypes are training (and transfer) machinery.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from posecore.codecs import heatmap_argmax
from posecore_posebh.prototypes import ClusterPrototypes, KeypointPrototypes

__all__ = ["PrototypeHead", "ResidualBlock"]


class ResidualBlock(nn.Module):
    """conv 3x3 + BN + act + conv 3x3 + BN, plus a 1x1 conv + BN shortcut, then act."""

    def __init__(self, in_channels: int, channels: int, activation: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = activation(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = (nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
                           if in_channels != channels else None)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        shortcut = features if self.downsample is None else self.downsample(features)
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(features)))))
        return self.act(out + shortcut)


class PrototypeHead(nn.Module):
    """Backbone features (B, C, h, w) -> keypoint embeddings (B, D, h * 2^n, w * 2^n).

    Args:
        in_channels: C of the backbone map.
        num_keypoints: K of each training dataset, in dataset-index order (PoseBH: 17, 14, 16,
            17, 17, 133); the bank holds ``num_sub_prototypes`` prototypes for each of their sum.
        embed_dim: D (64).
        deconv_channels: output channels of each deconvolution (kernel 4, stride 2).
        neck_channels: channels of the residual block (64).
        num_sub_prototypes: M (3).
        momentum: the prototypes' EMA factor (0.999).
        hard_assignment: update prototypes with 0/1 correctness weights (the transfer configs).
        num_clusters: size of the CPS cluster placeholder (the configs' ``cp_size``, 96); 0 for none.
        input_stride: the backbone map's stride, to express decoded keypoints in input pixels.

    Attributes:
        num_keypoints: the total (214 for PoseBH), for the heads contract.
        dataset_keypoints: the per-dataset counts.
    """

    def __init__(self, in_channels: int, num_keypoints: Sequence[int], embed_dim: int = 64,
                 deconv_channels: Sequence[int] = (256, 256), neck_channels: int = 64, num_sub_prototypes: int = 3,
                 momentum: float = 0.999, hard_assignment: bool = False, num_clusters: int = 0,
                 input_stride: int = 16) -> None:
        super().__init__()
        counts = tuple(int(k) for k in num_keypoints)
        if not counts or min(counts) < 1:
            raise ValueError(f"PrototypeHead.num_keypoints must list each dataset's keypoint count; got {num_keypoints}")
        if num_clusters < 0:
            raise ValueError(f"PrototypeHead.num_clusters must be >= 0; got {num_clusters}")
        layers: list[nn.Module] = []
        channels = in_channels
        for out in deconv_channels:
            layers += [nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            channels = out
        self.deconv_layers = nn.Sequential(*layers)
        self.neck = ResidualBlock(channels, neck_channels)
        self.head = nn.Sequential(nn.Conv2d(neck_channels, neck_channels, 3, 1, 1), nn.BatchNorm2d(neck_channels),
                                  nn.SiLU(inplace=True), nn.Conv2d(neck_channels, embed_dim, 1))
        self.kpt_prototype = KeypointPrototypes(counts, num_sub_prototypes, embed_dim, momentum, hard_assignment)
        self.cluster_prototype = (ClusterPrototypes(num_clusters, num_sub_prototypes, embed_dim)
                                  if num_clusters else None)
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.dataset_keypoints = counts
        self.num_keypoints = sum(counts)
        self.heatmap_stride = input_stride / 2 ** len(deconv_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """The original's: every (de)convolution N(0, 0.001) with zero bias; BN weight 1, bias 0."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, C, h, w) -> embeddings (B, D, h * 2^n, w * 2^n), not normalised.

        Runs channels-last, as core's deconvolution head does (oneDNN's transposed convolutions are
        1.5-2x faster so on the CPU, forward and backward); the embeddings come back contiguous."""
        features = features.contiguous(memory_format=torch.channels_last)
        return self.head(self.neck(self.deconv_layers(features))).contiguous()

    def heatmaps(self, embeddings: torch.Tensor, dataset: int | None = None) -> torch.Tensor:
        """Prototype heatmaps (B, J or K_d, H, W) of the embeddings (see KeypointPrototypes.heatmaps)."""
        return self.kpt_prototype.heatmaps(embeddings, dataset)

    def decode(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prototype heatmaps' maxima: keypoints (B, J, 2) in input pixels, scores (B, J)."""
        coords, scores = heatmap_argmax(self.heatmaps(embeddings))
        return (coords + 0.5) * self.heatmap_stride, scores
