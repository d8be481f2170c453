"""The posecore hooks of plugin ``posebh``: PoseBH (CVPR 2025) and the ViTPose++ it builds on.

Every factory is a ``"module:attribute"`` string and every preset a call into the torch-free
``presets`` module, so listing the plugin imports no torch. The published figures are the PoseBH README's (uyoung-jeong/PoseBH, "Evaluation Results")
and, for ViTPose++ alone, the ViTPose README's ("ViTPose+" rows).
"""

from __future__ import annotations

import functools

import posecore
from posecore import Component, Converter, Preset, PublishedResult
from posecore_posebh import presets

POSECORE_PLUGIN_API = 1

_POSEBH = "Jeong et al., CVPR 2025; uyoung-jeong/PoseBH README, 'Evaluation Results'"
_VITPOSE = "Xu et al., TPAMI 2023; ViTAE-Transformer/ViTPose README, ViTPose+ rows"
_DATASETS = {"coco": "COCO", "ochuman": "OCHuman", "mpii": "MPII", "aic": "AI Challenger", "ap10k": "AP-10K",
             "apt36k": "APT-36K (PoseBH's split)", "wholebody": "COCO-WholeBody"}

#: (dataset key, size) -> the README's figures: (dataset, split, metric, value, note).
_PUBLISHED: dict[tuple[str, str], list[tuple[str, str, str, float, str]]] = {
    ("coco", "b"): [("COCO", "val2017", "AP", 77.3, "detector boxes (AP 56), flip test"),
                    ("COCO", "val2017", "AR", 82.4, ""),
                    ("COCO", "test-dev", "AP", 76.6, "detector boxes (AP 60.9); the evaluation server scores it")],
    ("coco", "h"): [("COCO", "val2017", "AP", 79.5, "detector boxes (AP 56), flip test"),
                    ("COCO", "val2017", "AR", 84.5, ""),
                    ("COCO", "test-dev", "AP", 78.6, "detector boxes (AP 60.9); the evaluation server scores it")],
    ("ochuman", "b"): [("OCHuman", "test", "AP", 83.1, "GT boxes; posecore eval --split test"), ("OCHuman", "test", "AR", 85.1, "")],
    ("ochuman", "h"): [("OCHuman", "test", "AP", 87.0, "GT boxes; posecore eval --split test"), ("OCHuman", "test", "AR", 88.4, "")],
    ("mpii", "b"): [("MPII", "val", "Mean", 93.2, "PCKh@0.5, GT boxes"), ("MPII", "val", "Mean@0.1", 39.3, "PCKh@0.1")],
    ("mpii", "h"): [("MPII", "val", "Mean", 94.2, "PCKh@0.5, GT boxes"), ("MPII", "val", "Mean@0.1", 42.3, "PCKh@0.1")],
    ("aic", "b"): [("AI Challenger", "val", "AP", 32.1, "GT boxes"), ("AI Challenger", "val", "AR", 36.7, "")],
    ("aic", "h"): [("AI Challenger", "val", "AP", 35.1, "GT boxes"), ("AI Challenger", "val", "AR", 39.5, "")],
    ("ap10k", "b"): [("AP-10K", "test", "AP", 75.0, "split 1, GT boxes; the authors' eval script reads val-split1"),
                     ("AP-10K", "test", "AR", 78.3, "")],
    ("ap10k", "h"): [("AP-10K", "test", "AP", 82.6, "split 1, GT boxes; the authors' eval script reads val-split1"),
                     ("AP-10K", "test", "AR", 85.4, "")],
    ("apt36k", "b"): [("APT-36K", "test", "AP", 87.2, "PoseBH's own split, not comparable with ViTPose++'s"),
                      ("APT-36K", "test", "AR", 89.6, "")],
    ("apt36k", "h"): [("APT-36K", "test", "AP", 90.6, "PoseBH's own split, not comparable with ViTPose++'s"),
                      ("APT-36K", "test", "AR", 92.6, "")],
    ("wholebody", "b"): [("COCO-WholeBody", "val", "wholebody/AP", 57.9, "detector boxes"),
                         ("COCO-WholeBody", "val", "wholebody/AR", 69.5, "")],
    ("wholebody", "h"): [("COCO-WholeBody", "val", "wholebody/AP", 62.0, "detector boxes"),
                         ("COCO-WholeBody", "val", "wholebody/AR", 72.9, "")],
}


def _published(key: tuple[str, str]) -> list[PublishedResult]:
    return [PublishedResult(dataset, split, metric, value, f"{_POSEBH}{'; ' + note if note else ''}")
            for dataset, split, metric, value, note in _PUBLISHED[key]]


@posecore.hookimpl
def posecore_backbones() -> list[Component]:
    return [
        Component(
            "posebh_vit_moe",
            "posecore_posebh.vit_moe:ViTMoE",
            "ViTPose++ ViT: shared fc1/fc2 plus one expert per dataset for the last P channels, chosen per sample",
            # One expert: the contract check runs it without dataset indices, and every parameter
            # must learn; the routing of several is the plugin's own tests' business.
            example={"arch": "small", "embed_dim": 32, "depth": 2, "num_heads": 2, "num_experts": 1, "part_features": 8,
                     "drop_path_rate": 0.1, "input_size": (48, 64)},
        )
    ]


@posecore.hookimpl
def posecore_heads() -> list[Component]:
    return [
        Component(
            "posebh_proto_head",
            "posecore_posebh.proto_head:PrototypeHead",
            "PoseBH keypoint-embedding head (deconvs, residual neck, 64-d per pixel) with the EMA prototype banks",
            example={"in_channels": 32, "num_keypoints": [5, 3], "embed_dim": 16, "deconv_channels": [16],
                     "neck_channels": 8, "num_clusters": 4},
        )
    ]


@posecore.hookimpl
def posecore_datasets() -> list[Component]:
    return [
        Component(
            "posebh_pw3d",
            "posecore_posebh.datasets:pw3d",
            "3DPW as PoseBH's transfer experiment reads it: COCO-format files with the 24 SMPL joints",
            example="posecore_posebh.datasets:write_pw3d_example",
        ),
        Component(
            "posebh_keypoint_subset",
            "posecore_posebh.datasets:KeypointSubset",
            "another dataset's samples with a subset or reordering of its keypoints (a new skeleton)",
            example="posecore_posebh.datasets:write_subset_example",
        ),
    ]


_TINY_MODEL = {
    "backbone": {"type": "posebh_vit_moe", "arch": "small", "embed_dim": 32, "depth": 1, "num_heads": 2,
                 "num_experts": 2, "part_features": 8, "input_size": [48, 64]},
    "heads": [{"type": "heatmap_deconv", "in_channels": 32, "num_keypoints": 5, "deconv_channels": [16]},
              {"type": "heatmap_deconv", "in_channels": 32, "num_keypoints": 3, "deconv_channels": [16]}],
    "proto_head": {"type": "posebh_proto_head", "in_channels": 32, "num_keypoints": [5, 3], "embed_dim": 16,
                   "deconv_channels": [16], "neck_channels": 8, "num_clusters": 4},
    "dataset_names": ["a", "b"],
    "cluster_options": [2, 4],
    "cluster_iterations": 20,
    "input_size": [48, 64],
}


@posecore.hookimpl
def posecore_models() -> list[Component]:
    return [
        Component(
            "posebh",
            "posecore_posebh.model:PoseBHModel",
            "ViTPose++ multi-dataset model (MoE ViT, one head per dataset) + PoseBH prototypes, CPS and CSS",
            example=_TINY_MODEL,
        ),
        Component(
            "posebh_transfer",
            "posecore_posebh.model:PoseBHTransferModel",
            "PoseBH transfer model: plain ViT, one heatmap head, a fresh prototype head (InterHand2.6M, 3DPW)",
            example={
                "backbone": {"type": "vit", "arch": "small", "embed_dim": 32, "depth": 1, "num_heads": 2,
                             "input_size": [48, 64]},
                "head": {"type": "heatmap_deconv", "in_channels": 32, "num_keypoints": 4, "deconv_channels": [16]},
                "proto_head": {"type": "posebh_proto_head", "in_channels": 32, "num_keypoints": [4], "embed_dim": 16,
                               "deconv_channels": [16], "neck_channels": 8, "hard_assignment": True},
                "input_size": [48, 64],
            },
        ),
    ]


@posecore.hookimpl
def posecore_presets() -> list[Preset]:
    declared = [
        Preset(
            "posebh-tiny-synthetic",
            "posecore_posebh.presets:tiny_synthetic",
            "PoseBH end to end on two synthetic datasets with different skeletons (no data needed, a few CPU minutes)",
            default=True,
        )
    ]
    for size, coco in (("b", 77.3), ("h", 79.5)):
        start = f"vitpose+_{'base' if size == 'b' else 'huge'}.pth"
        declared.append(Preset(
            f"posebh-{size}-mdt-released-256x192",
            functools.partial(presets.mdt_preset, size, True, True),
            f"PoseBH-{size.upper()} multi-dataset training, reproduction of the released code, its bugs included "
            f"(model.legacy_quirks=true; the centre shift drawn once per dataset build): the published run "
            f"(6 datasets, 3 phases, from {start})",
            published=[PublishedResult("COCO", "val2017", "AP", coco, f"{_POSEBH}; the COCO head, detector boxes")],
        ))
        declared.append(Preset(
            f"posebh-{size}-mdt-256x192",
            functools.partial(presets.mdt_preset, size),
            f"PoseBH-{size.upper()} multi-dataset training, corrected: the method as described, without the released "
            f"code's bugs (legacy_quirks=false); no published figure ran this code (posebh-{size}-mdt-released-256x192 "
            f"reproduces the published run)",
        ))
        for dataset, label in _DATASETS.items():
            declared.append(Preset(
                f"posebh-{size}-{dataset}-256x192",
                functools.partial(presets.posebh_eval_preset, size, dataset),
                f"PoseBH-{size.upper()} evaluated on {label}: its expert and head (evaluation only)",
                published=_published((dataset, size)),
            ))
    declared += [
        Preset(
            "posebh-b-interhand2d-256x192",
            functools.partial(presets.transfer_preset, "interhand2d"),
            "PoseBH-B transferred to InterHand2.6M single hands (21 keypoints), prototypes for the new keypoints",
            published=[PublishedResult("InterHand2.6M", "test", "PCK@0.2/keypoint", 98.7, f"{_POSEBH}; paper 98.6"),
                       PublishedResult("InterHand2.6M", "test", "AUC", 86.6, f"{_POSEBH}; paper 87.1"),
                       PublishedResult("InterHand2.6M", "test", "EPE", 3.61, f"{_POSEBH}; paper 3.70")],
        ),
        Preset(
            "posebh-b-3dpw-256x192",
            functools.partial(presets.transfer_preset, "3dpw"),
            "PoseBH-B transferred to 3DPW (24 SMPL joints in 2D), prototypes for the new keypoints",
            published=[PublishedResult("3DPW", "test", "AP", 83.8, f"{_POSEBH}; paper 83.6"),
                       PublishedResult("3DPW", "test", "AR", 87.1, f"{_POSEBH}; paper 87.1")],
        ),
    ]
    for size, coco in (("s", 75.8), ("b", 77.0), ("l", 78.6), ("h", 79.4)):
        declared.append(Preset(
            f"vitpose+-{size}-mdt-256x192",
            functools.partial(presets.vitpose_plus_preset, size),
            f"ViTPose++-{size.upper()} (no prototypes): the vitpose+_*.pth architecture and multi-dataset recipe, "
            "as the original runs it (fp32, the centre shift drawn once per dataset build)",
            published=[PublishedResult("COCO", "val2017", "AP", coco, f"{_VITPOSE}; detector boxes")],
        ))
    return declared


@posecore.hookimpl
def posecore_converters() -> list[Converter]:
    converters = [
        Converter("posebh-mmpose0x", "posecore_posebh.model:mmpose0x",
                  "ViTPose++ vitpose+_*.pth / PoseBH base.pth (keypoint_head, associate_keypoint_heads, proto_head)"),
        Converter("posebh-remove-proto", "posecore_posebh.model:remove_proto",
                  "PoseBH tools/remove_proto.py: drop the keypoint prototypes (before transfer)"),
    ]
    for short, label in (("coco", "COCO"), ("aic", "AIC"), ("mpii", "MPII"), ("ap10k", "AP-10K"),
                         ("apt36k", "APT-36K"), ("wholebody", "COCO-WholeBody")):
        converters.append(Converter(
            f"posebh-split-{short}", f"posecore_posebh.model:split_{short}",
            f"ViTPose++/PoseBH multi-dataset file (or an official split of it) -> plain ViTPose of {label} "
            "(expert merged into fc2, its head kept)"))
        converters.append(Converter(
            f"posebh-hf-{short}", f"posecore_posebh.model:hf_{short}",
            f"Hugging Face ViTPose++ (VitPoseForPoseEstimation with experts, one head) -> the six-head model, "
            f"its head as the {label} head"))
    return converters
