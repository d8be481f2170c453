"""Drawing poses on images: skeletons in the dataset's colours, heatmap overlays, contact sheets.

People would rather look at a pose than read its coordinates; every command that predicts
writes pictures through these functions. They work on (H, W, 3) uint8 RGB arrays and return new
arrays; nothing here touches torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from posecore._fileio import atomic_write
from posecore.data._metainfo import DatasetMeta

__all__ = ["contact_sheet", "draw_pose", "heatmap_overlay", "save_image"]

_FALLBACK_COLOURS = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
     [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40]], np.uint8)


def _colour(palette: Sequence[Sequence[int]], index: int) -> tuple[int, int, int]:
    if palette and index < len(palette):
        r, g, b = palette[index]
    else:
        r, g, b = _FALLBACK_COLOURS[index % len(_FALLBACK_COLOURS)]
    return int(r), int(g), int(b)


def draw_pose(
    image: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray | None = None,
    meta: DatasetMeta | None = None,
    *,
    threshold: float = 0.3,
    bbox: Sequence[float] | None = None,
    radius: int | None = None,
    skeleton: Sequence[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Draw one instance: limbs of ``meta.skeleton`` (or ``skeleton``), then keypoints, then the box.

    Args:
        image: (H, W, 3) uint8 RGB; not modified.
        keypoints: (K, 2) x, y in the image's pixels.
        scores: (K,) confidence or visibility; keypoints at or under ``threshold`` are not drawn.
        meta: the keypoint set, for the skeleton and its colours.
        bbox: x1, y1, x2, y2 to outline.
        radius: keypoint radius in pixels (default: from the image size).
    """
    canvas = np.ascontiguousarray(image).copy()
    keypoints = np.asarray(keypoints, dtype=np.float64)
    shown = np.ones(len(keypoints), bool) if scores is None else np.asarray(scores) > threshold
    shown &= np.isfinite(keypoints).all(axis=1)
    links = skeleton if skeleton is not None else (meta.skeleton if meta else ())
    size = max(canvas.shape[:2])
    radius = radius or max(2, size // 160)
    thickness = max(1, radius // 2 + 1)
    for index, (a, b) in enumerate(links):
        if a < len(keypoints) and b < len(keypoints) and shown[a] and shown[b]:
            colour = _colour(meta.skeleton_colors if meta else (), index)
            cv2.line(canvas, _point(keypoints[a]), _point(keypoints[b]), colour, thickness, cv2.LINE_AA)
    for index in np.flatnonzero(shown):
        colour = _colour(meta.keypoint_colors if meta else (), int(index))
        cv2.circle(canvas, _point(keypoints[index]), radius, colour, -1, cv2.LINE_AA)
        cv2.circle(canvas, _point(keypoints[index]), radius, (255, 255, 255), 1, cv2.LINE_AA)
    if bbox is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in bbox)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def heatmap_overlay(image: np.ndarray, heatmaps: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """The maximum over keypoints of ``heatmaps`` (K, h, w), resized to the image, as a colour map over it."""
    peak = np.clip(np.asarray(heatmaps, dtype=np.float32).max(axis=0), 0.0, 1.0)
    peak = cv2.resize(peak, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap((peak * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(np.ascontiguousarray(image), 1.0 - alpha, colour, alpha, 0.0)


def contact_sheet(images: Sequence[np.ndarray], columns: int = 4, cell: int = 256) -> np.ndarray:
    """Images scaled to a common width ``cell`` (rows as tall as the tallest) in a grid on black."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    height = max(1, int(round(cell * max(image.shape[0] / image.shape[1] for image in images))))
    rows = -(-len(images) // columns)
    sheet = np.zeros((rows * height, min(columns, len(images)) * cell, 3), np.uint8)
    for index, image in enumerate(images):
        scale = min(cell / image.shape[1], height / image.shape[0])
        resized = cv2.resize(image, (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))),
                             interpolation=cv2.INTER_AREA)
        top, left = (index // columns) * height, (index % columns) * cell
        sheet[top:top + resized.shape[0], left:left + resized.shape[1]] = resized
    return sheet


def save_image(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB image (format from the suffix) atomically."""
    path = Path(path)

    def write(tmp: str) -> None:
        ok, data = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"cannot encode an image as {path.suffix!r} for {path}")
        Path(tmp).write_bytes(data.tobytes())

    return atomic_write(path, write)


def _point(xy: np.ndarray) -> tuple[int, int]:
    return int(round(float(xy[0]))), int(round(float(xy[1])))
