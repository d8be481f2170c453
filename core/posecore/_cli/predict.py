"""``posecore predict``: keypoints on images, folders and videos, drawn and saved as COCO results.

    posecore predict --checkpoint runs/x/checkpoints/best.pth photo.jpg shots/ clip.mp4
    posecore predict --preset vitpose-b-coco-256x192 --checkpoint vitpose-b.pth --boxes dets.json val2017/
    posecore predict --checkpoint best.pth --detector-weights fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth group.jpg

The instances come from ``--boxes FILE``, else from a detector (``--detector``, default torchvision's
Faster R-CNN v2 on COCO, finding the classes of the model's keypoint set), or each image is one
instance with ``--whole-image``.

Writes into ``--output`` (default ``runs/predict-<time>``): ``predictions.json`` (COCO keypoint
results, with ``file_name``; ``image_id`` is the file's number when every image is named by one,
as COCO's are, else its position), one drawn image per input image, a drawn video per input video, and
with ``--heatmaps`` the heatmaps laid over each image.

The command line becomes a typed :class:`posecore.PredictRequest`; a preset whose method needs
more than images (a few-shot support set, a text prompt) declares a ``predictor``
(:class:`posecore.Preset`) that receives it, the others go to the core's top-down predictor.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from posecore._errors import ConfigError

if TYPE_CHECKING:
    from posecore._predict import Predictor, PredictRequest

__all__ = ["add_predict_arguments", "predict_command", "predict_request", "resolve_predictor"]


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="images, folders of images, or videos")
    parser.add_argument("--checkpoint", help="model weights (a posecore best.pth carries its own config)")
    from posecore._detect import DEFAULT_DETECTOR

    source = parser.add_mutually_exclusive_group()
    source.add_argument("--boxes", help="person boxes: COCO detection results [{image_id|file_name, bbox, score}] "
                        "(default: a detector finds them)")
    source.add_argument("--whole-image", action="store_true", help="predict each image as one instance, no detector")
    source.add_argument("--detector", default=DEFAULT_DETECTOR,
                        help=f"the detector that finds the instances without --boxes (default: {DEFAULT_DETECTOR}, "
                        "torchvision's weights; `posecore plugins -v` lists the detectors)")
    parser.add_argument("--detector-weights", metavar="FILE",
                        help="the detector's weights as a local file (default: torchvision's cache, or a download)")
    parser.add_argument("--detector-classes", metavar="A,B",
                        help="classes to detect, comma-separated COCO names (default: the model's keypoint set's: "
                        "person, or COCO's animals for AP-10K, APT-36K and AnimalPose)")
    parser.add_argument("--box-score-thr", type=float, default=0.3,
                        help="ignore boxes (of the box file or the detector) scoring at or below this")
    parser.add_argument("--whole-image-fallback", action="store_true",
                        help="predict the whole image where the box file or the detector has no box for it "
                        "(default: no instance there, listed in the summary)")
    parser.add_argument("--heatmaps", action="store_true", help="also save heatmap overlays")
    parser.add_argument("--no-flip-test", action="store_true", help="skip the mirrored pass (faster)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--keypoint-thr", type=float, default=0.3, help="draw keypoints scoring above this")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="bf16: autocast, faster on GPUs and on CPUs with AMX; fp16: CUDA only")


def resolve_predictor(args: argparse.Namespace) -> Predictor:
    """The predictor of the preset this command uses (``--preset``, else the checkpoint's own
    config's, else the ``--plugin``'s default preset): the preset's own, else the core's top-down one."""
    from posecore._cli.common import host_from_args, selected_plugin
    from posecore._components import resolve_reference
    from posecore._predict import predict_topdown

    host = host_from_args(args)
    presets = host.registries.presets
    name = args.preset
    if name is None and args.checkpoint:
        from posecore._api import config_from_checkpoint
        from posecore._checkpoint import load_checkpoint

        config = config_from_checkpoint(load_checkpoint(args.checkpoint))
        name = config.name if config is not None and config.name in presets else None
    if name is None:
        plugin = selected_plugin(args)
        if plugin is None and args.checkpoint:
            return predict_topdown  # a foreign checkpoint, and no plugin named: the generic path
        name = host.default_preset(plugin).name
    predictor = presets.get(name).predictor
    return predict_topdown if predictor is None else resolve_reference(predictor)


def predict_request(args: argparse.Namespace) -> PredictRequest:
    """The typed request for this command line: inputs expanded and checked, boxes read, the
    output folder made, and the options plugins declared collected by ``dest``."""
    from posecore._cli.common import selected_plugin
    from posecore._predict import BoxTable, PredictRequest, expand_inputs

    inputs = tuple(expand_inputs(args.inputs))
    detecting = not (args.boxes or args.whole_image)
    if not detecting and (args.detector_weights or args.detector_classes):
        raise ConfigError("--detector-weights and --detector-classes set up the detector, which --boxes and "
                          "--whole-image leave out; give one or the other")
    boxes = BoxTable.read(args.boxes, args.box_score_thr)
    output = Path(args.output or Path("runs") / f"predict-{time.strftime('%Y%m%d-%H%M%S')}")
    output.mkdir(parents=True, exist_ok=True)
    options = {dest: getattr(args, dest) for dest in getattr(args, "_plugin_options", ())}
    return PredictRequest(inputs=inputs, output=output, checkpoint=args.checkpoint, preset=args.preset,
                          plugin=selected_plugin(args), device=args.device, boxes=boxes,
                          detector=args.detector if detecting else None, detector_weights=args.detector_weights,
                          detector_classes=_classes(args.detector_classes), box_score_threshold=args.box_score_thr,
                          flip_test=not args.no_flip_test, heatmaps=args.heatmaps,
                          keypoint_threshold=args.keypoint_thr, whole_image_fallback=args.whole_image_fallback,
                          precision=args.precision, options=options)


def _classes(text: str | None) -> tuple[str, ...] | None:
    """``"dog, cat"`` -> ``("dog", "cat")``; ``None`` (the keypoint set's classes)."""
    if text is None:
        return None
    classes = tuple(name.strip() for name in text.split(",") if name.strip())
    if not classes:
        raise ConfigError(f"--detector-classes {text!r} names no class; give comma-separated names: person or dog,cat")
    return classes


def predict_command(args: argparse.Namespace) -> int:
    predictor = resolve_predictor(args)
    return int(predictor(predict_request(args)) or 0)
