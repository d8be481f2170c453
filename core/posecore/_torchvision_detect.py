"""torchvision's COCO detectors as posecore detectors: the core's ``posecore_detectors``.

Weights come one of three ways:

* torchvision's own mechanism (``pretrained=True``, the default): the builder is called with the
  architecture's ``DEFAULT`` COCO weights, which torchvision reads from its cache
  (``$TORCH_HOME/hub/checkpoints``) or downloads there on a connected machine;
* a local file (``weights=FILE``, ``--detector-weights``): the architecture is built without
  weights and the file's state dict loaded into it, strictly;
* none (``pretrained=False``): random weights, for tests and contract checks.

Offline (no network, or ``POSECORE_OFFLINE=1``, which forbids even trying) with neither the cached
file nor a local one, the error names the file, where to download it from and where to put it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from posecore._components import Component
from posecore._detect import Detections
from posecore._errors import CheckpointError, ConfigError

__all__ = ["ARCHITECTURES", "DETECTORS", "TorchvisionDetector"]

#: The COCO box detectors of ``torchvision.models.detection`` posecore registers, with their
#: COCO val2017 box AP as torchvision's weights tables give it. Left out: the v1 ResNet-50
#: Faster R-CNN and RetinaNet (their v2 beat them at the same cost) and SSD300-VGG16 (slower and
#: weaker than FCOS); the mask and keypoint R-CNNs compute more than boxes.
ARCHITECTURES = {
    "fasterrcnn_resnet50_fpn_v2": "Faster R-CNN, ResNet-50 FPN v2 (box AP 46.7)",
    "retinanet_resnet50_fpn_v2": "RetinaNet, ResNet-50 FPN v2 (box AP 41.5)",
    "fcos_resnet50_fpn": "FCOS, ResNet-50 FPN (box AP 39.2)",
    "fasterrcnn_mobilenet_v3_large_fpn": "Faster R-CNN, MobileNetV3-Large FPN (box AP 32.8)",
    "fasterrcnn_mobilenet_v3_large_320_fpn": "Faster R-CNN, MobileNetV3-Large at 320 px, for CPUs (box AP 22.8)",
    "ssdlite320_mobilenet_v3_large": "SSDlite320, MobileNetV3-Large (box AP 21.3)",
}

#: torchvision's names for the options every detector here takes, by builder family. SSDs work
#: at their fixed input size, so they take no ``min_size``/``max_size``.
_OPTIONS = {
    "rcnn": {"score_threshold": "box_score_thresh", "max_detections": "box_detections_per_img",
             "min_size": "min_size", "max_size": "max_size"},
    "dense": {"score_threshold": "score_thresh", "max_detections": "detections_per_img",
              "min_size": "min_size", "max_size": "max_size"},
    "ssd": {"score_threshold": "score_thresh", "max_detections": "detections_per_img"},
}

#: Small and quick, for the contract checks and tests: little images, few R-CNN proposals.
_SMALL: dict[str, dict[str, Any]] = {
    "rcnn": {"min_size": 64, "max_size": 96,
             "builder_options": {"rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 100}},
    "dense": {"min_size": 64, "max_size": 96},
    "ssd": {},
}


def _family(architecture: str) -> str:
    return "ssd" if architecture.startswith("ssd") else "rcnn" if "rcnn" in architecture else "dense"


class TorchvisionDetector:
    """One of torchvision's COCO detectors, keeping the instances of ``classes``.

    Args:
        architecture: a name of :data:`ARCHITECTURES` (each is registered under it).
        classes: COCO class names to keep (``person``; ``dog``, ``cat``, ...).
        weights: a local file of the architecture's COCO state dict; default: torchvision's.
        pretrained: ``False`` builds random weights (tests): nothing is read or downloaded.
        score_threshold: the model's own floor; ``posecore predict`` thresholds again with
            ``--box-score-thr``.
        max_detections: most instances kept per image, before the class filter.
        min_size, max_size: the shorter/longer side images are resized to (torchvision: 800/1333);
            ``None`` keeps torchvision's default. Not for SSDs.
        builder_options: further keyword arguments of torchvision's builder, as it names them
            (``{"nms_thresh": 0.5}``; ``{"rpn_post_nms_top_n_test": 100}`` for the R-CNNs).
        device: where the model runs.
    """

    def __init__(self, architecture: str, classes: Sequence[str] = ("person",), weights: str | None = None,
                 pretrained: bool = True, score_threshold: float = 0.05, max_detections: int = 100,
                 min_size: int | None = None, max_size: int | None = None,
                 builder_options: Mapping[str, Any] | None = None, device: str = "cpu") -> None:
        import torch
        from torchvision.models import get_model_weights

        if architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown torchvision detector {architecture!r}; posecore registers "
                              f"{', '.join(ARCHITECTURES)}")
        self.architecture = architecture
        self.coco_weights = get_model_weights(architecture).DEFAULT
        categories = list(self.coco_weights.meta["categories"])
        unknown = [name for name in classes if name not in categories or name in ("__background__", "N/A")]
        if unknown or not classes:
            raise ConfigError(f"detector {architecture!r} finds COCO's classes; {unknown or 'no class'} "
                              f"{'are' if len(unknown) > 1 else 'is'} not among them "
                              f"({', '.join(c for c in categories if c not in ('__background__', 'N/A'))})")
        self.classes = tuple(classes)
        self._label_names = categories
        self._wanted = torch.tensor(sorted(categories.index(name) for name in self.classes))
        options = {"score_threshold": score_threshold, "max_detections": max_detections, "min_size": min_size,
                   "max_size": max_size}
        names = _OPTIONS[_family(architecture)]
        unsupported = [key for key, value in options.items() if value is not None and key not in names]
        if unsupported:
            raise ConfigError(f"detector {architecture!r} works at its fixed input size; it takes no "
                              f"{', '.join(unsupported)}")
        kwargs = {**(builder_options or {}), **{names[key]: value for key, value in options.items() if value is not None}}
        self.device = torch.device(device)
        self.model = self._build(kwargs, weights, pretrained).to(self.device).eval()

    def _build(self, kwargs: dict[str, Any], weights: str | None, pretrained: bool) -> Any:
        from torchvision.models import get_model_builder

        builder = get_model_builder(self.architecture)
        if weights is None and pretrained:
            _require_cached_or_online(self.architecture, self.coco_weights)
            try:
                return builder(weights=self.coco_weights, weights_backbone=None, **kwargs)
            except OSError as exc:  # urllib's URLError is an OSError: no network, or the host refused
                raise CheckpointError(_missing_weights_message(self.architecture, self.coco_weights,
                                                               f"downloading it failed ({exc})")) from exc
        model = builder(weights=None, weights_backbone=None, **kwargs)
        if weights is not None:
            _load_file(model, Path(weights), self.architecture)
        return model

    def __call__(self, images: Sequence[Any]) -> list[Detections]:
        """Detections of :attr:`classes` in RGB uint8 (H, W, 3) images."""
        import numpy as np
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1).float() / 255
                   for image in images]
        if not tensors:
            return []
        with torch.inference_mode():
            outputs = self.model(tensors)
        found = []
        for output in outputs:
            keep = torch.isin(output["labels"], self._wanted.to(output["labels"].device))
            labels = output["labels"][keep].tolist()
            found.append(Detections(output["boxes"][keep].float().cpu().numpy(),
                                    output["scores"][keep].float().cpu().numpy(),
                                    [self._label_names[label] for label in labels]))
        return found


def _cache_file(coco_weights: Any) -> Path:
    """Where torchvision keeps (and looks for) a weights file: ``$TORCH_HOME/hub/checkpoints``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(coco_weights.url).name


def _require_cached_or_online(architecture: str, coco_weights: Any) -> None:
    offline = os.environ.get("POSECORE_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    if offline and not _cache_file(coco_weights).is_file():
        raise CheckpointError(_missing_weights_message(architecture, coco_weights, "POSECORE_OFFLINE is set"))


def _missing_weights_message(architecture: str, coco_weights: Any, why: str) -> str:
    target = _cache_file(coco_weights)
    return (f"detector {architecture!r} needs its COCO weights {target.name}, which are not in torchvision's cache "
            f"and cannot be downloaded here ({why}). On a connected machine download {coco_weights.url} and put it "
            f"at {target} (torchvision's cache: $TORCH_HOME/hub/checkpoints), or pass the file with "
            f"--detector-weights FILE (Pose(detector_weights=FILE)); or skip detection with --boxes FILE or "
            f"--whole-image")


def _load_file(model: Any, path: Path, architecture: str) -> None:
    """The file's state dict into ``model``, every key. Built without weights, torchvision uses
    batch norms where its pretrained build freezes them (with the same eps): in eval mode they
    compute the same, so the file predicts as torchvision's own loading of it does."""
    import torch

    if not path.is_file():
        raise CheckpointError(f"detector weights file not found: {path}")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read detector weights ({type(exc).__name__}: {exc})") from exc
    if isinstance(state_dict, dict) and isinstance(state_dict.get("model"), dict):
        state_dict = state_dict["model"]  # torchvision's reference scripts save {"model": ..., "optimizer": ...}
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} is not a {architecture!r} state dict: {' '.join(str(exc).split())[:400]}"
                              ) from exc


#: The core's registrations: one component per architecture, named as torchvision names it.
DETECTORS = [
    Component(
        name,
        functools.partial(TorchvisionDetector, name),
        f"torchvision {description}, COCO classes",
        example={"pretrained": False, "score_threshold": 0.0, "max_detections": 5, **_SMALL[_family(name)]},
    )
    for name, description in ARCHITECTURES.items()
]
