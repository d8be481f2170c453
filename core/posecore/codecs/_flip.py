"""Flip test: outputs for a horizontally flipped input, brought back to the original frame.

The data pipeline flips an image of width ``W`` with ``x -> W - 1 - x``; keypoint ``k`` of the
flipped image is keypoint ``flip_indices[k]`` of the original (left and right swap). Heatmap
codecs mirror the width axis and reorder channels; coordinate codecs mirror x and reorder rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["average_flipped", "check_flip_indices", "flip_heatmaps", "flip_keypoints"]


def check_flip_indices(flip_indices: Sequence[int] | torch.Tensor, num_keypoints: int) -> list[int]:
    """``flip_indices`` as a list, or a ``ValueError`` if it is not a permutation of ``0..K-1``."""
    indices = [int(i) for i in (flip_indices.tolist() if isinstance(flip_indices, torch.Tensor) else flip_indices)]
    if len(indices) != num_keypoints:
        raise ValueError(
            f"flip_indices has {len(indices)} entries but the outputs have {num_keypoints} keypoints; "
            "use the flip_indices of the dataset the model was trained on"
        )
    if sorted(indices) != list(range(num_keypoints)):
        raise ValueError(f"flip_indices must be a permutation of 0..{num_keypoints - 1}; got {indices}")
    return indices


def flip_heatmaps(heatmaps: torch.Tensor, flip_indices: Sequence[int], *, shift: bool = False) -> torch.Tensor:
    """Heatmaps of the flipped input -> heatmaps of the original input.

    Args:
        heatmaps: ``(B, K, H, W)``.
        flip_indices: ``(K,)``: channel ``k`` of the result is channel ``flip_indices[k]``, mirrored.
        shift: move the result one pixel right, repeating column 0 (mmpose's ``shift_heatmap``):
            with ``stride = input / heatmap`` the flipped map is off by one heatmap pixel.

    Returns:
        ``(B, K, H, W)`` in the input's dtype.
    """
    indices = check_flip_indices(flip_indices, heatmaps.shape[1])
    flipped = heatmaps[:, indices].flip(-1)
    if shift:
        flipped = torch.cat((flipped[..., :1], flipped[..., :-1]), dim=-1)
    return flipped


def flip_keypoints(
    keypoints: torch.Tensor, flip_indices: Sequence[int], *, width: int, normalized: bool = False
) -> torch.Tensor:
    """Keypoints found in the flipped input -> keypoints in the original input.

    Args:
        keypoints: ``(B, K, 2)`` x, y in input pixels, or divided by the input size when ``normalized``.
        flip_indices: ``(K,)``: row ``k`` of the result is row ``flip_indices[k]``.
        width: the input width ``W``: ``x -> W - 1 - x`` in pixels, ``x -> (W - 1) / W - x`` normalised.

    Returns:
        ``(B, K, 2)``.
    """
    indices = check_flip_indices(flip_indices, keypoints.shape[1])
    flipped = keypoints[:, indices].clone()
    flipped[..., 0] = ((width - 1) / width if normalized else width - 1) - flipped[..., 0]
    return flipped


def average_flipped(outputs: torch.Tensor, flipped_back: torch.Tensor) -> torch.Tensor:
    """The flip-test output: the mean of the outputs and the flipped-back outputs, in float32.

    ``flipped_back`` is ``codec.flip_back(model(flipped_input), flip_indices)``; decode the result.
    """
    if outputs.shape != flipped_back.shape:
        raise ValueError(
            f"average_flipped: outputs {tuple(outputs.shape)} and flipped-back outputs "
            f"{tuple(flipped_back.shape)} must have the same shape"
        )
    return (outputs.float() + flipped_back.float()) * 0.5
