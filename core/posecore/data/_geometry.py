"""Affine geometry of top-down crops: the box-to-input warps of mmpose 0.x, standard and UDP.

All matrices are 2x3 float64 mapping image pixels to input pixels (``p' = M @ [x, y, 1]``), so a
whole augmentation (flip, scale, rotation, crop) becomes one matrix and the image is warped once.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "apply_affine",
    "compose_affine",
    "fix_aspect_ratio",
    "horizontal_flip_matrix",
    "invert_affine",
    "standard_warp_matrix",
    "udp_warp_matrix",
]


def fix_aspect_ratio(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow the box size (w, h) along one side so that w / h equals ``aspect_ratio``."""
    w, h = float(scale[0]), float(scale[1])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return np.array([w, h], dtype=np.float32)


def standard_warp_matrix(center: np.ndarray, scale: np.ndarray, rotation: float, output_size: tuple[int, int]) -> np.ndarray:
    """mmpose 0.x ``get_affine_transform``: the box centre goes to (W/2, H/2), the box width to
    W pixels, and the box is rotated by ``rotation`` degrees (counter-clockwise on screen).

    The original builds it from three point pairs with ``cv2.getAffineTransform``; that map is
    the similarity written here in closed form (the tests check both agree).
    """
    width, height = output_size
    zoom = width / float(scale[0])
    angle = math.radians(rotation)
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    linear = np.array([[cos, sin], [-sin, cos]])
    offset = np.array([width / 2.0, height / 2.0]) - linear @ np.asarray(center, dtype=np.float64)
    return np.hstack([linear, offset[:, None]])


def udp_warp_matrix(center: np.ndarray, scale: np.ndarray, rotation: float, output_size: tuple[int, int]) -> np.ndarray:
    """UDP (Huang et al., CVPR 2020) unbiased warp, mmpose 0.x ``get_warp_matrix``: the box of
    size ``scale`` maps onto the ``output_size - 1`` pixel span, so that pixel centres line up
    exactly and flipping is unbiased."""
    width, height = output_size
    zoom_x, zoom_y = (width - 1.0) / float(scale[0]), (height - 1.0) / float(scale[1])
    angle = math.radians(rotation)
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = float(center[0]), float(center[1])
    return np.array([
        [cos * zoom_x, -sin * zoom_x, zoom_x * (-cx * cos + cy * sin + 0.5 * float(scale[0]))],
        [sin * zoom_y, cos * zoom_y, zoom_y * (-cx * sin - cy * cos + 0.5 * float(scale[1]))],
    ])


def horizontal_flip_matrix(axis: float) -> np.ndarray:
    """Mirror x about ``axis / 2``: ``x -> axis - x`` (``axis = W - 1`` flips a W-wide image)."""
    return np.array([[-1.0, 0.0, axis], [0.0, 1.0, 0.0]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of ``outer(inner(p))``."""
    return outer[:, :2] @ inner + np.hstack([np.zeros((2, 2)), outer[:, 2:]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The 2x3 inverse of an invertible 2x3 affine matrix."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, -linear @ matrix[:, 2:]])


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map (..., 2) points through a 2x3 matrix; float32 out."""
    points = np.asarray(points, dtype=np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
