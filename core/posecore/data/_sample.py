"""The sample and batch contracts: what datasets yield, transforms add, and the engine and models read.

A sample is a plain ``dict`` (transforms and plugins add keys freely) whose keys are declared by
:class:`Sample`: the keys every dataset must give are required, everything a reader, a transform,
the engine or a plugin adds on the way is optional (``NotRequired``). :func:`check_sample`
enforces the required core; :func:`collate_samples` is the one place samples become a
:class:`Batch`, which declares the same keys, collated.

The two TypedDicts are the reference: a key the core reads is declared here with its shape and
meaning (a test builds real samples through real pipelines and scans the core's source to keep
it so). Optional keys are declared through ``total=False`` subclasses, which is how a TypedDict
says ``NotRequired`` on every Python posecore supports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
import torch

from posecore.data._metainfo import DatasetMeta

__all__ = ["REQUIRED_SAMPLE_KEYS", "Batch", "Sample", "check_sample", "collate_samples"]


class _RequiredSampleKeys(TypedDict):
    """What every dataset's ``dataset[i]`` gives (``K`` keypoints, image pixels)."""

    #: (H, W, 3) uint8 RGB array; after ``pack_sample`` the (3, h, w) uint8 tensor of the input
    #: crop. Readers that let the pipeline read the image (``annotation(i)``) omit it until then.
    image: Any
    #: (K, 2) float32 x, y in image pixels; after ``topdown_affine``, in input-crop pixels.
    keypoints: np.ndarray
    #: (K,) float32 in [0, 1]; 0 = not labelled (not trained on, not scored).
    visibility: np.ndarray
    #: (4,) float32 x1, y1, x2, y2 of the instance's box (ground truth or detector), image pixels.
    bbox: np.ndarray
    #: The image's id in its annotation file (COCO's ``image_id``; what results files carry).
    image_id: int
    #: The annotation's id, unique per dataset; -1 for boxes that are no annotation (detections
    #: at predict time).
    id: int
    #: Which of the experiment's datasets the sample came from (PoseBH picks expert and head by it).
    dataset_index: int
    #: The instance's category (1 for people; MP-100 / AP-10K categories otherwise).
    category_id: int
    #: The sample's keypoint set (the dataset's, or its category's for MP-100).
    meta: DatasetMeta


class Sample(_RequiredSampleKeys, total=False):
    """One top-down instance. The required keys are those of ``_RequiredSampleKeys`` (listed in
    :data:`REQUIRED_SAMPLE_KEYS`); every key below is optional and says who adds it."""

    # -- added by readers, for the metrics and the pipeline -------------------------------------
    #: Where the image is read from (readers that read lazily).
    image_path: str
    #: (width, height) of the image when the file states it; ``random_flip`` mirrors about it.
    image_size: tuple[float, float] | None
    #: The detector's score of ``bbox``; 1.0 for ground-truth boxes. COCO AP rescores with it.
    bbox_score: float
    #: This instance's box padding, overriding ``get_bbox_center_scale``'s (InterHand2.6M single hands: 1.5).
    bbox_padding: float
    #: MPII: 0.6 x the head-box diagonal, PCKh's normaliser (when ``headbox_file`` is given).
    head_size: float
    #: InterHand2.6M: (2,) float32 (right hand present, left hand present).
    hand_type: np.ndarray
    #: InterHand2.6M: whether ``hand_type`` is annotated.
    hand_type_valid: float
    #: InterHand2.6M with ``hands="each"``: ``"right"`` or ``"left"``; ``(id, hand)`` is unique.
    hand: str
    #: MP-100: (K,) float32, the keypoints to score: labelled on the query and on every support
    #: sample. The engine scores by it instead of ``visibility`` when present.
    eval_visibility: np.ndarray
    #: MP-100 episodes: the episode this query belongs to (one instance can be the query of
    #: several); metrics de-duplicate by it.
    episode: int
    #: Few-shot episodes (MP-100 ``episodes=True``): the support samples, each transformed by the
    #: pipeline like the query. Read by few-shot models (Pose Anything).
    support: list[Sample]

    # -- added by the top-down pipeline ----------------------------------------------------------
    #: (2,) float32 box centre, image pixels (``get_bbox_center_scale``, moved by augmentation).
    center: np.ndarray
    #: (2,) float32 padded box (width, height), image pixels; the input's aspect ratio after ``topdown_affine``.
    scale: np.ndarray
    #: Degrees of random rotation (``random_bbox_transform``); 0 otherwise.
    rotation: float
    #: The x of the mirror axis while a flip is pending (``random_flip``); ``topdown_affine``
    #: consumes it and leaves ``flipped``.
    flip_axis: float | None
    #: (2, 3) float32 affine from image pixels to input-crop pixels (``topdown_affine``). The
    #: engine maps predictions back to the image with its inverse.
    warp: np.ndarray
    #: (K, 2) float32 ``keypoints`` in image pixels, as they were before the crop: what
    #: evaluation scores against (``topdown_affine``).
    image_keypoints: np.ndarray
    #: Whether the crop is mirrored (``topdown_affine``).
    flipped: bool
    #: With ``data.jpeg_decode: device``: the JPEG file's bytes, left for the engine to decode on
    #: the model's device (``image`` is zeros until then); ``b""`` when the loader decoded the
    #: image (``topdown_affine``).
    jpeg: bytes
    #: (2, 3) float64 affine from input-crop pixels to the JPEG's stored pixels: the inverse of
    #: ``warp`` after the EXIF orientation (``topdown_affine``, with ``jpeg``).
    jpeg_crop_to_file: np.ndarray
    #: (K, h, w) float32 training targets of heatmap codecs (``generate_target``).
    heatmaps: np.ndarray
    #: (K, 2) float32 training targets of coordinate codecs, fractions of the input (``generate_target``).
    keypoint_labels: np.ndarray
    #: (K,) float32 per-keypoint loss weights (``generate_target``; x the keypoint set's joint
    #: weights when ``use_joint_weights``).
    keypoint_weights: np.ndarray

    # -- added by the engine -------------------------------------------------------------------
    #: Evaluation: the sample's index in its dataset; results are de-duplicated and ordered by it
    #: after the processes' shares are gathered.
    sample_index: int

    # -- added by method plugins (the core never reads these) ------------------------------------
    #: A text prompt for the instance (VLPose, PGVL).
    text: str
    #: The image's style, e.g. Human-Art's ``cartoon`` (VLPose picks its prompt by it).
    style: str


#: The keys every dataset must give, in declaration order; :func:`check_sample` requires them.
REQUIRED_SAMPLE_KEYS: tuple[str, ...] = tuple(key for key in Sample.__annotations__ if key in Sample.__required_keys__)


class _RequiredBatchKeys(TypedDict):
    """What every batch has, from a data loader or a model's ``example_batch``."""

    #: (B, 3, H, W) uint8 input crops (models normalise them), or float images already
    #: normalised (``example_batch``, exported graphs).
    image: torch.Tensor


class Batch(_RequiredBatchKeys, total=False):
    """Samples collated by :func:`collate_samples`: each :class:`Sample` key, over the batch.

    Arrays of one shape become a tensor with a leading batch axis ``B``, numbers a ``(B,)``
    tensor, anything else (strings, metainfo, booleans, ``None``, arrays whose shapes differ, as
    when MP-100 mixes keypoint counts) a list of ``B`` values. The meaning of each key is that of
    :class:`Sample`; only the collated form is given here. A training batch carries the codec's
    targets; an evaluation batch also ``warp``, ``image_keypoints`` and ``sample_index``.
    """

    keypoints: torch.Tensor  #: (B, K, 2) float32 (input-crop pixels after the pipeline)
    visibility: torch.Tensor  #: (B, K) float32
    bbox: torch.Tensor  #: (B, 4) float32 x1, y1, x2, y2, image pixels
    image_id: torch.Tensor  #: (B,) int64
    id: torch.Tensor  #: (B,) int64
    category_id: torch.Tensor  #: (B,) int64
    dataset_index: torch.Tensor  #: (B,) int64
    meta: list[DatasetMeta]  #: B keypoint sets
    image_path: list[str]
    image_size: list[tuple[float, float] | None]
    bbox_score: torch.Tensor  #: (B,) float32
    bbox_padding: torch.Tensor  #: (B,) float32
    head_size: torch.Tensor  #: (B,) float32
    hand_type: torch.Tensor  #: (B, 2) float32
    hand_type_valid: torch.Tensor  #: (B,) float32
    hand: list[str]
    eval_visibility: torch.Tensor  #: (B, K) float32
    episode: torch.Tensor  #: (B,) int64
    support: list[list[Sample]]  #: per query, its support samples (not collated: models stack them)
    center: torch.Tensor  #: (B, 2) float32
    scale: torch.Tensor  #: (B, 2) float32
    rotation: torch.Tensor  #: (B,) float32
    flip_axis: list[float | None]
    warp: torch.Tensor  #: (B, 2, 3) float32 image -> crop
    image_keypoints: torch.Tensor  #: (B, K, 2) float32, image pixels
    flipped: list[bool]
    jpeg: list[bytes]  #: consumed by the engine when the batch moves to the device
    jpeg_crop_to_file: torch.Tensor  #: (B, 2, 3) float64
    heatmaps: torch.Tensor  #: (B, K, h, w) float32
    keypoint_labels: torch.Tensor  #: (B, K, 2) float32
    keypoint_weights: torch.Tensor  #: (B, K) float32
    sample_index: torch.Tensor  #: (B,) int64
    text: list[str]
    style: list[str]


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


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> Batch:
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
    return batch  # type: ignore[return-value]
