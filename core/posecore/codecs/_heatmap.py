"""Heatmap codecs (MSRA, UDP) and the batched maxima every heatmap decoder starts from.

``MSRAHeatmap`` and ``UDPHeatmap`` reproduce mmpose 0.x: the targets of ``TopDownGenerateTarget``
(``encoding='MSRA'`` / ``'UDP'``, Gaussian kind) and the decoding of ``keypoints_from_heatmaps``
(``post_process='default'`` or ``'unbiased'``; ``use_udp=True`` with ``post_dark_udp``), with the
test-time ``flip_back`` and ``shift_heatmap`` of the top-down models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from posecore.codecs._base import check_keypoint_arrays, check_size
from posecore.codecs._flip import flip_heatmaps
from posecore.codecs._gaussian import msra_gaussian_heatmaps, udp_gaussian_heatmaps
from posecore.codecs._refine import dark_refine, dark_udp_refine, opencv_gaussian_kernel, quarter_pixel_shift

__all__ = ["MSRAHeatmap", "UDPHeatmap", "heatmap_argmax", "heatmap_maxima"]


def heatmap_argmax(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Locate each heatmap's maximum.

    Args:
        heatmaps: (B, K, H, W).

    Returns:
        coords: (B, K, 2) integer x, y of the maximum, as float32.
        scores: (B, K) the maximum value.
    """
    batch, keypoints, _, width = heatmaps.shape
    scores, flat_index = heatmaps.float().flatten(2).max(dim=2)
    coords = torch.stack((flat_index % width, torch.div(flat_index, width, rounding_mode="floor")), dim=2)
    return coords.to(torch.float32).reshape(batch, keypoints, 2), scores


def heatmap_maxima(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`heatmap_argmax` with mmpose's convention for empty maps: coords ``(-1, -1)`` where the
    maximum is ``<= 0`` (so no refinement touches them); scores are the maxima either way.

    Args:
        heatmaps: (B, K, H, W).

    Returns:
        coords (B, K, 2) float32 heatmap pixels, scores (B, K) float32.
    """
    coords, scores = heatmap_argmax(heatmaps)
    return torch.where((scores > 0)[..., None], coords, torch.full_like(coords, -1.0)), scores


class _GaussianHeatmapCodec:
    """What MSRA and UDP share: sizes, validation, the decode skeleton."""

    _shift_flipped: bool
    _minimum_size = 1

    def __init__(
        self, input_size: tuple[int, int], heatmap_size: tuple[int, int], sigma: float, blur_kernel_size: int
    ) -> None:
        owner = type(self).__name__
        self.input_size = check_size(owner, "input_size", input_size, minimum=self._minimum_size)
        self.heatmap_size = check_size(owner, "heatmap_size", heatmap_size, minimum=self._minimum_size)
        if any(h > i for h, i in zip(self.heatmap_size, self.input_size, strict=True)):
            raise ValueError(
                f"{owner}: heatmap_size {self.heatmap_size} is larger than input_size {self.input_size}; "
                "heatmaps are at most input resolution, e.g. input (192, 256) with heatmap (48, 64)"
            )
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
            raise ValueError(f"{owner}: sigma must be a positive number of heatmap pixels (e.g. 2.0); got {sigma!r}")
        try:
            opencv_gaussian_kernel(blur_kernel_size)
        except ValueError as exc:
            raise ValueError(f"{owner}: {exc}") from None
        self.sigma = float(sigma)
        self.blur_kernel_size = blur_kernel_size

    def flip_back(self, outputs: torch.Tensor, flip_indices: Sequence[int]) -> torch.Tensor:
        """Heatmaps ``(B, K, H, W)`` of the flipped input, mirrored back with channels swapped."""
        return flip_heatmaps(outputs, flip_indices, shift=self._shift_flipped)

    def _check_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        width, height = self.heatmap_size
        if outputs.ndim != 4 or tuple(outputs.shape[2:]) != (height, width):
            raise ValueError(
                f"{type(self).__name__}.decode: expected heatmaps (B, K, {height}, {width}) for heatmap_size "
                f"{self.heatmap_size}; got {tuple(outputs.shape)}"
            )
        return outputs.float()

    def _to_input_pixels(self, coords: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
        return coords * torch.tensor(scale, dtype=torch.float32, device=coords.device)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
            f"sigma={self.sigma:g}, blur_kernel_size={self.blur_kernel_size})"
        )


class MSRAHeatmap(_GaussianHeatmapCodec):
    """Gaussian heatmaps at ``stride = input_size / heatmap_size`` (Simple Baselines / HRNet).

    Encode draws a unit-peak Gaussian of ``sigma`` heatmap pixels around ``int(coord / stride + 0.5)``
    (see :mod:`posecore.codecs._gaussian`). Decode takes the argmax, then either the quarter-pixel
    shift toward the higher neighbour (``unbiased=False``) or DARK (``unbiased=True``, blur kernel
    ``blur_kernel_size``, which should match sigma: 11 for sigma 2, 17 for sigma 3), and maps heatmap
    pixel ``x`` to input pixel ``x * stride``. ``flip_back`` also shifts the mirrored maps one pixel
    right (mmpose ``shift_heatmap=True``), which compensates the half-pixel asymmetry of this stride.

    Args:
        input_size: ``(width, height)`` of the network input.
        heatmap_size: ``(width, height)`` of the heatmaps, at most ``input_size``.
        sigma: Gaussian standard deviation in heatmap pixels.
        unbiased: decode with DARK instead of the quarter-pixel shift.
        blur_kernel_size: odd size of DARK's Gaussian blur.

    Example::

        codec = MSRAHeatmap((192, 256), (48, 64), sigma=2.0)
        targets = codec.encode(keypoints, visibility)  # heatmaps (17, 64, 48), keypoint_weights (17,)
        keypoints, scores = codec.decode(model(images))  # (B, 17, 2) input pixels, (B, 17)
    """

    _shift_flipped = True

    def __init__(
        self,
        input_size: tuple[int, int],
        heatmap_size: tuple[int, int],
        sigma: float = 2.0,
        unbiased: bool = False,
        blur_kernel_size: int = 11,
    ) -> None:
        super().__init__(input_size, heatmap_size, sigma, blur_kernel_size)
        self.unbiased = bool(unbiased)

    def encode(self, keypoints: np.ndarray, visibility: np.ndarray) -> dict[str, np.ndarray]:
        """keypoints ``(..., K, 2)``, visibility ``(..., K)`` -> heatmaps ``(..., K, h, w)``, keypoint_weights ``(..., K)``."""
        keypoints, visibility = check_keypoint_arrays(type(self).__name__, keypoints, visibility)
        heatmaps, weights = msra_gaussian_heatmaps(
            keypoints, visibility, self.input_size, self.heatmap_size, self.sigma
        )
        return {"heatmaps": heatmaps, "keypoint_weights": weights}

    def decode(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmaps ``(B, K, h, w)`` -> keypoints ``(B, K, 2)`` float32 input pixels, scores ``(B, K)``.

        Maps whose maximum is ``<= 0`` give heatmap position -1, i.e. ``-stride`` input pixels, and
        their (non-positive) maximum as score, as in mmpose.
        """
        heatmaps = self._check_outputs(outputs)
        coords, scores = heatmap_maxima(heatmaps)
        if self.unbiased:
            coords = dark_refine(heatmaps, coords, self.blur_kernel_size)
        else:
            coords = quarter_pixel_shift(heatmaps, coords)
        scale = tuple(i / h for i, h in zip(self.input_size, self.heatmap_size, strict=True))
        return self._to_input_pixels(coords, scale), scores

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", unbiased={self.unbiased})"


class UDPHeatmap(_GaussianHeatmapCodec):
    """Unbiased Data Processing heatmaps: ``stride = (input_size - 1) / (heatmap_size - 1)``.

    Encode draws a unit-peak Gaussian centred on the exact ``coord / stride``. Decode is mmpose's
    DARK-UDP (:func:`~posecore.codecs._refine.dark_udp_refine`), then heatmap pixel ``x`` maps to
    input pixel ``x * (input_size - 1) / (heatmap_size - 1)``: the exact inverse of the encoding,
    and what mmpose 0.x's UDP ``transform_preds`` gives in the crop frame. (mmpose 1.x instead
    divides by ``heatmap_size - 1`` and multiplies by ``input_size``, which is off by up to one
    input pixel at the far edge; we do not follow it.) ``flip_back`` does not shift: with this
    stride the mirrored map is already aligned.

    Args:
        input_size: ``(width, height)`` of the network input, each at least 2.
        heatmap_size: ``(width, height)`` of the heatmaps, each at least 2 and at most ``input_size``.
        sigma: Gaussian standard deviation in heatmap pixels.
        blur_kernel_size: odd size of DARK-UDP's Gaussian blur (mmpose's ``modulate_kernel``, 11).
    """

    _shift_flipped = False
    _minimum_size = 2  # the stride divides by heatmap_size - 1

    def __init__(
        self,
        input_size: tuple[int, int],
        heatmap_size: tuple[int, int],
        sigma: float = 2.0,
        blur_kernel_size: int = 11,
    ) -> None:
        super().__init__(input_size, heatmap_size, sigma, blur_kernel_size)

    def encode(self, keypoints: np.ndarray, visibility: np.ndarray) -> dict[str, np.ndarray]:
        """keypoints ``(..., K, 2)``, visibility ``(..., K)`` -> heatmaps ``(..., K, h, w)``, keypoint_weights ``(..., K)``."""
        keypoints, visibility = check_keypoint_arrays(type(self).__name__, keypoints, visibility)
        heatmaps, weights = udp_gaussian_heatmaps(keypoints, visibility, self.input_size, self.heatmap_size, self.sigma)
        return {"heatmaps": heatmaps, "keypoint_weights": weights}

    def decode(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmaps ``(B, K, h, w)`` -> keypoints ``(B, K, 2)`` float32 input pixels, scores ``(B, K)``.

        Maps whose maximum is ``<= 0`` are not refined and give heatmap position -1.
        """
        heatmaps = self._check_outputs(outputs)
        coords, scores = heatmap_maxima(heatmaps)
        coords = dark_udp_refine(heatmaps, coords, self.blur_kernel_size)
        scale = tuple((i - 1) / (h - 1) for i, h in zip(self.input_size, self.heatmap_size, strict=True))
        return self._to_input_pixels(coords, scale), scores
