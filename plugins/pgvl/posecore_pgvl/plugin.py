"""The posecore hooks of plugin ``pgvl``: PGVL, parse-graph visual-language interaction
(Liu, Xie and Shi, arXiv 2509.07385; github.com/lushbng/PGVL).

Every factory and preset is a ``"module:attribute"`` string, so listing the plugin imports no
torch. The published figures are the PGVL README's ("Main Results").
"""

from __future__ import annotations

import posecore
from posecore import Component, Converter, Preset, PublishedResult

POSECORE_PLUGIN_API = 1

_SOURCE = "Liu, Xie and Shi, arXiv 2509.07385; lushbng/PGVL README, 'Main Results'"

_TINY_MODEL = {
    "backbone": {"type": "vit", "arch": "small", "embed_dim": 32, "depth": 1, "num_heads": 2, "patch_size": 8,
                 "patch_padding": 1, "norm_eps": 1e-5, "input_size": [48, 64]},
    "head": {"type": "heatmap_deconv", "in_channels": 32, "num_keypoints": 3, "deconv_channels": [16],
             "input_stride": 8},
    "class_names": ["left eye", "nose", "right eye"],
    "text_width": 32, "text_heads": 2, "text_layers": 1, "text_embed_dim": 32, "prompt_heads": 2,
    "parse_dims": [32], "depths": [2], "splits": [[2, 2]], "target_dim": 32, "cross_heads": 2,
    "cl_ratio": 0.5,
    "input_size": [48, 64],
}


@posecore.hookimpl
def posecore_models() -> list[Component]:
    return [
        Component(
            "pgvl",
            "posecore_pgvl.model:PGVLModel",
            "PGVL: ViT + CLIP text prompts with learnable context, parse-graph text-visual fusion with the "
            "Guided Module, heatmap head, keypoint-text contrastive loss",
            example=_TINY_MODEL,
        )
    ]


def _published(dataset: str, split: str, metric: str, value: float, note: str) -> list[PublishedResult]:
    return [PublishedResult(dataset, split, metric, value, f"{_SOURCE}; {note}")]


@posecore.hookimpl
def posecore_presets() -> list[Preset]:
    return [
        Preset("pgvl-tiny-synthetic", "posecore_pgvl.presets:tiny_synthetic",
               "PGVL end to end on synthetic people (no data needed, a few CPU minutes)", default=True),
        Preset("pgvl-b-crowdpose-256x192", "posecore_pgvl.presets:pgvl_b_crowdpose",
               "PGVL ViT-B on CrowdPose, 256x192 (PGVL_ViTB_crowdpose_256X192.py)",
               published=_published("CrowdPose", "test", "AP", 68.2, "detector boxes, flip test")),
        Preset("pgvl-b-mpii-256x256", "posecore_pgvl.presets:pgvl_b_mpii",
               "PGVL ViT-B on MPII, 256x256 (PGVL_ViTB_mpii_256x256.py made runnable: no ALL_LINEAR)",
               published=_published("MPII", "val", "Mean", 91.7, "PCKh@0.5, GT boxes, flip test")),
        Preset("pgvl-b-ochuman-256x192", "posecore_pgvl.presets:pgvl_b_ochuman",
               "PGVL ViT-B trained on COCO, evaluated on OCHuman val, 256x192 (PGVL_ViTB_OCHuman_256x192.py)",
               published=_published("OCHuman", "val", "AP", 62.8, "GT boxes, flip test")),
        Preset("pgvl-l-ap10k-256x256", "posecore_pgvl.presets:pgvl_l_ap10k",
               "PGVL ViT-L (CLIP ViT-L/14 text) on AP-10K split 1, 256x256; the fused width (1280) "
               "where the released code hard-codes 512",
               published=_published("AP-10K", "val", "AP", 82.1, "split 1, GT boxes, flip test")),
        Preset("pgvl-b-animalpose-256x256", "posecore_pgvl.presets:pgvl_b_animalpose",
               "PGVL ViT-B on AnimalPose, 256x256; the config is inconsistent, fusion inferred (trees 512+256, "
               "mode 2), refitted from the released file's shapes when loaded",
               published=_published("AnimalPose", "val", "AP", 79.3, "GT boxes, flip test")),
    ]


@posecore.hookimpl
def posecore_converters() -> list[Converter]:
    return [
        Converter("pgvl-official", "posecore_pgvl.model:pgvl_official",
                  "released PGVL checkpoints (best_AP_epoch_*.pth, best_PCKh_epoch_210.pth; mmcv 1.x, v2 code): "
                  "my. -> fusion., my_up1. -> visual_proj., keypoint_head. -> head."),
    ]
