"""Losses provided by the core."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["KeypointMSELoss"]


class KeypointMSELoss(nn.Module):
    """Mean squared error between heatmaps, weighted per keypoint (mmpose's JointsMSE).

    Args:
        use_target_weight: multiply each keypoint's error by its weight (0 for unlabelled).
        loss_weight: scale of the returned loss.
    """

    def __init__(self, use_target_weight: bool = True, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.use_target_weight = use_target_weight
        self.loss_weight = loss_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor | None = None) -> torch.Tensor:
        """output, target: (B, K, H, W); target_weight: (B, K). Computed in fp32."""
        error = (output.float() - target.float()).pow(2).mean(dim=(2, 3))
        if self.use_target_weight and target_weight is not None:
            error = error * target_weight.float()
        return error.mean() * self.loss_weight
