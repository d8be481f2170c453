"""The prediction contract: what ``posecore predict`` hands a preset's predictor, and the core's
own top-down predictor.

``posecore predict`` turns its command line into a :class:`PredictRequest` (input files expanded
and checked, the box file read, the output folder made) and calls the predictor of the preset it
resolves: the preset's own :class:`Predictor` when it declares one (a few-shot method needs a
support set), else :func:`predict_topdown`. A predictor so depends on typed fields, never on the
names of command-line options; the options a plugin adds through ``posecore_cli_arguments``
reach it in :attr:`PredictRequest.options`, under their ``dest`` names. Without a box file the
top-down predictor asks a detector (``posecore_detectors``) for the instances of every image and
video frame.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import numpy as np

from posecore._errors import ConfigError, PosecoreError

if TYPE_CHECKING:
    from posecore._api import Pose, PosePrediction
    from posecore._inference import Precision

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "BoxTable", "PredictRequest", "Predictor", "expand_inputs",
           "predict_topdown", "prediction_rows"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})


def expand_inputs(inputs: Iterable[str | Path]) -> Iterator[Path]:
    """The image and video files named by ``inputs`` (files, and the media files of folders)."""
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not files:
                raise ConfigError(f"folder {path} holds no image or video ({', '.join(sorted(IMAGE_SUFFIXES))})")
            yield from files
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                raise ConfigError(f"{path}: not an image or video file (by its suffix {path.suffix!r})")
            yield path
        else:
            raise ConfigError(f"input not found: {path}")


@attrs.frozen
class BoxTable:
    """Boxes from a COCO detections file, as x1, y1, x2, y2, score, keyed by file name and by image id.

    ``given`` tells "no box file" (predict on the whole image) from "a box file with no box for
    this image" (nothing to predict there).
    """

    boxes: Mapping[str, tuple[tuple[float, float, float, float, float], ...]] = attrs.field(factory=dict)
    given: bool = False

    @classmethod
    def read(cls, path: str | Path | None, threshold: float = 0.0) -> BoxTable:
        """The detections in ``path`` scoring above ``threshold``; an empty table without a file.
        A malformed entry is an error naming its position and what is wrong with it."""
        from posecore._fileio import read_json

        if path is None:
            return cls()
        detections = read_json(path, "box file (--boxes)", ConfigError)
        if not isinstance(detections, list):
            raise ConfigError(f"{path}: --boxes takes a JSON list of {{image_id or file_name, bbox: [x, y, w, h], score}}")
        boxes: dict[str, list[tuple[float, float, float, float, float]]] = defaultdict(list)
        for position, detection in enumerate(detections):
            key, box, score = _detection(detection, f"{path}: detection #{position}")
            if score > threshold:
                boxes[key].append((*box, score))
        return cls({key: tuple(value) for key, value in boxes.items()}, given=True)

    def for_image(self, path: Path, frame: int | None = None) -> list[list[float]] | None:
        """The boxes of ``path`` (or of one of its video frames) as x1, y1, x2, y2, score: ``None``
        when no box file was given, ``[]`` when the file has none for it."""
        if not self.given:
            return None
        keys = [path.name, str(path)] if frame is None else [f"{path.name}:{frame}", str(frame)]
        if frame is None and path.stem.isdigit():
            keys.append(str(int(path.stem)))  # COCO names files by zero-padded image id
        for key in keys:
            if key in self.boxes:
                return [list(box) for box in self.boxes[key]]
        return []


def _detection(entry: Any, where: str) -> tuple[str, tuple[float, float, float, float], float]:
    """One COCO detection as (image key, x1 y1 x2 y2, score); errors say what to fix."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is a {type(entry).__name__}, not an object {{image_id or file_name, bbox, score}}")
    if "image_id" not in entry and "file_name" not in entry:
        raise ConfigError(f"{where} names no image: give 'image_id' or 'file_name'")
    bbox = entry.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ConfigError(f"{where}: 'bbox' must be [x, y, width, height] (4 numbers), got {bbox!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        raise ConfigError(f"{where}: 'bbox' must hold 4 finite numbers, got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise ConfigError(f"{where}: 'bbox' width and height must be positive (COCO boxes are [x, y, w, h]), "
                          f"got {bbox!r}")
    score = entry.get("score", 1.0)
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
        raise ConfigError(f"{where}: 'score' must be a finite number, got {score!r}")
    key = entry.get("file_name") or entry.get("image_id")
    if not isinstance(key, (str, int)) or isinstance(key, bool):
        raise ConfigError(f"{where}: 'file_name' must be a string and 'image_id' an integer, got {key!r}")
    return str(key), (x, y, x + w, y + h), float(score)


@attrs.frozen
class PredictRequest:
    """One ``posecore predict`` call, as a predictor receives it.

    Attributes:
        inputs: the image and video files to predict on (folders already expanded, each checked).
        output: the folder to write ``predictions.json`` and the drawings into (it exists).
        checkpoint: the weights to load (``None``: the model keeps its initialisation).
        preset: the preset named with ``--preset``; ``None``: the checkpoint's own config, or the
            plugin's default preset (what :func:`posecore.load_model` then chooses).
        plugin: the plugin named with ``--plugin``, if any.
        device: ``"cpu"``, ``"cuda"``, ... (``None``: CUDA when available).
        boxes: the detections file's boxes per image.
        detector: without a box file, the detector (a registered name, ``posecore_detectors``) that
            finds the instances; ``None``: every image is one whole-image instance.
        detector_weights: a local weights file for the detector (default: its own).
        detector_classes: the classes to detect (default: those of the model's keypoint set).
        box_score_threshold: detections scoring at or below this are not predicted (a box file
            is thresholded when read).
        flip_test: average with the mirrored crop.
        heatmaps: also save heatmap overlays.
        keypoint_threshold: draw keypoints scoring above this.
        whole_image_fallback: an image for which the box file or the detector has no box is
            predicted as one whole-image instance (default: no instance there, counted in the summary).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast; see ``Pose``).
        options: the options plugins declared through ``posecore_cli_arguments``, by ``dest`` name.
    """

    inputs: tuple[Path, ...]
    output: Path
    checkpoint: str | None = None
    preset: str | None = None
    plugin: str | None = None
    device: str | None = None
    boxes: BoxTable = attrs.field(factory=BoxTable)
    detector: str | None = None
    detector_weights: str | None = None
    detector_classes: tuple[str, ...] | None = None
    box_score_threshold: float = 0.3
    flip_test: bool = True
    heatmaps: bool = False
    keypoint_threshold: float = 0.3
    whole_image_fallback: bool = False
    precision: Precision = "fp32"
    options: Mapping[str, Any] = attrs.field(factory=dict)

    def boxes_for(self, path: Path, frame: int | None = None) -> list[list[float]] | None:
        """The box file's boxes to predict in ``path`` (or a video frame): ``None`` is the whole
        image (or, to a predictor with a detector, no box file: detect)."""
        boxes = self.boxes.for_image(path, frame)
        return None if boxes == [] and self.whole_image_fallback else boxes

    @property
    def images(self) -> list[Path]:
        return [path for path in self.inputs if path.suffix.lower() not in VIDEO_SUFFIXES]

    @property
    def videos(self) -> list[Path]:
        return [path for path in self.inputs if path.suffix.lower() in VIDEO_SUFFIXES]


@runtime_checkable
class Predictor(Protocol):
    """A preset's predictor (``Preset(predictor="module:function")``): writes its results for the
    request into ``request.output`` and returns the exit status (``None`` means 0)."""

    def __call__(self, request: PredictRequest) -> int | None: ...


def prediction_rows(prediction: PosePrediction, image_id: int, file_name: str, **fields: Any) -> list[dict[str, Any]]:
    """COCO keypoint results for one image's instances: ``keypoints`` as ``[x, y, score] * K`` in
    image pixels, ``bbox`` as x, y, w, h, ``score`` the mean keypoint score, ``bbox_score`` the
    box's (the detector's or box file's; 1 for the whole image), and ``fields``."""
    rows = []
    box_scores = prediction.box_scores if prediction.box_scores is not None else [None] * len(prediction.boxes)
    for keypoints, scores, box, box_score in zip(prediction.keypoints, prediction.scores, prediction.boxes,
                                                 box_scores, strict=True):
        triplets = np.concatenate([keypoints, scores[:, None]], axis=1).ravel()
        x1, y1, x2, y2 = (float(v) for v in box)
        rows.append({"image_id": image_id, "file_name": file_name, **fields,
                     "keypoints": [round(float(v), 2) for v in triplets], "score": float(np.mean(scores)),
                     "bbox": [x1, y1, x2 - x1, y2 - y1],
                     **({} if box_score is None else {"bbox_score": round(float(box_score), 4)})})
    return rows


def predict_topdown(request: PredictRequest, *,
                    batch_extras: Callable[[Path], Mapping[str, Any]] | None = None) -> int:
    """The core's predictor: every box of every image and video frame (from the box file, else
    the detector, else the whole image) through the preset's model, drawn, and written as COCO
    keypoint results.

    An input that cannot be read or predicted is reported and skipped: ``predictions.json`` holds
    every input that worked, and the exit status is 1 when any failed.

    ``batch_extras(path)``: what the model reads beside the crops of that input (``Pose``'s
    ``batch_extras``), for a plugin's predictor that wraps this one: VLPose's style per image.
    """
    from posecore._api import Pose
    from posecore.config import atomic_write_text

    if not request.inputs:
        raise ConfigError("give at least one INPUT: an image, a folder of images or a video")
    detector = None if request.boxes.given else request.detector
    pose = Pose(request.checkpoint, preset=request.preset, plugin=request.plugin, device=request.device,
                flip_test=request.flip_test, detector=detector, detector_weights=request.detector_weights,
                detector_classes=request.detector_classes, box_score_threshold=request.box_score_threshold,
                precision=request.precision)
    extras = batch_extras or (lambda path: {})
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    unboxed: list[str] = []
    image_ids = _image_ids(request.inputs)
    for path in request.inputs:
        try:
            if path.suffix.lower() in VIDEO_SUFFIXES:
                results += _predict_video(pose, path, request, extras(path))
            else:
                rows = _predict_image(pose, path, image_ids[path], request, extras(path))
                results += rows
                unboxed += [] if rows else [path.name]
        except PosecoreError as exc:
            failed.append(f"{path.name} ({exc})")
    atomic_write_text(request.output / "predictions.json", json.dumps(results))
    print(f"posecore predict: {len(results)} instance(s) in {len(request.inputs) - len(failed)} input(s); results "
          f"and pictures in {request.output}")
    if unboxed:
        source = ("in the box file" if pose.detector is None
                  else f"from detector {detector} ({', '.join(pose.detector_classes)})")
        print(f"posecore predict: {len(unboxed)} image(s) have no box above the score threshold {source}, so "
              f"no instance was predicted there (--whole-image-fallback predicts the whole image): "
              f"{', '.join(unboxed)}")
    if failed:
        print(f"posecore predict: {len(failed)} input(s) failed and are not in predictions.json: {'; '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0


def _image_ids(files: Iterable[Path]) -> dict[Path, int]:
    """COCO's ids where every image is named by its id (``000000000785.jpg``), so that the results
    file scores against the annotations as it is; otherwise 1, 2, ... in input order (videos skipped)."""
    images = [path for path in files if path.suffix.lower() not in VIDEO_SUFFIXES]
    if images and all(path.stem.isdigit() for path in images) and len({int(p.stem) for p in images}) == len(images):
        return {path: int(path.stem) for path in images}
    return {path: position for position, path in enumerate(images, start=1)}


def _boxes(pose: Pose, request: PredictRequest, path: Path, image: np.ndarray,
           frame: int | None = None) -> list[list[float]] | None:
    """The boxes to predict in one image or frame: the box file's, else the detector's (the whole
    image where it finds none, with ``whole_image_fallback``), else ``None``: the whole image."""
    from posecore._detect import whole_image_box

    if pose.detector is None:
        return request.boxes_for(path, frame)
    [found] = pose.detect([image])
    boxes = found.above(request.box_score_threshold)
    return boxes or ([whole_image_box(image)] if request.whole_image_fallback else [])


def _draw(pose: Pose, image: np.ndarray, prediction: PosePrediction, threshold: float) -> np.ndarray:
    from posecore._visualize import draw_pose

    for keypoints, scores, box in zip(prediction.keypoints, prediction.scores, prediction.boxes, strict=True):
        image = draw_pose(image, keypoints, scores, pose.meta, threshold=threshold, bbox=box)
    return image


def _predict_image(pose: Pose, path: Path, image_id: int, request: PredictRequest,
                   extras: Mapping[str, Any]) -> list[dict[str, Any]]:
    from posecore._visualize import heatmap_overlay, save_image
    from posecore.data._images import read_image

    image = read_image(path)
    prediction = pose(image, [_boxes(pose, request, path, image)], return_heatmaps=request.heatmaps,
                      batch_extras=extras)[0]
    save_image(_draw(pose, image, prediction, request.keypoint_threshold), request.output / f"{path.stem}.jpg")
    if request.heatmaps and prediction.heatmaps is not None:
        overlay = _heatmaps_on_image(image, prediction, pose.config.data.input_size, heatmap_overlay)
        save_image(overlay, request.output / f"{path.stem}_heatmaps.jpg")
    return prediction_rows(prediction, image_id, path.name, category_id=1)


def _heatmaps_on_image(image: np.ndarray, prediction: PosePrediction, input_size: tuple[int, int],
                       overlay: Any) -> np.ndarray:
    """Each instance's heatmaps warped from its crop back onto the image, maximum over instances."""
    import cv2

    height, width = image.shape[:2]
    canvas = np.zeros((len(prediction.heatmaps[0]) if len(prediction.heatmaps) else 1, height, width), np.float32)
    crop_w, crop_h = input_size
    for heatmaps, warp in zip(prediction.heatmaps, prediction.warps, strict=True):
        inverse = cv2.invertAffineTransform(warp.astype(np.float64))
        for k, heatmap in enumerate(heatmaps):
            crop = cv2.resize(heatmap, (crop_w, crop_h), interpolation=cv2.INTER_LINEAR)
            placed = cv2.warpAffine(crop, inverse, (width, height), flags=cv2.INTER_LINEAR)
            canvas[k] = np.maximum(canvas[k], placed)
    return overlay(image, canvas)


def _predict_video(pose: Pose, path: Path, request: PredictRequest, extras: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every frame detected (or boxed) and predicted in turn, with a progress bar in frames/s."""
    import time

    import cv2

    from posecore.engine._reporting import ProgressReporter

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ConfigError(f"cannot open video {path} (is it a supported codec?)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and math.isfinite(fps) else 25.0
    progress = ProgressReporter(enabled=True)
    progress.start(path.name, max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0))
    started = time.perf_counter()
    writer = None
    results: list[dict[str, Any]] = []
    frame_index = 0
    target = request.output / f"{path.stem}.mp4"
    partial = request.output / f".{path.stem}.partial.mp4"  # renamed once complete: never a half-written video
    complete = False
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            prediction = pose(rgb, [_boxes(pose, request, path, rgb, frame_index)], batch_extras=extras)[0]
            drawn = _draw(pose, rgb, prediction, request.keypoint_threshold)
            if writer is None:
                writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (drawn.shape[1], drawn.shape[0]))
            writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            results += prediction_rows(prediction, frame_index, f"{path.name}:{frame_index}", category_id=1)
            frame_index += 1
            progress.advance(1, **{"frames/s": frame_index / max(time.perf_counter() - started, 1e-9)})
        complete = frame_index > 0
    finally:
        progress.stop()
        capture.release()
        if writer is not None:
            writer.release()
        if not complete:
            partial.unlink(missing_ok=True)
    if not complete:
        raise ConfigError(f"video {path} has no readable frame")
    partial.replace(target)
    return results
