"""The codec contract: one object turns keypoints into training targets and predictions back into keypoints.

A codec is configured once per preset and shared by the data pipeline (``encode``, numpy, one
sample or a batch of them) and by the model at test time (``decode`` and ``flip_back``, batched
torch tensors). Keypoints are always in *input-crop pixels*: the frame of the network input after
the affine crop, ``x`` in ``[0, width - 1]`` and ``y`` in ``[0, height - 1]`` for points inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["Codec", "check_keypoint_arrays", "check_size"]


@runtime_checkable
class Codec(Protocol):
    """What the data pipeline and the models call.

    Attributes:
        input_size: ``(width, height)`` of the network input, in pixels.
    """

    input_size: tuple[int, int]

    def encode(self, keypoints: np.ndarray, visibility: np.ndarray) -> dict[str, np.ndarray]:
        """Training targets for keypoints in input-crop pixels.

        Args:
            keypoints: ``(..., K, 2)`` float x, y in input-crop pixels.
            visibility: ``(..., K)`` in ``[0, 1]``.

        Returns:
            float32 arrays sharing the leading axes, e.g. ``{"heatmaps": (..., K, h, w),
            "keypoint_weights": (..., K)}`` or ``{"keypoint_labels": (..., K, 2),
            "keypoint_weights": (..., K)}``.
        """
        ...

    def decode(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network outputs -> keypoints ``(B, K, 2)`` float32 in input-crop pixels and scores ``(B, K)``."""
        ...

    def flip_back(self, outputs: torch.Tensor, flip_indices: Sequence[int]) -> torch.Tensor:
        """Outputs for the horizontally flipped input -> outputs in the frame of the original input."""
        ...


def check_size(owner: str, field: str, value: Sequence[int], *, minimum: int = 1) -> tuple[int, int]:
    """``value`` as a ``(width, height)`` tuple of ints ``>= minimum``; a ``ValueError`` names the field otherwise."""
    try:
        width, height = value
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {field} must be (width, height); got {value!r}") from None
    for number in (width, height):
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < minimum:
            raise ValueError(f"{owner}: {field} must be two integers >= {minimum} as (width, height); got {value!r}")
    return int(width), int(height)


def check_keypoint_arrays(owner: str, keypoints: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``(..., K, 2)`` as float64 and visibility ``(..., K)`` as float32, or a ``ValueError`` saying which shape is off."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    visibility = np.asarray(visibility, dtype=np.float32)
    if keypoints.ndim < 2 or keypoints.shape[-1] != 2:
        raise ValueError(f"{owner}.encode: keypoints must have shape (..., K, 2); got {keypoints.shape}")
    if visibility.shape != keypoints.shape[:-1]:
        raise ValueError(
            f"{owner}.encode: visibility must have shape {keypoints.shape[:-1]} to match keypoints "
            f"{keypoints.shape}; got {visibility.shape}"
        )
    return keypoints, visibility
