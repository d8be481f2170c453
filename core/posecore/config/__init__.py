"""Experiment configuration: frozen attrs classes, a cattrs converter, YAML files and overrides."""

from posecore.config._converter import structure, unstructure
from posecore.config._experiment import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    OptimizerConfig,
    ParamGroupRule,
    ScheduleConfig,
    StageConfig,
    TrainConfig,
)
from posecore.config._io import atomic_write_text, dump_config, load_config, save_config
from posecore.config._overrides import apply_overrides, parse_override
from posecore.config._spec import ComponentSpec

__all__ = [
    "ComponentSpec",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "OptimizerConfig",
    "ParamGroupRule",
    "ScheduleConfig",
    "StageConfig",
    "TrainConfig",
    "apply_overrides",
    "atomic_write_text",
    "dump_config",
    "load_config",
    "parse_override",
    "save_config",
    "structure",
    "unstructure",
]
