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

__all__ = ["coco_dataset_spec", "simplebaseline_res50_coco"]


def coco_dataset_spec(split: str, root: str = "data/coco") -> dict[str, str]:
    """The ``coco`` dataset spec for COCO 2017 ``split`` laid out as the COCO download is
    (``annotations/person_keypoints_<split>2017.json``, ``<split>2017/``), for any preset on COCO."""
    return {
        "type": "coco",
        "ann_file": f"{root}/annotations/person_keypoints_{split}2017.json",
        "image_root": f"{root}/{split}2017",
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
        eval=EvalConfig(main_metric="AP", flip_test=True),
    )
