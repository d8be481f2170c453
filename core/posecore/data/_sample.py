"""The sample contract: what every dataset yields and every transform reads and writes.

A sample is a plain ``dict`` (transforms add keys freely) whose core keys are documented by
:class:`Sample`. :func:`check_sample` enforces the contract; :func:`collate_samples` is the one
place batches are assembled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
import torch

from posecore.data._metainfo import DatasetMeta

__all__ = ["REQUIRED_SAMPLE_KEYS", "Sample", "check_sample", "collate_samples"]


class Sample(TypedDict, total=False):
    """Fields of one top-down instance.

    Required:
        image: (H, W, 3) uint8 RGB array (or a (3, H, W) float tensor after the pipeline).
        keypoints: (K, 2) float32 x, y in image pixels.
        visibility: (K,) float32 in [0, 1]; 0 = not labelled.
        bbox: (4,) float32 x1, y1, x2, y2.
        image_id: int; id: int (annotation id, unique per dataset).
        dataset_index: int, which of the experiment's datasets this came from.
        category_id: int (MP-100 categories, animals, ...; 1 for people).
        meta: the dataset's :class:`DatasetMeta`.
    Optional, added by transforms or plugins:
        center (2,), scale (2,), heatmaps, keypoint_weights, text, support (list of samples),
        image_path.
    """

    image: Any
    keypoints: np.ndarray
    visibility: np.ndarray
    bbox: np.ndarray
    image_id: int
    id: int
    dataset_index: int
    category_id: int
    meta: DatasetMeta
    image_path: str


REQUIRED_SAMPLE_KEYS = ("image", "keypoints", "visibility", "bbox", "image_id", "id", "dataset_index", "category_id", "meta")


def check_sample(sample: Mapping[str, Any], num_keypoints: int, *, where: str = "sample") -> None:
    """Raise ``ValueError`` naming the field if ``sample`` breaks the contract."""
    missing = [key for key in REQUIRED_SAMPLE_KEYS if key not in sample]
    if missing:
        raise ValueError(f"{where} lacks required key(s) {', '.join(missing)}")
    image = sample["image"]
    shape = tuple(image.shape)
    if not (len(shape) == 3 and (shape[2] == 3 or shape[0] == 3)):
        raise ValueError(f"{where}: image must be (H, W, 3) or (3, H, W); got shape {shape}")
    expectations = {"keypoints": (num_keypoints, 2), "visibility": (num_keypoints,), "bbox": (4,)}
    for key, expected in expectations.items():
        got = tuple(np.shape(sample[key]))
        if got != expected:
            raise ValueError(f"{where}: {key} must have shape {expected}; got {got}")
    if not isinstance(sample["meta"], DatasetMeta):
        raise ValueError(f"{where}: meta must be a DatasetMeta; got {type(sample['meta']).__name__}")
    if sample["meta"].num_keypoints != num_keypoints:
        raise ValueError(f"{where}: meta declares {sample['meta'].num_keypoints} keypoints, expected {num_keypoints}")


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack arrays and tensors of equal shape into tensors, and numbers into a 1-D tensor; keep
    everything else (strings, metainfo, bools, mixed or ragged values) as lists."""
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [sample[key] for sample in samples]
        first = values[0]
        if all(isinstance(v, (np.ndarray, torch.Tensor)) for v in values) and all(
            np.shape(v) == np.shape(first) for v in values
        ):
            batch[key] = torch.stack([torch.as_tensor(v) for v in values])
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
