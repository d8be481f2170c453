"""The model contract the engine relies on, and nothing more.

The trainer knows a model only through :class:`PoseModel`: ``loss(batch)`` for training,
``predict(batch)`` for evaluation and inference, ``example_batch()`` for complexity counting,
export and contract checks, and ``on_stage`` for staged schedules declared in the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch
from torch import nn

__all__ = ["Batch", "PoseModel", "PoseResult"]

#: A collated batch: tensors keyed by the :class:`posecore.data.Sample` field names.
Batch = Mapping[str, Any]


@attrs.frozen
class PoseResult:
    """Predictions for a batch.

    Attributes:
        keypoints: (B, K, 2) x, y in the input image's pixels (original image once the data
            pipeline maps them back).
        scores: (B, K) confidence per keypoint.
        heatmaps: (B, K, h, w) raw heatmaps, when the model has them (for overlays).
    """

    keypoints: torch.Tensor
    scores: torch.Tensor
    heatmaps: torch.Tensor | None = None


class PoseModel(nn.Module):
    """Base class of every assembled model a plugin registers under ``posecore_models``."""

    def forward(self, batch: Batch) -> Any:  # noqa: D102 - documented by subclasses
        raise NotImplementedError

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Training losses by name; the trainer back-propagates the sum of all entries."""
        raise NotImplementedError

    def predict(self, batch: Batch) -> PoseResult:
        """Predictions in input-image pixels (decoding in fp32)."""
        raise NotImplementedError

    def example_batch(self, batch_size: int = 1) -> dict[str, torch.Tensor]:
        """A batch of the model's configured input size, enough for ``forward``, ``loss`` and
        ``predict`` (random images, plausible targets)."""
        raise NotImplementedError

    def on_stage(self, index: int, options: Mapping[str, Any]) -> None:
        """Called by the trainer when stage ``index`` of ``TrainConfig.stages`` begins, with that
        stage's ``options``. The trainer itself handles freezing and learning rates."""
