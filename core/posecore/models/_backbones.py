"""Backbones provided by the core. ``timm``: any timm model as a single-map feature extractor.

timm is a core dependency; exposing its models through one adapter lets presets use ResNets,
HRNets or SwinV2 without a wrapper per family.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

__all__ = ["TimmBackbone"]


class TimmBackbone(nn.Module):
    """The last (or ``out_index``-th) feature map of a timm model, as NCHW.

    Args:
        model_name: any name ``timm.list_models()`` knows, e.g. ``"resnet50"``.
        out_index: which feature level to return (``-1``: the coarsest).
        pretrained: load timm's weights; needs them in the local cache (no download here).
        model_kwargs: extra keyword arguments for ``timm.create_model``.
    """

    def __init__(
        self,
        model_name: str,
        out_index: int = -1,
        pretrained: bool = False,
        model_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self.model = timm.create_model(
            model_name, pretrained=pretrained, features_only=True, out_indices=(out_index,), **(model_kwargs or {})
        )
        info = self.model.feature_info
        self.out_channels: int = info.channels()[-1]
        self.stride: int = info.reduction()[-1]
        self._channels_last_output = getattr(self.model, "output_fmt", "NCHW") == "NHWC"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) -> features (B, C, H / stride, W / stride)."""
        features = self.model(images)[-1]
        if self._channels_last_output:
            features = features.permute(0, 3, 1, 2)
        return features
