"""posecore: a slim PyTorch core for 2D pose estimation, with methods as plugins.

Importing ``posecore`` is cheap (no torch): the plugin contract, declarations and configs are
available at once; models and data load when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from posecore._components import AppTab, Component, Converter, Nested, Preset, PublishedResult
from posecore._errors import (
    CheckpointError,
    ConfigError,
    DataError,
    PluginError,
    PosecoreError,
    UnknownComponentError,
)
from posecore._lazy import lazy_exports
from posecore.config import ComponentSpec, ExperimentConfig
from posecore.hookspecs import PLUGIN_API_VERSION, hookimpl, hookspec

if TYPE_CHECKING:
    from posecore._api import Pose, PosePrediction, load_model, load_weights
    from posecore._app import AppContext
    from posecore._checkpoint import ConvertedStateDict, KeyReport, load_checkpoint
    from posecore._detect import Detections, Detector
    from posecore._malloc import tune_cpu_allocator
    from posecore._plugins import load_plugins
    from posecore._predict import BoxTable, Predictor, PredictRequest, predict_topdown, prediction_rows
    from posecore._visualize import draw_pose, save_image

__all__ = [
    "PLUGIN_API_VERSION",
    "AppContext",
    "AppTab",
    "BoxTable",
    "CheckpointError",
    "Component",
    "ComponentSpec",
    "ConfigError",
    "ConvertedStateDict",
    "Converter",
    "DataError",
    "Detections",
    "Detector",
    "ExperimentConfig",
    "KeyReport",
    "Nested",
    "PluginError",
    "Pose",
    "PosePrediction",
    "PosecoreError",
    "PredictRequest",
    "Predictor",
    "Preset",
    "PublishedResult",
    "UnknownComponentError",
    "__version__",
    "build",
    "build_model",
    "draw_pose",
    "get_converter",
    "get_preset",
    "hookimpl",
    "hookspec",
    "load_checkpoint",
    "load_model",
    "load_plugins",
    "load_weights",
    "predict_topdown",
    "prediction_rows",
    "save_image",
    "tune_cpu_allocator",
]


def build(kind: str, spec: ComponentSpec | dict[str, Any] | str, **overrides: Any) -> Any:
    """Build a registered component, e.g. ``posecore.build("backbones", {"type": "timm", ...})``."""
    from posecore._plugins import get_host

    return get_host().registries[kind].build(spec, **overrides)


def build_model(config: ExperimentConfig) -> Any:
    """Build the :class:`~posecore.models.PoseModel` an experiment config describes, with the
    experiment's codec, exactly as training and evaluation build it."""
    from posecore._plugins import get_host
    from posecore.engine._builder import build_model as assemble

    return assemble(config, get_host().registries)


def get_converter(name: str) -> Any:
    """The checkpoint converter registered as ``name``: a ``state_dict -> state_dict`` callable,
    for a plugin's converter to build on a layout another converter already reads (a Hugging Face
    file, say) instead of repeating its renaming. Loading itself goes through :func:`load_weights`."""
    from posecore._plugins import get_host

    return get_host().registries.converters.get(name).resolve()


def get_preset(name: str) -> ExperimentConfig:
    """The experiment config of a registered preset."""
    from posecore._plugins import get_host

    return get_host().registries.presets.get(name).load()


#: Names imported on first use, so that ``import posecore`` stays free of torch: name -> module.
_LAZY = {
    "AppContext": "posecore._app",
    "Pose": "posecore._api",
    "PosePrediction": "posecore._api",
    "load_model": "posecore._api",
    "ConvertedStateDict": "posecore._checkpoint",
    "KeyReport": "posecore._checkpoint",
    "load_checkpoint": "posecore._checkpoint",
    "Detections": "posecore._detect",
    "Detector": "posecore._detect",
    "load_weights": "posecore._api",
    "load_plugins": "posecore._plugins",
    "BoxTable": "posecore._predict",
    "PredictRequest": "posecore._predict",
    "Predictor": "posecore._predict",
    "predict_topdown": "posecore._predict",
    "prediction_rows": "posecore._predict",
    "draw_pose": "posecore._visualize",
    "save_image": "posecore._visualize",
    "tune_cpu_allocator": "posecore._malloc",
}


_lazy_getattr, __dir__ = lazy_exports(__name__, globals(), _LAZY)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("posecore")
        except PackageNotFoundError:
            return "0+unknown"
    return _lazy_getattr(name)
