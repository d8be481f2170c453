"""Top-down transforms, with mmpose 0.x semantics (the five methods are 0.x forks).

Every transform is ``(sample, rng) -> sample`` over the :class:`~posecore.data.Sample` mapping.
The geometric ones (flip, half-body, scale/rotation/shift) only change the box and keypoints;
:class:`TopdownAffine` then reads the image and warps it ONCE with the composed matrix (the
flip is folded into it), and :class:`GenerateTarget` encodes targets with the experiment's
codec, vectorised over keypoints. That ordering is what makes the pipeline fast: no full-size
image is ever flipped or copied.

Sample fields the transforms add: ``center`` (2,) and ``scale`` (2,) of the box in pixels,
``rotation`` (degrees), ``flip_axis`` (``None`` or the ``a`` of ``x -> a - x``; replaced by the
bool ``flipped`` once the warp is done), ``warp`` (2, 3) image-to-input matrix, ``image_keypoints`` (the keypoints before the warp, in the image's
frame, mirrored if the sample was flipped), then the codec's targets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from posecore.config._experiment import JPEG_DECODE_PLACES, JpegDecode
from posecore.data._geometry import (
    apply_affine,
    compose_affine,
    fix_aspect_ratio,
    horizontal_flip_matrix,
    invert_affine,
    standard_warp_matrix,
    udp_warp_matrix,
)
from posecore.data._images import EncodedJpeg, read_encoded_jpeg, read_image

__all__ = [
    "CenterShift",
    "Compose",
    "GenerateTarget",
    "GetBBoxCenterScale",
    "PackSample",
    "RandomBBoxTransform",
    "RandomFlip",
    "RandomHalfBody",
    "TopdownAffine",
]

SampleDict = dict[str, Any]


class Compose:
    """Apply transforms in order, passing each the same generator."""

    def __init__(self, transforms: Sequence[Callable[[SampleDict, np.random.Generator], SampleDict]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: SampleDict, rng: np.random.Generator) -> SampleDict:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({', '.join(type(t).__name__ for t in self.transforms)})"


class GetBBoxCenterScale:
    """Box -> ``center`` and ``scale`` (w, h), the size padded by ``padding`` (1.25 in every
    method here). A sample's own ``bbox_padding`` wins: a reader whose original crops its
    instances differently says so per instance (InterHand2.6M single hands: 1.5). The aspect
    ratio is fixed later by :class:`TopdownAffine`."""

    def __init__(self, padding: float = 1.25) -> None:
        self.padding = padding

    def __call__(self, sample: SampleDict, rng: np.random.Generator) -> SampleDict:
        x1, y1, x2, y2 = (float(v) for v in sample["bbox"])
        padding = float(sample.get("bbox_padding", self.padding))
        sample["center"] = np.array([(x1 + x2) / 2, (y1 + y2) / 2], dtype=np.float32)
        sample["scale"] = np.array([x2 - x1, y2 - y1], dtype=np.float32) * padding
        sample.setdefault("rotation", 0.0)
        sample.setdefault("flip_axis", None)
        return sample


class CenterShift:
    """Move the box centre of a fraction ``prob`` of the instances by up to ``factor`` of the padded
    box, uniformly on each axis: mmpose 0.x's COCO-style and InterHand loaders move 30% of the
    training boxes by up to 0.2 of the unpadded box (``factor=0.16`` after the 1.25 padding) when
    the dataset is built.

    It belongs right after :class:`GetBBoxCenterScale`, before the flip (which mirrors the moved
    centre) and the half-body crop (which replaces the box, so the shift is discarded), the order
    in which mmpose 0.x applies it. With ``once`` (the original's behaviour) each instance is
    drawn once for the whole run, from ``seed`` and the instance's identity (dataset, image,
    annotation id, hand, box), so every epoch, data-loader worker and process sees the same
    shift, as a draw made when the dataset is built; ``once=False`` draws anew every epoch from the
    sample's generator. (:class:`RandomBBoxTransform`'s shift is mmpose 1.x's: every epoch, after
    the half-body crop.)
    """

    def __init__(self, factor: float = 0.16, prob: float = 0.3, once: bool = True, seed: int = 0) -> None:
        self.factor = factor
        self.prob = prob
        self.once = once
        self.seed = seed

    def __call__(self, sample: SampleDict, rng: np.random.Generator) -> SampleDict:
        draw = np.random.default_rng((self.seed, _instance_digest(sample))) if self.once else rng
        if draw.random() < self.prob:
            sample["center"] = (sample["center"] + draw.uniform(-1, 1, 2) * self.factor * sample["scale"]).astype(np.float32)
        return sample


def _instance_digest(sample: SampleDict) -> int:
    """A 64-bit number that names an instance of a dataset the same way in every epoch and process."""
    bbox = np.ascontiguousarray(sample["bbox"], dtype=np.float64).tobytes()
    key = repr((sample.get("dataset_index"), sample.get("image_id"), sample.get("id"), sample.get("hand"))).encode()
    return int.from_bytes(hashlib.blake2b(key + bbox, digest_size=8).digest(), "little")


class RandomFlip:
    """Mirror horizontally with probability ``prob``, swapping left/right keypoints with the
    sample's ``meta.flip_indices`` (any K: 17, 133, 42...).

    The mirror axis is the image's ``x -> W - 1 - x`` when its width is known, as mmpose does;
    otherwise ``x -> 2 cx - x`` about the box centre, which gives the identical crop.
    """

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, sample: SampleDict, rng: np.random.Generator) -> SampleDict:
        if rng.random() >= self.prob:
            return sample
        size = sample.get("image_size")
        axis = float(size[0] - 1) if size is not None else 2.0 * float(sample["center"][0])
        flip = sample["meta"].flip_indices or tuple(range(len(sample["keypoints"])))
        keypoints = sample["keypoints"][list(flip)]
        keypoints[:, 0] = axis - keypoints[:, 0]
        sample["keypoints"] = keypoints
        sample["visibility"] = sample["visibility"][list(flip)]
        sample["center"] = np.array([axis - sample["center"][0], sample["center"][1]], dtype=np.float32)
        if sample.get("flip_axis") is not None:
            raise ValueError("RandomFlip: this sample was already flipped; a pipeline flips at most once")
        sample["flip_axis"] = axis
        return sample


class RandomHalfBody:
    """With probability ``prob``, crop to the upper or lower body (mmpose 0.x
    ``TopDownHalfBodyTransform``): needs more than ``min_visible`` labelled keypoints; picks the
    upper body when a standard normal draw is below 0.5 and it has more than two labelled
    keypoints (so about 69% of the time, as the original does), else the lower body if it has
    more than two (the lower body being every keypoint outside ``upper_body_ids``, as in 0.x);
    the box is the selected keypoints' extent, aspect-fixed and padded by
    ``padding``. Keypoint sets without upper/lower ids are left alone. ``input_size`` (width,
    height) gives the aspect ratio."""

    def __init__(self, prob: float = 0.3, min_visible: int = 8, padding: float = 1.5,
                 input_size: tuple[int, int] = (192, 256)) -> None:
        self.prob = prob
        self.min_visible = min_visible
        self.padding = padding
        self.aspect_ratio = input_size[0] / input_size[1]

    def __call__(self, sample: SampleDict, rng: np.random.Generator) -> SampleDict:
        meta = sample["meta"]
        visible = sample["visibility"] > 0
        if not meta.upper_body_ids or visible.sum() <= self.min_visible or rng.random() >= self.prob:
            return sample
        in_upper = np.zeros_like(visible)
        in_upper[list(meta.upper_body_ids)] = True
        upper, lower = visible & in_upper, visible & ~in_upper  # 0.x: every other keypoint is "lower"
        if rng.standard_normal() < 0.5 and upper.sum() > 2:
            selected = upper
        else:
            selected = lower if lower.sum() > 2 else upper
        if selected.sum() < 2:
            return sample
        points = sample["keypoints"][selected]
        low, high = points.min(axis=0), points.max(axis=0)
        sample["center"] = points.mean(axis=0).astype(np.float32)
        sample["scale"] = fix_aspect_ratio(high - low, self.aspect_ratio) * self.padding
        return sample


class RandomBBoxTransform:
    """Random scale, rotation and shift of the box (mmpose 0.x ``TopDownGetRandomScaleRotation``
    semantics, plus mmpose 1.x's optional shift).

    scale *= clip(1 + N(0, 1) * scale_factor, 1 - scale_factor, 1 + scale_factor);
    rotation = clip(N(0, 1) * rotate_factor, -2 rotate_factor, 2 rotate_factor) with probability
    ``rotate_prob``, else 0; with probability ``shift_prob`` the centre moves by up to
    ``shift_factor`` of the box size, uniformly.
    """

    def __init__(self, scale_factor: float = 0.35, rotate_factor: float = 45.0, rotate_prob: float = 0.6,
                 shift_factor: float = 0.0, shift_prob: float = 0.0) -> None:
        self.scale_factor = scale_factor
        self.rotate_factor = rotate_factor
        self.rotate_prob = rotate_prob
        self.shift_factor = shift_factor
        self.shift_prob = shift_prob

    def __call__(self, sample: SampleDict, rng: np.random.Generator) -> SampleDict:
        sf, rf = self.scale_factor, self.rotate_factor
        zoom = float(np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf))
        rotation = float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf)) if rng.random() <= self.rotate_prob else 0.0
        if self.shift_prob and rng.random() < self.shift_prob:
            sample["center"] = (sample["center"] + rng.uniform(-1, 1, 2) * self.shift_factor * sample["scale"]).astype(np.float32)
        sample["scale"] = (sample["scale"] * zoom).astype(np.float32)
        sample["rotation"] = sample.get("rotation", 0.0) + rotation
        return sample


class TopdownAffine:
    """Read the image and warp the box to ``input_size`` (width, height) in one ``warpAffine``.

    The box is first grown to the input's aspect ratio. ``use_udp`` selects the UDP warp
    (PoseBH/ViTPose on COCO and MPII) instead of the standard one. Keypoints are mapped with the
    same matrix; the image becomes (H, W, 3) uint8.

    ``jpeg_decode="device"`` leaves a JPEG file undecoded: the sample gets a zero image, the
    file's bytes as ``jpeg`` and where each crop pixel lies in the stored pixels as
    ``jpeg_crop_to_file`` (the crop matrix after the EXIF orientation, inverted), and the engine
    decodes and warps it on the model's device (:mod:`posecore.data._device_decode`). Images
    read otherwise get ``jpeg=b""``, so every sample of a batch has the same keys.
    """

    def __init__(self, input_size: tuple[int, int] = (192, 256), use_udp: bool = False,
                 jpeg_decode: JpegDecode = "loader") -> None:
        import cv2

        if jpeg_decode not in JPEG_DECODE_PLACES:
            raise ValueError(f"topdown_affine: jpeg_decode must be one of {JPEG_DECODE_PLACES}; got {jpeg_decode!r}")
        self._cv2 = cv2
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.use_udp = use_udp
        self.on_device = jpeg_decode == "device"

    def __call__(self, sample: SampleDict, rng: np.random.Generator) -> SampleDict:
        width, height = self.input_size
        scale = fix_aspect_ratio(sample["scale"], width / height)
        make = udp_warp_matrix if self.use_udp else standard_warp_matrix
        box_warp = make(sample["center"], scale, sample.get("rotation", 0.0), self.input_size)
        warp = box_warp
        if sample.get("flip_axis") is not None:
            warp = compose_affine(box_warp, horizontal_flip_matrix(sample["flip_axis"]))
        image = sample.get("image")
        if image is None:
            read = read_encoded_jpeg if self.on_device else read_image
            image = read(sample["image_path"], image_id=sample.get("image_id"), expected_size=sample.get("image_size"))
        if isinstance(image, EncodedJpeg):
            sample["image"] = np.zeros((height, width, 3), np.uint8)
            sample["jpeg"] = image.data
            sample["jpeg_crop_to_file"] = invert_affine(compose_affine(warp, image.to_upright))
        else:
            sample["image"] = self._cv2.warpAffine(image, warp, (width, height), flags=self._cv2.INTER_LINEAR)
            if self.on_device:
                sample["jpeg"], sample["jpeg_crop_to_file"] = b"", np.zeros((2, 3))
        sample["image_keypoints"] = sample["keypoints"]
        sample["keypoints"] = apply_affine(sample["keypoints"], box_warp)
        sample["scale"] = scale
        sample["warp"] = warp.astype(np.float32)
        sample["flipped"] = sample.pop("flip_axis", None) is not None
        return sample


class GenerateTarget:
    """Encode the keypoints with ``codec`` (the experiment's, shared with the head) and add its
    outputs (``heatmaps``/``keypoint_labels`` and ``keypoint_weights``) to the sample.

    Args:
        codec: an object with ``encode(keypoints, visibility) -> dict`` (see posecore.codecs).
        use_joint_weights: multiply the weights by the keypoint set's ``joint_weights``
            (mmpose's ``use_different_joint_weights``).
    """

    def __init__(self, codec: Any, use_joint_weights: bool = False) -> None:
        self.codec = codec
        self.use_joint_weights = use_joint_weights

    def __call__(self, sample: SampleDict, rng: np.random.Generator) -> SampleDict:
        targets = self.codec.encode(sample["keypoints"], sample["visibility"])
        if self.use_joint_weights and sample["meta"].joint_weights:
            targets["keypoint_weights"] = targets["keypoint_weights"] * np.asarray(sample["meta"].joint_weights, np.float32)
        sample.update(targets)
        return sample


class PackSample:
    """Make the image a (3, H, W) uint8 tensor. Normalisation (mean/std, float) is left to the
    model on its device, where it is batched and cheap, as mmpose 1.x's data preprocessor does."""

    def __call__(self, sample: SampleDict, rng: np.random.Generator) -> SampleDict:
        sample["image"] = torch.from_numpy(np.ascontiguousarray(sample["image"].transpose(2, 0, 1)))
        return sample
