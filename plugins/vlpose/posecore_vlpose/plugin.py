"""The posecore hooks of plugin ``vlpose``: VLPose (Li et al., 2024), language-vision tuning of
ViTPose for Human-Art (JulietLJY/VLPose, mmpose 1.0).

Every factory is a ``"module:attribute"`` string and every preset comes from the torch-free
``presets`` module, so listing the plugin imports no torch.
"""

from __future__ import annotations

import argparse

import posecore
from posecore import Component, Converter, Preset

POSECORE_PLUGIN_API = 1

_TINY_VIT = {"arch": "small", "embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8, "patch_padding": 1,
             "input_size": [32, 48], "prompt_mode": "deep", "prompt_tokens": 2, "drop_path_rate": 0.1}


@posecore.hookimpl
def posecore_backbones() -> list[Component]:
    return [
        Component(
            "vlpose_vit",
            "posecore_vlpose.model:VLPoseViT",
            "ViTPose ViT with VPT deep/shallow prompts and the original's frozen_stages (VLPose's ViTPrompt)",
            example={**_TINY_VIT},
        )
    ]


@posecore.hookimpl
def posecore_datasets() -> list[Component]:
    return [
        Component(
            "vlpose_styled",
            "posecore_vlpose.datasets:StyledDataset",
            "another dataset's samples with a 'style' field: the image's parent folder (Human-Art) or a fixed cycle",
            example="posecore_vlpose.datasets:write_styled_example",
        )
    ]


@posecore.hookimpl
def posecore_models() -> list[Component]:
    return [
        Component(
            "vlpose",
            "posecore_vlpose.model:VLPoseModel",
            "VLPose: prompted frozen ViT + frozen BLIP BERT text + relation matcher + dual extractor-injector head",
            example={
                "backbone": {"type": "vlpose_vit", **_TINY_VIT},
                "num_keypoints": 3,
                "input_size": [32, 48],
                "prompts": {"cartoon": "a cartoon human", "sketch": "a sketch of a human"},
                "text_vocab_size": 32, "text_width": 16, "text_layers": 1, "text_heads": 2,
                "text_intermediate": 32, "text_max_positions": 16,
                "matcher_heads": 2, "deconv_channels": [8],
            },
        )
    ]


@posecore.hookimpl
def posecore_presets() -> list[Preset]:
    from posecore_vlpose.presets import preset_declarations

    return preset_declarations()


@posecore.hookimpl
def posecore_converters() -> list[Converter]:
    return [
        Converter("vlpose-released", "posecore_vlpose.model:convert_released",
                  "released VLPose checkpoints (mmpose 1.0: mmpretrain ViT + prompts, LAVIS BLIP text encoder, "
                  "matcher, dual head); keeps the BERT's self-attention part"),
        Converter("vlpose-from-vitpose", "posecore_vlpose.model:convert_vitpose_init",
                  "an mmpose 1.x ViTPose checkpoint -> VLPose's ViT and main head branch (the COCO stage's start)"),
    ]


@posecore.hookimpl
def posecore_cli_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    if command != "predict":
        return
    group = parser.add_argument_group("vlpose (the Human-Art style that picks each image's prompt)")
    group.add_argument("--style", dest="vlpose_style", metavar="NAME",
                       help="every input's style (cartoon, sketch, ...; the model's prompts name them), or "
                       "'parent_dir': each image's folder name, as the original reads Human-Art")
    group.add_argument("--styles", dest="vlpose_styles", metavar="FILE",
                       help="JSON {image file name or path: style}, taking precedence over --style")
