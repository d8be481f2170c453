"""``posecore predict``: keypoints on images, folders and videos, drawn and saved as COCO results.

    posecore predict --checkpoint runs/x/checkpoints/best.pth photo.jpg shots/ clip.mp4
    posecore predict --preset vitpose-b-coco-256x192 --checkpoint vitpose-b.pth --boxes dets.json val2017/

Writes into ``--output`` (default ``runs/predict-<time>``): ``predictions.json`` (COCO keypoint
results, with ``file_name``; ``image_id`` is the file's number when every image is named by one,
as COCO's are, else its position), one drawn image per input image, a drawn video per input video, and
with ``--heatmaps`` the heatmaps laid over each image.

A preset whose method needs more than images (a few-shot support set, a text prompt) declares a
``predictor`` (:class:`posecore.Preset`); the command then hands its parsed arguments to it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from posecore._errors import ConfigError

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "add_predict_arguments", "boxes_for", "expand_inputs", "load_boxes",
           "predict_command", "preset_predictor"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="images, folders of images, or videos")
    parser.add_argument("--checkpoint", help="model weights (a posecore best.pth carries its own config)")
    parser.add_argument("--boxes", help="person boxes: COCO detection results [{image_id|file_name, bbox, score}]")
    parser.add_argument("--box-score-thr", type=float, default=0.3, help="ignore boxes scoring at or below this")
    parser.add_argument("--heatmaps", action="store_true", help="also save heatmap overlays")
    parser.add_argument("--no-flip-test", action="store_true", help="skip the mirrored pass (faster)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--keypoint-thr", type=float, default=0.3, help="draw keypoints scoring above this")


def expand_inputs(inputs: list[str]) -> Iterator[Path]:
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


def load_boxes(path: str | None, threshold: float) -> dict[str, list[list[float]]]:
    """Boxes keyed by file name and by image id, as x1, y1, x2, y2."""
    from posecore._fileio import read_json

    if path is None:
        return {}
    detections = read_json(path, "box file (--boxes)", ConfigError)
    if not isinstance(detections, list):
        raise ConfigError(f"{path}: --boxes takes a JSON list of {{image_id or file_name, bbox: [x, y, w, h], score}}")
    boxes: dict[str, list[list[float]]] = defaultdict(list)
    for position, detection in enumerate(detections):
        if "bbox" not in detection or not ({"image_id", "file_name"} & set(detection)):
            raise ConfigError(f"{path}: detection #{position} needs 'bbox' and 'image_id' or 'file_name'")
        if float(detection.get("score", 1.0)) <= threshold:
            continue
        x, y, w, h = (float(v) for v in detection["bbox"])
        key = str(detection.get("file_name") or detection["image_id"])
        boxes[key].append([x, y, x + w, y + h])
    return boxes


def boxes_for(path: Path, boxes: dict[str, list[list[float]]], frame: int | None = None) -> list[list[float]] | None:
    """The boxes of ``path`` (or of one of its video frames): ``None`` when no box file was given."""
    if not boxes:
        return None
    keys = [path.name, str(path)] if frame is None else [f"{path.name}:{frame}", str(frame)]
    if frame is None and path.stem.isdigit():
        keys.append(str(int(path.stem)))  # COCO names files by zero-padded image id
    for key in keys:
        if key in boxes:
            return boxes[key]
    return []


def preset_predictor(args: argparse.Namespace) -> Callable[[argparse.Namespace], Any] | None:
    """The ``predictor`` declared by the preset this command would use (``--preset``, else the
    checkpoint's own config, else the ``--plugin``'s default preset), or ``None``: predict top-down."""
    from posecore._cli.common import host_from_args, selected_plugin
    from posecore._components import resolve_reference

    host = host_from_args(args)
    presets = host.registries.presets
    plugin = selected_plugin(args)
    name = args.preset
    if name is None and args.checkpoint:
        from posecore._api import config_from_checkpoint
        from posecore._checkpoint import load_checkpoint

        config = config_from_checkpoint(load_checkpoint(args.checkpoint))
        name = config.name if config is not None and config.name in presets else None
    if name is None:
        if plugin is None and args.checkpoint:
            return None  # not a preset's checkpoint, and no plugin named: the generic path
        name = host.default_preset(plugin).name
    predictor = presets.get(name).predictor
    return None if predictor is None else resolve_reference(predictor)


def predict_command(args: argparse.Namespace) -> int:
    from posecore._api import Pose
    from posecore._cli.common import selected_plugin

    predictor = preset_predictor(args)
    if predictor is not None:
        return int(predictor(args) or 0)
    if not args.inputs:
        raise ConfigError("give at least one INPUT: an image, a folder of images or a video")
    files = list(expand_inputs(args.inputs))
    preset = args.preset
    pose = Pose(args.checkpoint, preset=preset, plugin=selected_plugin(args), device=args.device,
                flip_test=not args.no_flip_test)
    boxes = load_boxes(args.boxes, args.box_score_thr)
    output = Path(args.output or Path("runs") / f"predict-{time.strftime('%Y%m%d-%H%M%S')}")
    output.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    image_ids = _image_ids(files)
    for path in files:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            results += _predict_video(pose, path, boxes, output, args)
        else:
            results += _predict_image(pose, path, image_ids[path], boxes, output, args)
    from posecore.config import atomic_write_text

    atomic_write_text(output / "predictions.json", json.dumps(results))
    print(f"posecore predict: {len(results)} instance(s) in {len(files)} input(s); results and pictures in {output}")
    return 0


def _image_ids(files: list[Path]) -> dict[Path, int]:
    """COCO's ids where every image is named by its id (``000000000785.jpg``), so that the results
    file scores against the annotations as it is; otherwise 1, 2, ... in input order."""
    images = [path for path in files if path.suffix.lower() not in VIDEO_SUFFIXES]
    if images and all(path.stem.isdigit() for path in images) and len({int(p.stem) for p in images}) == len(images):
        return {path: int(path.stem) for path in images}
    return {path: position for position, path in enumerate(images, start=1)}


def _results(prediction: Any, image_id: int, file_name: str) -> list[dict[str, Any]]:
    rows = []
    for keypoints, scores, box in zip(prediction.keypoints, prediction.scores, prediction.boxes, strict=True):
        triplets = np.concatenate([keypoints, scores[:, None]], axis=1).ravel()
        x1, y1, x2, y2 = (float(v) for v in box)
        rows.append({"image_id": image_id, "file_name": file_name, "category_id": 1,
                     "keypoints": [round(float(v), 2) for v in triplets], "score": float(np.mean(scores)),
                     "bbox": [x1, y1, x2 - x1, y2 - y1]})
    return rows


def _draw(pose: Any, image: np.ndarray, prediction: Any, threshold: float) -> np.ndarray:
    from posecore._visualize import draw_pose

    for keypoints, scores, box in zip(prediction.keypoints, prediction.scores, prediction.boxes, strict=True):
        image = draw_pose(image, keypoints, scores, pose.meta, threshold=threshold, bbox=box)
    return image


def _predict_image(pose: Any, path: Path, image_id: int, boxes: dict[str, list[list[float]]], output: Path,
                   args: argparse.Namespace) -> list[dict[str, Any]]:
    from posecore.data._images import read_image
    from posecore._visualize import heatmap_overlay, save_image

    image = read_image(path)
    prediction = pose(image, [boxes_for(path, boxes)], return_heatmaps=args.heatmaps)[0]
    save_image(_draw(pose, image, prediction, args.keypoint_thr), output / f"{path.stem}.jpg")
    if args.heatmaps and prediction.heatmaps is not None:
        save_image(_heatmaps_on_image(image, prediction, pose.config.data.input_size, heatmap_overlay), output / f"{path.stem}_heatmaps.jpg")
    return _results(prediction, image_id, path.name)


def _heatmaps_on_image(image: np.ndarray, prediction: Any, input_size: tuple[int, int], overlay: Any) -> np.ndarray:
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


def _predict_video(pose: Any, path: Path, boxes: dict[str, list[list[float]]], output: Path,
                   args: argparse.Namespace) -> list[dict[str, Any]]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ConfigError(f"cannot open video {path} (is it a supported codec?)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    results: list[dict[str, Any]] = []
    frame_index = 0
    target = output / f"{path.stem}.mp4"
    partial = output / f".{path.stem}.partial.mp4"  # renamed once complete: never a half-written video
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            prediction = pose(rgb, [boxes_for(path, boxes, frame_index)])[0]
            drawn = _draw(pose, rgb, prediction, args.keypoint_thr)
            if writer is None:
                writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (drawn.shape[1], drawn.shape[0]))
            writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            results += _results(prediction, frame_index, f"{path.name}:{frame_index}")
            frame_index += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if frame_index == 0 or not target.exists():
            partial.unlink(missing_ok=True)
    if frame_index == 0:
        raise ConfigError(f"video {path} has no readable frame")
    partial.replace(target)
    return results
