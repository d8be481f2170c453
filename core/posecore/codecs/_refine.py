"""Sub-pixel refinement of heatmap maxima, batched on tensors: quarter-pixel shift, DARK, DARK-UDP.

Every function takes heatmaps ``(B, K, H, W)`` and integer maxima ``(B, K, 2)`` (x, y in heatmap
pixels, ``-1`` where a map has no positive value) and returns refined ``(B, K, 2)`` float32 heatmap
coordinates. Work is done in float32 on the heatmaps' device, whatever their dtype. The formulas
are those of mmpose 0.x ``keypoints_from_heatmaps`` (``post_process='default'`` / ``'unbiased'``)
and ``post_dark_udp``; DARK is Zhang et al., "Distribution-Aware Coordinate Representation for
Human Pose Estimation" (CVPR 2020).
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "dark_refine",
    "dark_udp_refine",
    "gaussian_blur",
    "opencv_gaussian_kernel",
    "quarter_pixel_shift",
]

# OpenCV's getGaussianKernel uses these fixed kernels for odd sizes up to 9 when sigma <= 0 (OpenCV 4+).
_OPENCV_SMALL_KERNELS = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
    9: tuple(v / 256 for v in (4, 13, 30, 51, 60, 51, 30, 13, 4)),
}


def opencv_gaussian_kernel(kernel_size: int) -> torch.Tensor:
    """The 1-D kernel ``cv2.GaussianBlur(img, (kernel_size, kernel_size), 0)`` applies per axis.

    With sigma 0, OpenCV uses a fixed table for sizes up to 9 and otherwise
    ``sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8`` (2.0 for size 11), normalised to sum 1.

    Returns:
        ``(kernel_size,)`` float64.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"blur kernel size must be a positive odd integer (3, 5, 11, ...); got {kernel_size!r}")
    if kernel_size in _OPENCV_SMALL_KERNELS:
        return torch.tensor(_OPENCV_SMALL_KERNELS[kernel_size], dtype=torch.float64)
    sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    offsets = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) * 0.5
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur(
    heatmaps: torch.Tensor, kernel_size: int, border: Literal["reflect101", "zeros"] = "reflect101"
) -> torch.Tensor:
    """Separable Gaussian blur of each map with OpenCV's sigma-0 kernel.

    Args:
        heatmaps: ``(B, K, H, W)``.
        kernel_size: odd kernel size.
        border: ``"reflect101"`` is OpenCV's default border (``dcb|abcd|cba``), what
            ``cv2.GaussianBlur`` does to a bare map (DARK-UDP); ``"zeros"`` pads with zeros, what
            mmpose's ``_gaussian_blur`` does by blurring a zero-padded copy (DARK).

    Returns:
        ``(B, K, H, W)`` float32.
    """
    if border not in ("reflect101", "zeros"):
        raise ValueError(f"gaussian_blur: border must be 'reflect101' or 'zeros'; got {border!r}")
    _, _, height, width = heatmaps.shape
    # One small banded matrix per axis with the border folded in: two matmuls are several times
    # faster than a single-channel conv2d on CPU and need no padded copy.
    rows = _blur_matrix(height, kernel_size, border).to(device=heatmaps.device, dtype=torch.float32)
    columns = _blur_matrix(width, kernel_size, border).to(device=heatmaps.device, dtype=torch.float32)
    return rows @ heatmaps.float() @ columns.T


@functools.lru_cache(maxsize=32)
def _blur_matrix(length: int, kernel_size: int, border: str) -> torch.Tensor:
    """``(length, length)`` matrix ``M`` with ``blurred = M @ signal`` along one axis."""
    kernel = opencv_gaussian_kernel(kernel_size)
    radius = kernel_size // 2
    output = torch.arange(length).repeat_interleave(kernel_size)
    source = (torch.arange(length)[:, None] + torch.arange(-radius, radius + 1)[None, :]).reshape(-1)
    weights = kernel.repeat(length)
    if border == "zeros":
        keep = (source >= 0) & (source < length)
        output, source, weights = output[keep], source[keep], weights[keep]
    else:
        source = _reflect101(source, length)
    matrix = torch.zeros(length, length, dtype=torch.float64)
    matrix.index_put_((output, source), weights, accumulate=True)
    return matrix


def quarter_pixel_shift(heatmaps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Move each maximum a quarter pixel toward its higher neighbour, per axis.

    Applied only where ``1 < x < W - 1`` and ``1 < y < H - 1`` (mmpose 0.x's condition, which skips
    the second column and row although their neighbours exist); an axis whose two neighbours are
    equal does not move.
    """
    heatmaps = heatmaps.float()
    _, _, height, width = heatmaps.shape
    x, y = coords[..., 0].long(), coords[..., 1].long()
    inside = (x > 1) & (x < width - 1) & (y > 1) & (y < height - 1)
    sample = _Sampler(heatmaps, x, y, inside)
    diff = torch.stack((sample(1, 0) - sample(-1, 0), sample(0, 1) - sample(0, -1)), dim=-1)
    return coords.float() + torch.sign(diff) * 0.25 * inside[..., None]


def dark_refine(heatmaps: torch.Tensor, coords: torch.Tensor, blur_kernel_size: int = 11) -> torch.Tensor:
    """DARK for MSRA heatmaps: one Newton step on the log of the blurred map at the maximum.

    The map is blurred with zero padding and rescaled so that its maximum equals the original
    maximum, then ``log(max(map, 1e-10))``. Derivatives use central differences with step 1 for the
    gradient and step 2 for the Hessian (``dxx = (h[x+2] - 2 h[x] + h[x-2]) / 4``, ``dxy`` from the
    four diagonal neighbours, / 4). The step ``-H^-1 g`` is applied where ``1 < x < W - 2``,
    ``1 < y < H - 2`` and ``det H != 0``.
    """
    heatmaps = heatmaps.float()
    _, _, height, width = heatmaps.shape
    blurred = gaussian_blur(heatmaps, blur_kernel_size, border="zeros")
    rescale = heatmaps.amax(dim=(2, 3), keepdim=True) / blurred.amax(dim=(2, 3), keepdim=True)
    log_maps = torch.log(torch.clamp_min(blurred * rescale, 1e-10))

    x, y = coords[..., 0].long(), coords[..., 1].long()
    inside = (x > 1) & (x < width - 2) & (y > 1) & (y < height - 2)
    sample = _Sampler(log_maps, x, y, inside)
    centre = sample(0, 0)
    dx = 0.5 * (sample(1, 0) - sample(-1, 0))
    dy = 0.5 * (sample(0, 1) - sample(0, -1))
    dxx = 0.25 * (sample(2, 0) - 2 * centre + sample(-2, 0))
    dyy = 0.25 * (sample(0, 2) - 2 * centre + sample(0, -2))
    dxy = 0.25 * (sample(1, 1) - sample(1, -1) - sample(-1, 1) + sample(-1, -1))
    determinant = dxx * dyy - dxy**2
    apply = inside & (determinant != 0)
    return coords.float() + _newton_step(dx, dy, dxx, dxy, dyy, determinant, apply)


def dark_udp_refine(heatmaps: torch.Tensor, coords: torch.Tensor, blur_kernel_size: int = 11) -> torch.Tensor:
    """DARK as mmpose's ``post_dark_udp`` does it, for UDP heatmaps.

    The map is blurred with OpenCV's default border and no rescaling, clipped to ``[0.001, 50]``,
    logged and edge-padded by one pixel, so every maximum, borders included, gets a step. Gradient:
    central differences with step 1; ``dxx = h[x+1] - 2 h[x] + h[x-1]``;
    ``dxy = (h[x+1,y+1] - h[x+1] - h[y+1] + 2 h - h[x-1] - h[y-1] + h[x-1,y-1]) / 2``; the step is
    ``-(H + eps I)^-1 g`` with eps the float32 machine epsilon.

    Maxima marked ``-1`` (no positive value in the map) are returned unchanged: mmpose's flat
    indexing reads the previous map's memory for them, which is not worth reproducing. On an
    exactly constant map the Hessian is float32 rounding noise of the size of ``eps``, so the step
    there is arbitrary (cv2's summation order happens to give 0, our matmul blur does not).
    """
    heatmaps = heatmaps.float()
    blurred = gaussian_blur(heatmaps, blur_kernel_size, border="reflect101")
    log_maps = F.pad(torch.log(blurred.clamp(0.001, 50.0)), (1, 1, 1, 1), mode="replicate")

    valid = (coords[..., 0] >= 0) & (coords[..., 1] >= 0)
    x, y = coords[..., 0].long() + 1, coords[..., 1].long() + 1  # in the padded map
    sample = _Sampler(log_maps, x, y, valid)
    centre = sample(0, 0)
    right, left, down, up = sample(1, 0), sample(-1, 0), sample(0, 1), sample(0, -1)
    dx = 0.5 * (right - left)
    dy = 0.5 * (down - up)
    dxx = right - 2 * centre + left
    dyy = down - 2 * centre + up
    dxy = 0.5 * (sample(1, 1) - right - down + 2 * centre - left - up + sample(-1, -1))
    eps = torch.finfo(torch.float32).eps
    dxx, dyy = dxx + eps, dyy + eps
    determinant = dxx * dyy - dxy**2
    return coords.float() + _newton_step(dx, dy, dxx, dxy, dyy, determinant, valid)


def _newton_step(
    dx: torch.Tensor,
    dy: torch.Tensor,
    dxx: torch.Tensor,
    dxy: torch.Tensor,
    dyy: torch.Tensor,
    determinant: torch.Tensor,
    apply: torch.Tensor,
) -> torch.Tensor:
    """``-H^-1 g`` as ``(B, K, 2)`` where ``apply``, 0 elsewhere (the 2x2 inverse written out)."""
    safe = torch.where(apply, determinant, torch.ones_like(determinant))
    step_x = -(dyy * dx - dxy * dy) / safe
    step_y = -(dxx * dy - dxy * dx) / safe
    step = torch.stack((step_x, step_y), dim=-1)
    return torch.where(apply[..., None], step, torch.zeros_like(step))


class _Sampler:
    """Reads ``maps[b, k, y + dy, x + dx]`` for all keypoints at once; positions where ``valid`` is
    False read pixel (0, 0) instead, so that callers can mask them without an out-of-range index."""

    def __init__(self, maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> None:
        batch, keypoints, height, width = maps.shape
        self._flat = maps.reshape(batch, keypoints, height * width)
        self._width = width
        self._x = torch.where(valid, x, torch.zeros_like(x))
        self._y = torch.where(valid, y, torch.zeros_like(y))
        self._valid = valid

    def __call__(self, dx: int, dy: int) -> torch.Tensor:
        index = (self._y + dy) * self._width + (self._x + dx)
        index = torch.where(self._valid, index, torch.zeros_like(index))
        return self._flat.gather(2, index.unsqueeze(-1)).squeeze(-1)


def _reflect101(index: torch.Tensor, length: int) -> torch.Tensor:
    """OpenCV's BORDER_REFLECT_101 source index for any integer index, reflecting as often as needed
    when the map is shorter than the kernel radius."""
    if length == 1:
        return torch.zeros_like(index)
    period = 2 * (length - 1)
    index = torch.remainder(index, period)
    return torch.where(index >= length, period - index, index)
