"""``topdown_heatmap``: backbone + heatmap head + heatmap loss, the top-down baseline."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from posecore._components import Nested
from posecore.codecs._base import Codec
from posecore.models._base import Batch, ImageNormalizer, PoseModel, PoseResult, predict_heatmaps

__all__ = ["TopdownHeatmapModel"]


class TopdownHeatmapModel(PoseModel):
    """Crops in, heatmaps out.

    Batch keys: ``image`` (B, 3, H, W), uint8 from the data pipeline or already-normalised float;
    for training ``heatmaps`` (B, K, h, w) and ``keypoint_weights`` (B, K); for the flip test
    ``meta`` (the samples' DatasetMeta, for the flip pairs).

    Args:
        backbone: a ``backbones`` component (its config is nested under ``backbone``).
        head: a ``heads`` component; its ``decode`` is the fallback when no codec is given.
        loss: a ``losses`` component called as ``loss(output, target, weights)``.
        input_size: (width, height) of the network input.
        codec: the experiment's codec (the engine passes it): decodes heatmaps and flips them
            back for the flip test, exactly as the targets were encoded.
    """

    def __init__(
        self,
        backbone: Annotated[nn.Module, Nested("backbones")],
        head: Annotated[nn.Module, Nested("heads")],
        loss: Annotated[nn.Module, Nested("losses")] | None = None,
        input_size: tuple[int, int] = (192, 256),
        codec: Codec | None = None,
    ) -> None:
        super().__init__()
        from posecore.models._losses import KeypointMSELoss

        self.normalizer = ImageNormalizer()
        self.backbone = backbone
        self.head = head
        self.loss_fn = loss if loss is not None else KeypointMSELoss()
        self.input_size = tuple(input_size)
        self.codec = codec

    def forward(self, batch: Batch) -> torch.Tensor:
        """Heatmaps (B, K, h, w) for ``batch["image"]``."""
        return self.head(self.backbone(self.normalizer(batch["image"])))

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        heatmaps = self(batch)
        return {"loss_heatmap": self.loss_fn(heatmaps, batch["heatmaps"], batch.get("keypoint_weights"))}

    @torch.no_grad()
    def predict(self, batch: Batch, *, flip_test: bool = False) -> PoseResult:
        return predict_heatmaps(lambda images: self({"image": images}), batch, self.codec, flip_test=flip_test,
                                decode=self.head.decode, owner="topdown_heatmap")

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
