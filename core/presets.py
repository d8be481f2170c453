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

__all__ = ["simplebaseline_res50_coco"]

_COCO = "data/coco"


def _coco_dataset(split: str) -> dict[str, str]:
    return {
        "type": "coco_style",
        "ann_file": f"{_COCO}/annotations/person_keypoints_{split}2017.json",
        "metainfo": f"{_COCO}/metainfo.yaml",
        "image_root": f"{_COCO}/{split}2017",
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
        data=DataConfig(
            train=[_coco_dataset("train")],
            val=[_coco_dataset("val")],
            batch_size=64,
            input_size=(192, 256),
        ),
        train=TrainConfig(
            epochs=140,
            optimizer=OptimizerConfig(type="adam", lr=1e-3, weight_decay=0.0),
            schedule=ScheduleConfig(type="step", milestones=(90, 120), warmup_iters=500),
        ),
        eval=EvalConfig(main_metric="AP", flip_test=True),
    )
