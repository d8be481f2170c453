"""The core's own plugin: its components register through the same hooks as everyone's.

Registering the built-ins this way (as pytest, tox and datasette do) proves that the hook
surface is enough to express real components, and keeps ``posecore plugins`` honest about
where every name comes from.
"""

from __future__ import annotations

from posecore.components import Component, Preset, PublishedResult
from posecore.hookspecs import PLUGIN_API_VERSION, hookimpl

POSECORE_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def posecore_backbones() -> list[Component]:
    return [
        Component(
            "timm",
            "posecore.models.backbones:TimmBackbone",
            "any timm model's feature map (ResNet, HRNet, SwinV2, ...)",
            example={"model_name": "resnet18", "out_index": 2},
        )
    ]


@hookimpl
def posecore_heads() -> list[Component]:
    return [
        Component(
            "heatmap_deconv",
            "posecore.models.heads:HeatmapDeconvHead",
            "SimpleBaseline/ViTPose classic head: stride-2 deconvs + BN + ReLU, then 1x1 conv",
            example={"in_channels": 32, "num_keypoints": 5, "deconv_channels": [16, 16]},
        )
    ]


@hookimpl
def posecore_losses() -> list[Component]:
    return [
        Component(
            "keypoint_mse",
            "posecore.models.losses:KeypointMSELoss",
            "heatmap MSE with per-keypoint target weights",
        )
    ]


@hookimpl
def posecore_datasets() -> list[Component]:
    from posecore.data.catalog import DATASETS

    return DATASETS


@hookimpl
def posecore_transforms() -> list[Component]:
    from posecore.data.catalog import TRANSFORMS

    return TRANSFORMS


@hookimpl
def posecore_codecs() -> list[Component]:
    from posecore.codecs.catalog import CODECS

    return CODECS


@hookimpl
def posecore_metrics() -> list[Component]:
    from posecore.metrics.catalog import METRICS

    return METRICS


@hookimpl
def posecore_models() -> list[Component]:
    return [
        Component(
            "topdown_heatmap",
            "posecore.models.topdown:TopdownHeatmapModel",
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
def posecore_presets() -> list[Preset]:
    return [
        Preset(
            "simplebaseline-res50-coco-256x192",
            "posecore.presets:simplebaseline_res50_coco",
            "SimpleBaseline (Xiao et al., ECCV 2018): ResNet-50 + 3 deconvs, COCO 256x192",
            published=[PublishedResult("COCO", "val2017", "AP", 70.4,
                                       "Xiao et al. 2018, Table 'COCO val' (flip test, person detector boxes)")],
        )
    ]
