"""The core's own plugin: its components register through the same hooks as everyone's.

Registering the built-ins this way (as pytest, tox and datasette do) proves that the hook
surface is enough to express real components, and keeps ``posecore plugins`` honest about
where every name comes from.
"""

from __future__ import annotations

from posecore._components import AppTab, Component, Converter, Preset, PublishedResult
from posecore.hookspecs import PLUGIN_API_VERSION, hookimpl

POSECORE_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def posecore_backbones() -> list[Component]:
    return [
        Component(
            "timm",
            "posecore.models._backbones:TimmBackbone",
            "any timm model's feature map (ResNet, HRNet, SwinV2, ...)",
            example={"model_name": "resnet18", "out_index": 2},
        ),
        Component(
            "vit",
            "posecore.models._vit:ViT",
            "ViTPose's plain ViT (S/B/L/H): padded patches, class-slot position embedding, feature map out",
            example={"arch": "small", "embed_dim": 32, "depth": 2, "num_heads": 2, "drop_path_rate": 0.1,
                     "input_size": (48, 64)},
        ),
    ]


@hookimpl
def posecore_heads() -> list[Component]:
    return [
        Component(
            "heatmap_deconv",
            "posecore.models._heads:HeatmapDeconvHead",
            "SimpleBaseline/ViTPose classic head: stride-2 deconvs + BN + ReLU, then 1x1 conv",
            example={"in_channels": 32, "num_keypoints": 5, "deconv_channels": [16, 16]},
        ),
        Component(
            "heatmap_simple",
            "posecore.models._heads:HeatmapSimpleHead",
            "ViTPose simple head: ReLU, bilinear x4 upsampling, then one 3x3 conv",
            example={"in_channels": 32, "num_keypoints": 5},
        ),
    ]


@hookimpl
def posecore_losses() -> list[Component]:
    return [
        Component(
            "keypoint_mse",
            "posecore.models._losses:KeypointMSELoss",
            "heatmap MSE with per-keypoint target weights",
        )
    ]


@hookimpl
def posecore_datasets() -> list[Component]:
    from posecore.data._catalog import DATASETS

    return DATASETS


@hookimpl
def posecore_transforms() -> list[Component]:
    from posecore.data._catalog import TRANSFORMS

    return TRANSFORMS


@hookimpl
def posecore_codecs() -> list[Component]:
    from posecore.codecs._catalog import CODECS

    return CODECS


@hookimpl
def posecore_metrics() -> list[Component]:
    from posecore.metrics._catalog import METRICS

    return METRICS


@hookimpl
def posecore_models() -> list[Component]:
    return [
        Component(
            "topdown_heatmap",
            "posecore.models._topdown:TopdownHeatmapModel",
            "top-down: backbone + heatmap head + heatmap loss",
            example={
                "backbone": {"type": "timm", "model_name": "resnet18", "out_index": 2},
                "head": {"type": "heatmap_deconv", "in_channels": 128, "num_keypoints": 5,
                         "deconv_channels": [16], "input_stride": 8},
                "input_size": [48, 64],
            },
        )
    ]


@hookimpl
def posecore_detectors() -> list[Component]:
    from posecore._torchvision_detect import DETECTORS

    return DETECTORS


@hookimpl
def posecore_presets() -> list[Preset]:
    return [
        Preset(
            "simplebaseline-res50-coco-256x192",
            "posecore._presets:simplebaseline_res50_coco",
            "SimpleBaseline (Xiao et al., ECCV 2018): ResNet-50 + 3 deconvs, COCO 256x192",
            published=[PublishedResult("COCO", "val2017", "AP", 70.4,
                                       "Xiao et al. 2018, Table 'COCO val' (flip test, person detector boxes)")],
        ),
        Preset(
            "vit-tiny-synthetic",
            "posecore._demo:vit_tiny_synthetic",
            "the embedded default: a tiny ViTPose on procedural stick figures (no data needed)",
            default=True,
        ),
        *(
            Preset(
                f"vitpose-{size}-coco-256x192",
                f"posecore._presets:vitpose_{size}_coco",
                f"ViTPose-{size.upper()} (Xu et al., NeurIPS 2022), classic head, COCO 256x192, mmpose 1.x recipe",
                published=[
                    PublishedResult("COCO", "val2017", "AP", mmpose,
                                    "mmpose 1.x, configs/body_2d_keypoint/topdown_heatmap/coco/vitpose_coco.md "
                                    "(classic decoder, detector boxes AP 56.4, flip test)"),
                    PublishedResult("COCO", "val2017", "AP", original,
                                    "ViTAE-Transformer/ViTPose README, MAE pre-training, classic decoder "
                                    "(the original recipe)"),
                ],
            )
            for size, mmpose, original in (("s", 73.9, 73.8), ("b", 75.7, 75.8), ("l", 78.2, 78.3), ("h", 78.8, 79.1))
        ),
    ]


@hookimpl
def posecore_converters() -> list[Converter]:
    return [
        Converter("vitpose-mmpose0x", "posecore.models._vit_convert:mmpose0x",
                  "original ViTPose / ViTPose++ / mmpose 0.x: backbone.*, keypoint_head.*"),
        Converter("vitpose-mmpose1x", "posecore.models._vit_convert:mmpose1x",
                  "mmpose 1.x ViTPose (mmpretrain ViT): backbone.layers.*, backbone.ln1, head.*"),
        Converter("vitpose-hf", "posecore.models._vit_convert:hf",
                  "Hugging Face transformers VitPoseForPoseEstimation: backbone.embeddings/encoder.*, head.*"),
    ]


@hookimpl
def posecore_app_tabs() -> list[AppTab]:
    return [AppTab("predict", "Predict", "posecore._app:predict_tab",
                   "an image or video in, the skeletons drawn and the COCO keypoint results out")]
