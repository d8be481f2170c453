"""Gaussian heatmap targets (MSRA and UDP), vectorised over keypoints and any leading batch axes.

Both follow mmpose 0.x ``TopDownGenerateTarget`` (Gaussian kind) to the last rounding rule:

- ``mu = int(coord / stride + 0.5)`` per axis, truncating toward zero as Python's ``int`` does,
  also for negative values;
- the window spans ``[int(mu - 3 sigma), int(mu + 3 sigma + 1))`` per axis; pixel ``p`` of the window
  holds ``exp(-(p - c)^2 / (2 sigma^2))`` per axis, the map is the outer product, 0 outside;
- the weight is the visibility, set to 0 when ``ul >= size`` or ``br < 0`` on either axis (with
  ``br`` exclusive, a window ending exactly at pixel 0 keeps its weight but draws nothing, as in
  mmpose); a map is drawn only where the weight is above 0.5.

MSRA (Xiao et al., "Simple Baselines", ECCV 2018): ``stride = input_size / heatmap_size`` and the
Gaussian is centred on the integer ``mu``. UDP (Huang et al., "The Devil is in the Details",
CVPR 2020): ``stride = (input_size - 1) / (heatmap_size - 1)`` and the Gaussian is centred on the
exact ``coord / stride``, while the window stays around ``mu``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["msra_gaussian_heatmaps", "udp_gaussian_heatmaps"]


def msra_gaussian_heatmaps(
    keypoints: np.ndarray,
    visibility: np.ndarray,
    input_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """MSRA targets: a unit-peak Gaussian around the rounded heatmap position.

    Args:
        keypoints: ``(..., K, 2)`` x, y in input pixels.
        visibility: ``(..., K)`` in ``[0, 1]``.
        input_size, heatmap_size: ``(width, height)``.
        sigma: standard deviation in heatmap pixels.

    Returns:
        heatmaps ``(..., K, h, w)`` and keypoint_weights ``(..., K)``, float32.
    """
    stride = np.asarray(input_size, np.float64) / np.asarray(heatmap_size, np.float64)
    return _gaussian_heatmaps(keypoints, visibility, stride, heatmap_size, sigma, exact_centre=False)


def udp_gaussian_heatmaps(
    keypoints: np.ndarray,
    visibility: np.ndarray,
    input_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """UDP targets: a unit-peak Gaussian centred on the exact ``coord * (heatmap - 1) / (input - 1)``.

    Same arguments and returns as :func:`msra_gaussian_heatmaps`.
    """
    stride = (np.asarray(input_size, np.float64) - 1.0) / (np.asarray(heatmap_size, np.float64) - 1.0)
    return _gaussian_heatmaps(keypoints, visibility, stride, heatmap_size, sigma, exact_centre=True)


def _gaussian_heatmaps(
    keypoints: np.ndarray,
    visibility: np.ndarray,
    stride: np.ndarray,
    heatmap_size: tuple[int, int],
    sigma: float,
    *,
    exact_centre: bool,
) -> tuple[np.ndarray, np.ndarray]:
    keypoints = np.asarray(keypoints, np.float64)
    visibility = np.asarray(visibility, np.float32)
    width, height = heatmap_size
    radius = 3.0 * sigma
    # mmpose indexes a patch of arange(0, 2r + 1) whose centre is (2r + 1) // 2; for a non-integer
    # 3 sigma that centre is not r, so keep the patch arithmetic rather than assume symmetry.
    patch_centre = np.floor((2.0 * radius + 1.0) / 2.0)

    scaled = keypoints / stride  # (..., K, 2) in heatmap pixels
    mu = np.trunc(scaled + 0.5)
    upper_left = np.trunc(mu - radius)
    bottom_right = np.trunc(mu + radius + 1.0)
    centre = upper_left + patch_centre + (scaled - mu if exact_centre else 0.0)

    outside = (
        (upper_left[..., 0] >= width)
        | (upper_left[..., 1] >= height)
        | (bottom_right[..., 0] < 0)
        | (bottom_right[..., 1] < 0)
    )
    weights = np.where(outside, np.float32(0), visibility).astype(np.float32)
    drawn = weights > 0.5

    profile_x = _window_profile(width, centre[..., 0], upper_left[..., 0], bottom_right[..., 0], sigma)
    profile_y = _window_profile(height, centre[..., 1], upper_left[..., 1], bottom_right[..., 1], sigma)
    profile_x *= drawn[..., None]
    heatmaps = (profile_y[..., :, None] * profile_x[..., None, :]).astype(np.float32)
    return heatmaps, weights


def _window_profile(length: int, centre: np.ndarray, start: np.ndarray, stop: np.ndarray, sigma: float) -> np.ndarray:
    """One axis of the window: ``(..., K, length)`` Gaussian values inside ``[start, stop)``, 0 elsewhere."""
    pixels = np.arange(length, dtype=np.float64)
    inside = (pixels >= start[..., None]) & (pixels < stop[..., None])
    return np.exp(-((pixels - centre[..., None]) ** 2) / (2.0 * sigma**2)) * inside
