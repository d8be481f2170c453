"""``topdown_heatmap``: backbone + heatmap head + heatmap loss, the top-down baseline."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from posecore.components import Nested
from posecore.models.base import Batch, PoseModel, PoseResult

__all__ = ["TopdownHeatmapModel"]


class TopdownHeatmapModel(PoseModel):
    """Crops in, heatmaps out.

    Batch keys: ``image`` (B, 3, H, W) float; for training ``heatmaps`` (B, K, h, w) and
    ``keypoint_weights`` (B, K).

    Args:
        backbone: a ``backbones`` component (its config is nested under ``backbone``).
        head: a ``heads`` component with ``decode``.
        loss: a ``losses`` component called as ``loss(output, target, weights)``.
        input_size: (width, height) of the network input.
    """

    def __init__(
        self,
        backbone: Annotated[nn.Module, Nested("backbones")],
        head: Annotated[nn.Module, Nested("heads")],
        loss: Annotated[nn.Module, Nested("losses")] | None = None,
        input_size: tuple[int, int] = (192, 256),
    ) -> None:
        super().__init__()
        from posecore.models.losses import KeypointMSELoss

        self.backbone = backbone
        self.head = head
        self.loss_fn = loss if loss is not None else KeypointMSELoss()
        self.input_size = tuple(input_size)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Heatmaps (B, K, h, w) for ``batch["image"]``."""
        return self.head(self.backbone(batch["image"]))

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        heatmaps = self(batch)
        return {"loss_heatmap": self.loss_fn(heatmaps, batch["heatmaps"], batch.get("keypoint_weights"))}

    @torch.no_grad()
    def predict(self, batch: Batch) -> PoseResult:
        heatmaps = self(batch).float()
        keypoints, scores = self.head.decode(heatmaps)
        return PoseResult(keypoints=keypoints, scores=scores, heatmaps=heatmaps)

    def example_batch(self, batch_size: int = 1) -> dict[str, torch.Tensor]:
        width, height = self.input_size
        device = next(self.parameters()).device
        image = torch.randn(batch_size, 3, height, width, device=device)
        with torch.no_grad():
            was_training = self.training
            self.eval()
            shape = self(dict(image=image[:1])).shape
            self.train(was_training)
        return {
            "image": image,
            "heatmaps": torch.rand(batch_size, *shape[1:], device=device),
            "keypoint_weights": torch.ones(batch_size, shape[1], device=device),
        }
