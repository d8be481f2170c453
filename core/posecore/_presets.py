"""The core's presets: complete experiments built only from core components."""

from __future__ import annotations

from posecore.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)
from posecore.data._coco_layout import COCO_VAL_PERSON_DETECTIONS, coco_dataset_spec, coco_test_dev_spec

__all__ = [
    "VITPOSE_RECIPES",
    "simplebaseline_res50_coco",
    "vitpose_b_coco",
    "vitpose_coco",
    "vitpose_h_coco",
    "vitpose_l_coco",
    "vitpose_s_coco",
]

#: Per ViTPose size: (drop_path_rate, layer_decay), mmpose 1.x's recipe
#: (configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_ViTPose-*_8xb64-210e_coco-256x192.py). The
#: original repository's small and large configs differ (0.3 drop path / 0.9 decay for S; 16 "layers"
#: for the 24-block L, which scales some lrs above 1); mmpose 1.x fixed those, and we follow it.
VITPOSE_RECIPES: dict[str, tuple[float, float]] = {
    "small": (0.1, 0.8),
    "base": (0.3, 0.75),
    "large": (0.5, 0.8),
    "huge": (0.55, 0.85),
}


def simplebaseline_res50_coco() -> ExperimentConfig:
    """SimpleBaseline ResNet-50 on COCO at 256x192: Adam 1e-3, 140 epochs, steps at 90 and 120."""
    return ExperimentConfig(
        name="simplebaseline-res50-coco-256x192",
        model={
            "type": "topdown_heatmap",
            "backbone": {"type": "timm", "model_name": "resnet50"},
            "head": {"type": "heatmap_deconv", "in_channels": 2048, "num_keypoints": 17,
                     "deconv_channels": [256, 256, 256], "input_stride": 32},
            "input_size": [192, 256],
        },
        codec={"type": "msra_heatmap", "input_size": [192, 256], "heatmap_size": [48, 64], "sigma": 2.0},
        data=DataConfig(
            train=[coco_dataset_spec("train")],
            val=[coco_dataset_spec("val")],
            batch_size=64,
            input_size=(192, 256),
        ),
        train=TrainConfig(
            epochs=140,
            optimizer=OptimizerConfig(type="adam", lr=1e-3, weight_decay=0.0),
            schedule=ScheduleConfig(type="step", milestones=(90, 120), warmup_iters=500),
        ),
        eval=EvalConfig(metrics=[{"type": "coco_ap", "metainfo": "coco"}], main_metric="AP", flip_test=True),
    )


def vitpose_coco(arch: str) -> ExperimentConfig:
    """ViTPose-{S,B,L,H} (classic head) on COCO at 256x192, mmpose 1.x's recipe: UDP heatmaps
    (sigma 2, 64x48), AdamW 5e-4, weight decay 0.1, layer-wise lr decay, grad clip 1.0, 210 epochs,
    warmup 500 iterations, steps at 170 and 200, batch 512 (8 x 64); evaluated with detector boxes
    and flip test."""
    from posecore.models._vit import VIT_ARCHS

    drop_path_rate, layer_decay = VITPOSE_RECIPES[arch]
    size = arch[0]
    input_size, heatmap_size = (192, 256), (48, 64)
    return ExperimentConfig(
        name=f"vitpose-{size}-coco-256x192",
        model={
            "type": "topdown_heatmap",
            "backbone": {"type": "vit", "arch": arch, "drop_path_rate": drop_path_rate, "input_size": list(input_size)},
            "head": {"type": "heatmap_deconv", "in_channels": VIT_ARCHS[arch][0], "num_keypoints": 17,
                     "deconv_channels": [256, 256], "input_stride": 16},
            "input_size": list(input_size),
        },
        codec={"type": "udp_heatmap", "input_size": list(input_size), "heatmap_size": list(heatmap_size), "sigma": 2.0},
        data=DataConfig(
            train=[coco_dataset_spec("train")],
            val=[{**coco_dataset_spec("val"), "bbox_file": COCO_VAL_PERSON_DETECTIONS}],
            test=[coco_test_dev_spec()],
            batch_size=64,
            input_size=input_size,
        ),
        train=TrainConfig(
            epochs=210,
            optimizer=OptimizerConfig(type="adamw", lr=5e-4, weight_decay=0.1, layer_decay=layer_decay),
            schedule=ScheduleConfig(type="step", milestones=(170, 200), warmup_iters=500, warmup_ratio=0.001),
            grad_clip=1.0,
        ),
        eval=EvalConfig(
            # mmpose 1.x's CocoMetric: box x keypoint rescoring (threshold 0.2), OKS-NMS 0.9; the
            # ground truth is the evaluated dataset's own ann_file (so --data moves both together).
            metrics=[{"type": "coco_ap", "metainfo": "coco", "score_mode": "bbox_keypoint", "keypoint_score_thr": 0.2,
                      "nms_thr": 0.9}],
            main_metric="AP",
            flip_test=True,
        ),
    )


def vitpose_s_coco() -> ExperimentConfig:
    return vitpose_coco("small")


def vitpose_b_coco() -> ExperimentConfig:
    return vitpose_coco("base")


def vitpose_l_coco() -> ExperimentConfig:
    return vitpose_coco("large")


def vitpose_h_coco() -> ExperimentConfig:
    return vitpose_coco("huge")
