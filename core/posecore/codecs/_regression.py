"""Coordinate regression targets: keypoints as fractions of the input crop (PoseAnything, CapeFormer)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from posecore.codecs._base import check_keypoint_arrays, check_size
from posecore.codecs._flip import flip_keypoints

__all__ = ["KeypointRegression"]


class KeypointRegression:
    """Keypoints as ``coord / input_size``: 0 at the left/top edge, 1 one pixel past the right/bottom one.

    Encode gives ``keypoint_labels = coord / (width, height)`` and ``keypoint_weights`` = the
    visibility where the keypoint lies inside the crop (``0 <= x <= width - 1`` and
    ``0 <= y <= height - 1``), 0 elsewhere: mmpose 0.x ``TopDownGenerateTargetRegression``.
    PoseAnything weighs its losses differently: by the weights of its MSRA heatmap targets
    (``MSRAHeatmap((256, 256), (64, 64), sigma=1.0)``, which also keeps keypoints just outside the
    crop); a model that follows it should take ``keypoint_weights`` from that codec.

    Decode maps predictions back with ``coord = label * (width, height)``; the scores are ones unless
    given. ``flip_back`` mirrors ``x -> (width - 1) / width - x`` (the normalised form of the data
    pipeline's ``x -> width - 1 - x``) and swaps left and right.

    Args:
        input_size: ``(width, height)`` of the network input.

    Example::

        codec = KeypointRegression((256, 256))
        targets = codec.encode(keypoints, visibility)  # keypoint_labels (K, 2), keypoint_weights (K,)
        keypoints, scores = codec.decode(model_outputs)  # (B, K, 2) input pixels, (B, K)
    """

    def __init__(self, input_size: tuple[int, int]) -> None:
        self.input_size = check_size(type(self).__name__, "input_size", input_size)

    def encode(self, keypoints: np.ndarray, visibility: np.ndarray) -> dict[str, np.ndarray]:
        """keypoints ``(..., K, 2)``, visibility ``(..., K)`` -> keypoint_labels ``(..., K, 2)``, keypoint_weights ``(..., K)``."""
        keypoints, visibility = check_keypoint_arrays(type(self).__name__, keypoints, visibility)
        size = np.asarray(self.input_size, dtype=np.float64)
        inside = np.all((keypoints >= 0) & (keypoints <= size - 1), axis=-1)
        return {
            "keypoint_labels": (keypoints / size).astype(np.float32),
            "keypoint_weights": (visibility * inside).astype(np.float32),
        }

    def decode(self, outputs: torch.Tensor, scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised predictions ``(B, K, 2)`` -> keypoints ``(B, K, 2)`` float32 input pixels, scores ``(B, K)``.

        Args:
            outputs: ``(B, K, 2)`` x, y as fractions of the input width and height.
            scores: ``(B, K)`` confidences, if the model predicts them; ones otherwise.
        """
        if outputs.ndim != 3 or outputs.shape[-1] != 2:
            raise ValueError(f"KeypointRegression.decode: expected outputs (B, K, 2); got {tuple(outputs.shape)}")
        size = torch.tensor(self.input_size, dtype=torch.float32, device=outputs.device)
        keypoints = outputs.float() * size
        if scores is None:
            scores = torch.ones(outputs.shape[:2], dtype=torch.float32, device=outputs.device)
        elif tuple(scores.shape) != tuple(outputs.shape[:2]):
            raise ValueError(
                f"KeypointRegression.decode: scores must have shape {tuple(outputs.shape[:2])}; got {tuple(scores.shape)}"
            )
        return keypoints, scores.float()

    def flip_back(self, outputs: torch.Tensor, flip_indices: Sequence[int]) -> torch.Tensor:
        """Normalised predictions ``(B, K, 2)`` for the flipped input -> predictions for the original input."""
        return flip_keypoints(outputs, flip_indices, width=self.input_size[0], normalized=True)

    def __repr__(self) -> str:
        return f"KeypointRegression(input_size={self.input_size})"
