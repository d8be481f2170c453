"""The detector contract: what a ``posecore_detectors`` component finds in images, and how the
core chooses what to look for.

Top-down models predict one instance per box, so without a box file ``posecore predict`` and
:class:`posecore.Pose` first ask a detector for the instances: a registered component (the core's
torchvision COCO detectors, or a plugin's) built with the classes the model's keypoint set
describes. Detectors are told the classes rather than choosing them, so one COCO detector serves
people for a COCO model and animals for an AP-10K one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from posecore._errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from posecore._registry import Registries
    from posecore.data._metainfo import DatasetMeta

__all__ = ["DEFAULT_DETECTOR", "DETECTION_CLASSES", "Detections", "Detector", "build_detector", "check_detections",
           "detection_classes", "whole_image_box"]

#: The detector ``posecore predict`` uses when no box file is given: torchvision's strongest COCO box detector.
DEFAULT_DETECTOR = "fasterrcnn_resnet50_fpn_v2"

_PEOPLE = ("person",)
#: COCO's "animal" supercategory.
_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")

#: The COCO classes whose instances a keypoint set describes, by the keypoint set's name
#: (``DatasetMeta.name``: the built-in sets and the files that copy their ``dataset_name``).
#: Hands, faces and MP-100's hundred categories have no COCO class: give boxes, or the classes.
DETECTION_CLASSES: Mapping[str, tuple[str, ...]] = {
    **dict.fromkeys(("coco", "coco_wholebody", "crowdpose", "ochuman", "aic", "mpii", "mpii_trb", "3dpw",
                     "Human-Art"), _PEOPLE),
    **dict.fromkeys(("ap10k", "apt36k", "animalpose"), _ANIMALS),
}


def _array(shape: tuple[int, ...]) -> Any:
    """An attrs converter to a float32 array of ``shape`` (numpy imported on first use: plugin
    discovery, which declares the detectors, stays light)."""
    def convert(value: Any) -> np.ndarray:
        import numpy as np

        return np.asarray(value, np.float32).reshape(shape)

    return convert


@attrs.frozen
class Detections:
    """The instances a detector found in one image.

    Attributes:
        boxes: (N, 4) float32 x1, y1, x2, y2 in the image's pixels.
        scores: (N,) float32 confidences (higher is surer).
        labels: N class names, each one of the classes the detector was built for.
    """

    boxes: np.ndarray = attrs.field(converter=_array((-1, 4)))
    scores: np.ndarray = attrs.field(converter=_array((-1,)))
    labels: tuple[str, ...] = attrs.field(converter=tuple)

    def above(self, threshold: float) -> list[list[float]]:
        """The boxes scoring above ``threshold`` as ``[x1, y1, x2, y2, score]`` lists, best first:
        what :class:`posecore.Pose` takes per image. A box without area (clipped to the image's
        edge) holds no instance to crop and is left out."""
        import numpy as np

        order = np.argsort(-self.scores, kind="stable")
        x1, y1, x2, y2 = self.boxes.T
        kept = (self.scores > threshold) & (x2 > x1) & (y2 > y1)
        return [[*map(float, self.boxes[i]), float(self.scores[i])] for i in order if kept[i]]


@runtime_checkable
class Detector(Protocol):
    """What a ``posecore_detectors`` factory builds: ``detector(images)`` takes RGB uint8
    ``(H, W, 3)`` arrays and returns one :class:`Detections` per image."""

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


def detection_classes(meta: DatasetMeta | None, given: Sequence[str] | None = None) -> tuple[str, ...]:
    """The classes to detect for a model predicting ``meta``: ``given``, else the keypoint set's
    entry in :data:`DETECTION_CLASSES`; an error saying what to do when neither tells."""
    if given:
        return tuple(given)
    if meta is not None and meta.name in DETECTION_CLASSES:
        return DETECTION_CLASSES[meta.name]
    what = f"keypoint set {meta.name!r}" if meta is not None else "this model's keypoint set (unknown)"
    raise ConfigError(f"no detector classes for {what}: posecore knows those of "
                      f"{', '.join(sorted(DETECTION_CLASSES))}. Name them (--detector-classes dog,cat; "
                      "Pose(detector_classes=...)), or give boxes (--boxes FILE) or --whole-image")


def build_detector(registries: Registries, detector: str | Mapping[str, Any] | Detector, *,
                   classes: Sequence[str], device: str, weights: str | None = None) -> Detector:
    """A detector from a registered name or ``{type: NAME, **arguments}`` spec (an object that
    already is one is returned as it is). ``classes`` and ``device`` reach a factory that takes
    them; ``weights`` (a local file) must be accepted by the factory, or it is an error naming it."""
    if not isinstance(detector, (str, Mapping)):
        if weights is not None:
            raise ConfigError("detector weights are given, but the detector is already built; load them into it")
        return detector
    overrides = {} if weights is None else {"weights": str(weights)}
    return registries.detectors.build(detector, context={"classes": tuple(classes), "device": device}, **overrides)


def check_detections(found: Any, images: Sequence[np.ndarray], classes: Sequence[str], where: str) -> list[Detections]:
    """``found`` as the contract has it (one :class:`Detections` per image, finite boxes with
    ``x1 <= x2`` and ``y1 <= y2``, finite scores, labels among ``classes``); else an error naming
    ``where`` and the first thing wrong."""
    import numpy as np

    if not isinstance(found, (list, tuple)) or len(found) != len(images):
        raise ConfigError(f"{where} must return a list of one posecore.Detections per image ({len(images)}), "
                          f"got {type(found).__name__}{f' of {len(found)}' if isinstance(found, (list, tuple)) else ''}")
    for index, detections in enumerate(found):
        if not isinstance(detections, Detections):
            raise ConfigError(f"{where}: image {index}: expected posecore.Detections, got {type(detections).__name__}")
        n = len(detections.boxes)
        if len(detections.scores) != n or len(detections.labels) != n:
            raise ConfigError(f"{where}: image {index}: {n} boxes but {len(detections.scores)} scores and "
                              f"{len(detections.labels)} labels")
        if not (np.isfinite(detections.boxes).all() and np.isfinite(detections.scores).all()):
            raise ConfigError(f"{where}: image {index}: boxes and scores must be finite")
        if n and ((detections.boxes[:, 2] < detections.boxes[:, 0]) | (detections.boxes[:, 3] < detections.boxes[:, 1])).any():
            raise ConfigError(f"{where}: image {index}: boxes must be x1, y1, x2, y2 with x1 <= x2 and y1 <= y2")
        strangers = sorted(set(detections.labels) - set(classes))
        if strangers:
            raise ConfigError(f"{where}: image {index}: labels {strangers} are not among the classes asked for "
                              f"({', '.join(classes)})")
    return list(found)


def whole_image_box(image: np.ndarray) -> list[float]:
    """The box of a whole image, x1, y1, x2, y2 (pixel centres of the corner pixels), score 1."""
    return [0.0, 0.0, float(image.shape[1] - 1), float(image.shape[0] - 1), 1.0]
