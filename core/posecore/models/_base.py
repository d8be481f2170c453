"""The model contract the engine relies on, and nothing more.

The trainer knows a model only through :class:`PoseModel`: ``loss(batch)`` for training,
``predict(batch)`` for evaluation and inference, ``example_batch()`` for complexity counting,
export and contract checks, and ``on_stage`` for staged schedules declared in the config. A
batch is a :class:`Batch`: the collated samples, every key and its shape declared there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import nn

from posecore.codecs._flip import average_flipped
from posecore.data._sample import Batch

if TYPE_CHECKING:
    from posecore.codecs._base import Codec

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Batch", "ImageNormalizer", "PoseModel", "PoseResult", "batch_flip_indices",
           "predict_heatmaps"]

#: Pixel statistics every backbone here was pre-trained with (RGB, in [0, 1] units).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    """Base class of every assembled model a plugin registers under ``posecore_models``.

    Every trainable parameter is expected to learn from ``loss``: the contract checks require a
    gradient on each after one backward pass of ``example_batch``. Freeze what is not trained
    (``requires_grad_(False)``); a module whose parameters a step may leave without a gradient by
    design (an expert reached only by its own dataset's samples) names them in a class attribute
    ``parameters_without_gradient``, ``fnmatch`` patterns relative to that module.
    """

    def forward(self, batch: Batch) -> Any:  # noqa: D102 - documented by subclasses
        raise NotImplementedError

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Training losses by name; the trainer back-propagates the sum of all entries."""
        raise NotImplementedError

    def predict(self, batch: Batch, *, flip_test: bool = False) -> PoseResult:
        """Predictions in the pixels of the network input (the crop), decoded in fp32.

        ``flip_test``: also run the horizontally mirrored input and average (models whose method
        has no flip test accept and ignore it). The engine maps the keypoints back to the
        original image with the sample's ``warp``.
        """
        raise NotImplementedError

    def example_batch(self, batch_size: int = 1) -> Batch:
        """A batch of the model's configured input size, enough for ``forward``, ``loss`` and
        ``predict`` (random images, plausible targets)."""
        raise NotImplementedError

    def on_stage(self, index: int, options: Mapping[str, Any]) -> None:
        """Called by the trainer when stage ``index`` of ``TrainConfig.stages`` begins, with that
        stage's ``options``. The trainer itself handles freezing and learning rates."""

    def fit_to_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Resize the parts of the architecture that a checkpoint, not the config, decides, before
        its weights are compared and loaded (posecore's key layout, after any converter).

        The default changes nothing. A model overrides it where released files differ from their
        own configs in a size the tensors make unambiguous (ViTPose++-S's expert width), so that
        loading such a file needs no hand-set override. Anything else that does not fit stays a
        mismatch in the key report."""


class ImageNormalizer(nn.Module):
    """uint8 ``(B, 3, H, W)`` images -> float, normalised by mean/std, on the model's device.

    The data pipeline leaves images as uint8 so that workers send a quarter of the bytes and the
    normalisation runs batched where the model runs. Float images are taken as already
    normalised (``example_batch``, exported graphs). The statistics are non-persistent buffers:
    they are configuration, and foreign checkpoints do not carry them.
    """

    def __init__(self, mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.is_floating_point():
            return images
        return (images.float() - self.mean) / self.std


def batch_flip_indices(batch: Batch) -> list[int]:
    """The flip partner of each keypoint for a batch, from its samples' metainfo.

    A batch mixing keypoint sets cannot be flipped as one tensor; that is a data-loading error.
    """
    metas = batch.get("meta")
    if not metas:
        raise ValueError("flip test needs the samples' 'meta' (their DatasetMeta) in the batch")
    flip_indices = list(metas[0].flip_indices) or list(range(metas[0].num_keypoints))
    if any((list(meta.flip_indices) or list(range(meta.num_keypoints))) != flip_indices for meta in metas[1:]):
        raise ValueError("flip test: this batch mixes keypoint sets with different flip indices; evaluate each dataset on its own")
    return flip_indices


def predict_heatmaps(forward: Callable[[torch.Tensor], torch.Tensor], batch: Batch, codec: Codec | None, *,
                     flip_test: bool, decode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
                     owner: str = "model") -> PoseResult:
    """A heatmap model's prediction: ``forward(images)`` (float32), with the flip test the average
    of it and the mirrored images' heatmaps flipped back by ``codec``, decoded by ``codec`` (or,
    without one, by ``decode``, a head's plain argmax). ``owner`` names the model in errors."""
    heatmaps = forward(batch["image"]).float()
    if flip_test:
        if codec is None:
            raise ValueError(f"{owner}: the flip test needs the experiment's codec (config key 'codec')")
        flipped = forward(batch["image"].flip(-1)).float()
        heatmaps = average_flipped(heatmaps, codec.flip_back(flipped, batch_flip_indices(batch)))
    if codec is None and decode is None:
        raise ValueError(f"{owner}: decoding heatmaps needs the experiment's codec (config key 'codec')")
    keypoints, scores = codec.decode(heatmaps) if codec is not None else decode(heatmaps)
    return PoseResult(keypoints=keypoints, scores=scores, heatmaps=heatmaps)
