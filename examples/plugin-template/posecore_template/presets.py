"""The template's presets: complete experiments built from the template's and the core's parts.

A preset function takes no arguments and returns an :class:`~posecore.ExperimentConfig`. The
plugin declares it as ``"posecore_template.presets:template_tiny"``, so it runs only when the
preset is used. COCO dataset specs come from the core's :func:`posecore.data.coco_dataset_spec`.
"""

from __future__ import annotations

from posecore.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)
from posecore.data import coco_dataset_spec

__all__ = ["template_tiny"]

_INPUT_SIZE = (192, 256)  # (width, height)


def template_tiny() -> ExperimentConfig:
    """The core's ``topdown_heatmap`` model with the template's backbone and head, on COCO at
    192x256 (17 keypoints, heatmaps at stride 8): small enough to train on a laptop."""
    return ExperimentConfig(
        name="template-tiny",
        model={
            "type": "topdown_heatmap",
            "backbone": {"type": "template_tiny_conv", "width": 16, "num_stages": 3},
            "head": {"type": "template_tiny_heatmap", "in_channels": 64, "num_keypoints": 17, "input_stride": 8},
            "input_size": _INPUT_SIZE,
        },
        data=DataConfig(
            train=[coco_dataset_spec("train")],
            val=[coco_dataset_spec("val")],
            batch_size=64,
            input_size=_INPUT_SIZE,
        ),
        train=TrainConfig(
            epochs=30,
            optimizer=OptimizerConfig(type="adam", lr=1e-3, weight_decay=0.0),
            schedule=ScheduleConfig(type="step", milestones=(20, 25), warmup_iters=500),
        ),
        eval=EvalConfig(main_metric="AP", flip_test=False),
        plugins=("template",),
    )
