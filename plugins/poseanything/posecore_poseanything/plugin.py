"""The posecore hooks of plugin ``poseanything``: Pose Anything (Hirschorn & Avidan, ECCV 2024).

Declarations only; factories and preset configs are resolved when used, so listing plugins
imports no torch (``presets`` imports only posecore's attrs config classes).
"""

from __future__ import annotations

import argparse
import functools

import posecore
from posecore import AppTab, Component, Converter, Preset, PublishedResult
from posecore_poseanything import presets

POSECORE_PLUGIN_API = 2  # posecore_app_tabs

_TINY_SWIN = {"model_name": "swinv2_tiny_window16_256",
              "model_kwargs": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]}}


@posecore.hookimpl
def posecore_backbones() -> list[Component]:
    return [
        Component(
            "poseanything_swinv2",
            "posecore_poseanything.swinv2:SwinV2Backbone",
            "poseanything: timm SwinV2, last stage normalised and upsampled x2 (bilinear, or learned for legacy B)",
            example={**_TINY_SWIN, "img_size": 64, "window_size": 4, "input_size": [64, 64]},
        )
    ]


@posecore.hookimpl
def posecore_models() -> list[Component]:
    return [
        Component(
            "poseanything",
            "posecore_poseanything.model:PoseAnything",
            "poseanything: few-shot category-agnostic pose, support keypoint tokens + graph transformer decoder",
            example={"backbone": {"type": "poseanything_swinv2", **_TINY_SWIN}, "embed_dim": 32, "num_heads": 2,
                     "dim_feedforward": 64, "max_keypoints": 10},
        )
    ]


def _published(arch: str, shots: int, split: int) -> PublishedResult:
    value = presets.PUBLISHED_PCK[(arch, shots)][split - 1]
    return PublishedResult("MP-100", f"split{split} test", "PCK@0.2", value, presets.PUBLISHED_SOURCE[arch])


#: ``posecore predict`` for every preset: supports and skeleton in, keypoints on the queries out.
_PREDICTOR = "posecore_poseanything.predictor:predict_command"


@posecore.hookimpl
def posecore_presets() -> list[Preset]:
    declared = [
        Preset(
            presets.preset_name(arch, shots, split),
            functools.partial(presets.mp100_preset, arch, shots, split),
            f"Pose Anything {arch} ({presets.ARCHITECTURES[arch]['backbone']['model_name']}), {shots}-shot, "
            f"MP-100 split {split}; {presets.pretraining_note(arch)}",
            published=[_published(arch, shots, split)],
            predictor=_PREDICTOR,
        )
        for (arch, shots) in presets.PUBLISHED_PCK
        for split in presets.SPLITS
    ]
    declared.append(Preset(
        "poseanything-tiny-synthetic",
        "posecore_poseanything.presets:tiny_synthetic",
        "poseanything default: a tiny model on procedural creatures, scored on 8 categories never seen in training",
        default=True,
        predictor=_PREDICTOR,
    ))
    return declared


@posecore.hookimpl
def posecore_converters() -> list[Converter]:
    return [
        Converter("poseanything-original", "posecore_poseanything.model:convert_original",
                  "released Pose Anything checkpoints (mmcv 1.x: backbone.* SwinV2, keypoint_head.*); Tiny, Small "
                  "and the legacy SwinV2-B"),
        Converter("poseanything-swinv2-pretraining", "posecore_poseanything.swinv2:convert_swinv2_pretraining",
                  "SwinV2 pre-training files (official supervised, SimMIM's encoder.*) into a Pose Anything "
                  "model's backbone: the presets' train.init_weights"),
    ]



@posecore.hookimpl
def posecore_app_tabs() -> list[AppTab]:
    return [AppTab("poseanything", "Pose Anything: define a category", "posecore_poseanything.app:build_tab",
                   "poseanything: click a support's keypoints, join them into a skeleton, save the category file "
                   "and find it on query images")]

@posecore.hookimpl
def posecore_cli_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    if command != "predict":
        return
    group = parser.add_argument_group("poseanything (few-shot: the keypoints of a support image, found on the queries)")
    group.add_argument("--support", action="append", default=[], metavar="IMAGE",
                       help="support image (repeat for several shots)")
    group.add_argument("--support-keypoints", action="append", default=[], metavar="FILE",
                       help="JSON/YAML with the support's keypoints [[x, y], ...] in image pixels, one per --support")
    group.add_argument("--skeleton", metavar="FILE", help="JSON/YAML with the limbs [[i, j], ...], 0-based")
    group.add_argument("--category", metavar="FILE",
                       help="JSON/YAML describing a category: its support image(s), keypoints and skeleton "
                       "(instead of the three options above; see the poseanything README)")
    group.add_argument("--original-demo-colours", action="store_true",
                       help="reproduce the released demo's bug: ImageNet mean/std applied to BGR pixels "
                       "(R and B swap statistics); off: each channel its own statistics, as in training")
    group.add_argument("--original-demo-geometry", action="store_true",
                       help="crop as the released demo: pad the image (or box) to a square with the mean colour "
                       "and resize it to the input; off: the box padded 1.25x and warped, as in training and "
                       "evaluation")
