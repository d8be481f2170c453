"""``posecore.Pose``: keypoints for images and person boxes in three lines.

    pose = posecore.Pose(checkpoint="runs/vit-tiny-synthetic-.../checkpoints/best.pth")
    results = pose(["a.jpg", image_array], boxes=[[[10, 20, 110, 220]], None])
    results[0].keypoints  # (N, K, 2) image pixels; results[0].scores (N, K)

    pose = posecore.Pose(checkpoint=..., detector="fasterrcnn_resnet50_fpn_v2")
    results = pose("group.jpg")  # one instance per person the detector finds; results[0].box_scores

A checkpoint written by posecore carries its experiment config, so it is enough on its own; a
foreign checkpoint needs ``preset=`` (or ``plugin=`` for that plugin's default preset). Crops are
made with the preset's test pipeline and predicted in batches of ``batch_size`` on ``device``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from posecore._detect import Detections, Detector
from posecore._errors import ConfigError
from posecore._inference import Precision
from posecore.config import ExperimentConfig, structure
from posecore.data._metainfo import DatasetMeta

__all__ = ["Pose", "PosePrediction", "config_from_checkpoint", "load_model", "load_weights"]

ImageLike = str | Path | np.ndarray


@attrs.frozen
class PosePrediction:
    """The instances of one image.

    Attributes:
        keypoints: (N, K, 2) x, y in the image's pixels.
        scores: (N, K) keypoint confidences.
        boxes: (N, 4) x1, y1, x2, y2 the crops were made from.
        heatmaps: (N, K, h, w) when the model makes heatmaps and ``return_heatmaps`` was set.
        warps: (N, 2, 3) image-to-crop affine of each instance (to place heatmaps on the image).
        box_scores: (N,) each box's score: the detector's, the box file's, the fifth value of a
            given box, else 1 (the whole image, a box given without one).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    heatmaps: np.ndarray | None = None
    warps: np.ndarray | None = None
    box_scores: np.ndarray | None = None


def config_from_checkpoint(checkpoint: Any) -> ExperimentConfig | None:
    """The experiment config a posecore checkpoint (``best.pth`` or a training state) carries, as
    loaded by :func:`posecore._checkpoint.load_checkpoint`; ``None`` for foreign checkpoints."""
    import yaml

    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    text = meta.get("config") if isinstance(meta, dict) else None
    if text is None and isinstance(checkpoint, dict) and isinstance(checkpoint.get("config"), str):
        text = checkpoint["config"]  # a training state (latest.pth)
    if not isinstance(text, str):
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None  # another framework's config (mmcv keeps its Python config source in meta)
    if not isinstance(data, dict) or not {"name", "model"} <= set(data):
        return None
    return structure(data, ExperimentConfig)


def load_model(
    checkpoint: str | Path | None = None,
    *,
    preset: str | None = None,
    plugin: str | None = None,
    config: ExperimentConfig | None = None,
    device: str | torch.device | None = None,
    fuse: bool = True,
) -> tuple[Any, ExperimentConfig, DatasetMeta | None]:
    """A model with a checkpoint's weights, in eval mode on ``device``; its config; the keypoint
    set it predicts (``None`` when neither the checkpoint nor the config tells).

    ``fuse``: fold what the model can fold for inference (``posecore._inference.prepare_for_inference``:
    convolution + BatchNorm pairs of the models that declare them); ``False`` keeps the trained
    modules, to save or train further.

    The config is ``config``, else ``preset``'s, else the one a posecore checkpoint carries, else
    the one a converter that recognises a foreign checkpoint derives from its tensors (a converter
    function's ``config_for(state_dict)``, as Pose Anything's tells its architecture by shapes;
    only ``plugin``'s converters when ``plugin`` is named), else ``plugin``'s default preset.
    ``checkpoint`` is anything :func:`posecore.load_weights` takes (posecore, original ViTPose,
    mmpose, Hugging Face file or folder, a plugin's released layout); every tensor must fit.
    """
    from posecore._checkpoint import load_checkpoint, load_weights
    from posecore._inference import prepare_for_inference
    from posecore._plugins import get_host
    from posecore.engine._builder import build_model

    host = get_host()
    loaded = load_checkpoint(checkpoint) if checkpoint is not None else None
    if config is None and preset is not None:
        config = host.registries.presets.get(preset).load()
    if config is None and loaded is not None:
        config = config_from_checkpoint(loaded) or _config_from_layout(loaded, host, plugin, str(checkpoint))
    if config is None:
        if plugin is None and checkpoint is not None:
            raise ConfigError(f"{checkpoint} carries no posecore config; say which model it is with preset=NAME")
        config = host.default_preset(plugin).load()
    model = build_model(config, host.registries)
    if loaded is not None:
        load_weights(model, loaded, strict=True, registries=host.registries, name=str(checkpoint))
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    return prepare_for_inference(model) if fuse else model, config, keypoint_set(config, loaded)


def _config_from_layout(checkpoint: Any, host: Any, plugin: str | None, source: str) -> ExperimentConfig | None:
    """The config a recognising converter derives from a foreign checkpoint's tensors, if any."""
    from posecore._checkpoint import extract_state_dict

    state_dict = extract_state_dict(checkpoint, source=source)
    converters = host.registries.converters
    for name in converters.names(plugin):
        function = converters.get(name).resolve()
        matches, config_for = getattr(function, "matches", None), getattr(function, "config_for", None)
        if callable(matches) and callable(config_for) and matches(state_dict):
            return config_for(state_dict)
    return None


def load_weights(model: torch.nn.Module, source: Any, converter: Any = None, *, strict: bool = False,
                 registries: Any = None, name: str | None = None, warn: bool = True) -> Any:
    """Load ``source`` (a checkpoint file, a Hugging Face model folder, or a checkpoint already
    read) into ``model``, whichever layout it was saved in, recognised by the loaded plugins'
    converters; returns the :class:`~posecore.KeyReport`. The one loading path of posecore: see
    :func:`posecore._checkpoint.load_weights` for the rules (``strict``, ``converter``, ``warn``).

    Example::

        model = posecore.build_model(posecore.get_preset("vitpose-b-coco-256x192"))
        report = posecore.load_weights(model, "vitpose-b.pth")   # original ViTPose, mmpose 1.x or HF file
        print(report.converter, report.format())
    """
    from posecore._checkpoint import load_weights as load_with
    from posecore._plugins import get_host

    return load_with(model, source, converter, strict=strict, name=name, warn=warn,
                     registries=registries if registries is not None else get_host().registries)


def keypoint_set(config: ExperimentConfig, checkpoint: Any = None) -> DatasetMeta | None:
    """The keypoint set a model predicts, for flip pairs and drawing: the one a posecore checkpoint
    recorded, else the ``metainfo`` or built-in reader name of the config's datasets (a wrapping
    dataset's inner ``dataset`` too), else the ``metainfo`` its metrics score with."""
    from posecore.config import ComponentSpec
    from posecore.data._metainfo import builtin_keypoint_sets, load_metainfo

    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("keypoint_set"), dict):
        return structure(meta["keypoint_set"], DatasetMeta)
    builtin = set(builtin_keypoint_sets())
    specs = [*config.data.val, *config.data.test, *config.data.train]
    while specs:
        spec = ComponentSpec.parse(specs.pop(0))
        name = spec.args.get("metainfo") or spec.type
        if isinstance(name, str) and (name in builtin or Path(name).suffix in (".json", ".yaml", ".yml")):
            return load_metainfo(name)
        if isinstance(spec.args.get("dataset"), (Mapping, ComponentSpec)):
            specs.append(spec.args["dataset"])
    for metric in config.eval.metrics:
        name = ComponentSpec.parse(metric).args.get("metainfo")
        if isinstance(name, str) and (name in builtin or Path(name).suffix in (".json", ".yaml", ".yml")):
            return load_metainfo(name)
    return None


class Pose:
    """Top-down pose estimation for images and boxes, batched.

    Args:
        checkpoint: weights, anything :func:`load_model` takes (a posecore ``best.pth`` needs
            nothing else).
        preset: the experiment whose model and test pipeline to use.
        plugin: use this plugin's default preset (and its converters to recognise the file).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        flip_test: average with the mirrored crop, as evaluation does.
        batch_size: crops per forward pass.
        detector: finds the instances of images given no boxes: a registered detector's name
            (``posecore plugins -v`` lists them; ``"fasterrcnn_resnet50_fpn_v2"``), a
            ``{type: NAME, **arguments}`` spec, or a :class:`~posecore.Detector`. ``None``: an
            image without boxes is one whole-image instance.
        detector_weights: a local weights file for the detector (default: its own, e.g.
            torchvision's cache or download).
        detector_classes: the classes to detect; default: those of the model's keypoint set
            (``person`` for human sets, COCO's animals for AP-10K, APT-36K and AnimalPose).
        box_score_threshold: detections scoring at or below this are dropped.
        precision: ``"fp32"``, ``"bf16"`` (autocast; faster than fp32 on GPUs and on CPUs with AMX,
            slower on other CPUs) or ``"fp16"`` (CUDA only).
    """

    def __init__(self, checkpoint: str | Path | None = None, *, preset: str | None = None, plugin: str | None = None,
                 config: ExperimentConfig | None = None, device: str | torch.device | None = None,
                 flip_test: bool = True, batch_size: int = 32,
                 detector: str | Mapping[str, Any] | Detector | None = None,
                 detector_weights: str | Path | None = None, detector_classes: Sequence[str] | None = None,
                 box_score_threshold: float = 0.3, precision: Precision = "fp32") -> None:
        from posecore._detect import build_detector, detection_classes
        from posecore._inference import inference_autocast
        from posecore._plugins import get_host
        from posecore.engine._builder import experiment_pipeline

        self.model, self.config, self.meta = load_model(checkpoint, preset=preset, plugin=plugin, config=config,
                                                        device=device)
        self.device = next(self.model.parameters()).device
        inference_autocast(self.device, precision)  # checked now, not at the first image
        self.precision = precision
        self.flip_test = flip_test
        self.batch_size = batch_size
        self.pipeline = experiment_pipeline(self.config, get_host().registries, getattr(self.model, "codec", None),
                                            train=False)
        self.box_score_threshold = box_score_threshold
        self.detector: Detector | None = None
        self.detector_classes: tuple[str, ...] = ()
        self._detector_name = ""
        if detector is not None:
            self._detector_name = (detector if isinstance(detector, str) else str(detector.get("type"))
                                   if isinstance(detector, Mapping) else type(detector).__name__)
            self.detector_classes = detection_classes(self.meta, detector_classes)
            self.detector = build_detector(get_host().registries, detector, classes=self.detector_classes,
                                           device=str(self.device),
                                           weights=None if detector_weights is None else str(detector_weights))
        elif detector_weights is not None or detector_classes:
            raise ConfigError("Pose: detector_weights and detector_classes need a detector (detector=NAME)")

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """The detector's instances of :attr:`detector_classes` in RGB images (every score: the
        threshold applies when :meth:`__call__` turns them into boxes)."""
        from posecore._detect import check_detections

        if self.detector is None:
            raise ConfigError("Pose.detect: this Pose has no detector; build it with detector=NAME")
        return check_detections(self.detector(list(images)), images, self.detector_classes,
                                f"detector {self._detector_name!r}")

    def crop(self, image: np.ndarray, box: Sequence[float], *, keypoint_set: DatasetMeta | None = None,
             keypoints: np.ndarray | None = None, visibility: np.ndarray | None = None,
             image_id: int = -1) -> dict[str, Any]:
        """One box of an RGB image through the preset's test pipeline: the sample a model reads.
        ``keypoints`` (K, 2) and ``visibility`` (K,) are given for a labelled crop (a few-shot
        support, whose heatmaps the pipeline then draws); zeros otherwise."""
        meta = self._keypoint_set(keypoint_set)
        k = meta.num_keypoints
        sample = {"image": image, "bbox": np.asarray(box, dtype=np.float32)[:4],
                  "keypoints": np.zeros((k, 2), np.float32) if keypoints is None else np.asarray(keypoints, np.float32),
                  "visibility": np.zeros(k, np.float32) if visibility is None else np.asarray(visibility, np.float32),
                  "meta": meta, "image_id": image_id, "id": -1, "category_id": 0}
        return self.pipeline(sample, np.random.default_rng(0))

    def __call__(self, images: ImageLike | Sequence[ImageLike],
                 boxes: Sequence[Sequence[Sequence[float]] | None] | None = None, *,
                 return_heatmaps: bool = False, keypoint_set: DatasetMeta | None = None,
                 batch_extras: Mapping[str, Any] | None = None) -> list[PosePrediction]:
        """Keypoints for every box of every image. An image whose boxes are ``None`` has those the
        detector finds scoring above ``box_score_threshold``, or is one whole-image instance when
        this Pose has no detector; an empty list gives no instance.

        Args:
            images: paths or (H, W, 3) RGB uint8 arrays.
            boxes: per image, a list of x1, y1, x2, y2 boxes (a fifth value is the box's score),
                or ``None``.
            keypoint_set: the keypoints to predict, for models told them per call (a few-shot
                category); default: the model's own.
            batch_extras: inputs the model reads beside the crops (a few-shot support set), the
                same for every crop: ``batch[key] = [value] * crops``.
        """
        from posecore.data._images import read_image

        single = isinstance(images, (str, Path, np.ndarray))
        images = [images] if single else list(images)
        if boxes is None:
            boxes = [None] * len(images)
        if len(boxes) != len(images):
            raise ConfigError(f"Pose: {len(images)} images but {len(boxes)} box lists; give one list (or None) per image")
        arrays = [read_image(image) if isinstance(image, (str, Path)) else np.asarray(image) for image in images]
        boxes = self._fill_boxes(arrays, boxes)
        crops: list[tuple[int, np.ndarray]] = []  # (image, x1 y1 x2 y2 score)
        for index, image_boxes in enumerate(boxes):
            for box in image_boxes:
                box = np.asarray(box, dtype=np.float32)
                crops.append((index, np.append(box[:4], box[4] if len(box) > 4 else 1.0)))
        meta = self._keypoint_set(keypoint_set)
        outputs = self._predict_crops(arrays, crops, meta, return_heatmaps, batch_extras or {})
        return [self._gather(outputs, crops, index, return_heatmaps) for index in range(len(arrays))]

    def _fill_boxes(self, arrays: list[np.ndarray],
                    boxes: Sequence[Sequence[Sequence[float]] | None]) -> list[Sequence[Sequence[float]]]:
        """Every image's boxes: the given ones; where ``None``, the detector's above the threshold
        (all such images in one call), else the whole image."""
        from posecore._detect import whole_image_box

        filled = [[whole_image_box(array)] if image_boxes is None else image_boxes
                  for array, image_boxes in zip(arrays, boxes, strict=True)]
        missing = [index for index, image_boxes in enumerate(boxes) if image_boxes is None]
        if self.detector is not None and missing:
            for index, detections in zip(missing, self.detect([arrays[i] for i in missing]), strict=True):
                filled[index] = detections.above(self.box_score_threshold)
        return filled

    def _keypoint_set(self, keypoint_set: DatasetMeta | None) -> DatasetMeta:
        meta = keypoint_set or self.meta
        if meta is None:
            raise ConfigError(
                f"cannot tell which keypoints config {self.config.name!r} predicts (for flip pairs and drawing): its "
                "datasets name no built-in keypoint set or metainfo file; use a checkpoint written by posecore"
            )
        return meta

    def _predict_crops(self, arrays: list[np.ndarray], crops: list[tuple[int, np.ndarray]], meta: DatasetMeta,
                       return_heatmaps: bool, extras: Mapping[str, Any]) -> dict[str, np.ndarray | None]:
        from posecore._inference import inference_autocast
        from posecore.data._sample import collate_samples
        from posecore.engine._evaluation import crop_to_image, move_to_device

        k = meta.num_keypoints
        parts: dict[str, list[np.ndarray]] = {"keypoints": [np.zeros((0, k, 2), np.float32)],
                                              "scores": [np.zeros((0, k), np.float32)],
                                              "warps": [np.zeros((0, 2, 3), np.float32)], "heatmaps": []}
        for start in range(0, len(crops), self.batch_size):
            samples = [self.crop(arrays[image_index], box, keypoint_set=meta, image_id=image_index)
                       for image_index, box in crops[start:start + self.batch_size]]
            batch = move_to_device(collate_samples(samples), self.device)
            batch.update({key: [value] * len(samples) for key, value in extras.items()})
            with torch.inference_mode(), inference_autocast(self.device, self.precision):
                prediction = self.model.predict(batch, flip_test=self.flip_test)
            keypoints = crop_to_image(prediction.keypoints[:, :k].float(), batch["warp"])
            parts["keypoints"].append(keypoints.float().cpu().numpy())
            parts["scores"].append(prediction.scores[:, :k].float().cpu().numpy())
            parts["warps"].append(batch["warp"].cpu().numpy())
            if return_heatmaps and prediction.heatmaps is not None:
                parts["heatmaps"].append(prediction.heatmaps.float().cpu().numpy())
        return {key: np.concatenate(value) if value else None for key, value in parts.items()}

    @staticmethod
    def _gather(outputs: dict[str, np.ndarray | None], crops: list[tuple[int, np.ndarray]], index: int,
                return_heatmaps: bool) -> PosePrediction:
        rows = [i for i, (image_index, _) in enumerate(crops) if image_index == index]
        heatmaps = outputs.get("heatmaps")
        return PosePrediction(
            keypoints=outputs["keypoints"][rows], scores=outputs["scores"][rows],
            boxes=np.stack([crops[i][1][:4] for i in rows]) if rows else np.zeros((0, 4), np.float32),
            heatmaps=heatmaps[rows] if return_heatmaps and heatmaps is not None else None,
            warps=outputs["warps"][rows],
            box_scores=np.asarray([crops[i][1][4] for i in rows], np.float32),
        )
