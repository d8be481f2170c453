"""Batched heatmap maxima: the first step of every heatmap decoder."""

from __future__ import annotations

import torch

__all__ = ["heatmap_argmax"]


def heatmap_argmax(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Locate each heatmap's maximum.

    Args:
        heatmaps: (B, K, H, W).

    Returns:
        coords: (B, K, 2) integer x, y of the maximum, as float32.
        scores: (B, K) the maximum value.
    """
    batch, keypoints, _, width = heatmaps.shape
    scores, flat_index = heatmaps.float().flatten(2).max(dim=2)
    coords = torch.stack((flat_index % width, torch.div(flat_index, width, rounding_mode="floor")), dim=2)
    return coords.to(torch.float32).reshape(batch, keypoints, 2), scores
