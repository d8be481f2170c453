"""posecore: a slim PyTorch core for 2D pose estimation, with methods as plugins.

Importing ``posecore`` is cheap (no torch): the plugin contract, declarations and configs are
available at once; models and data load when used.
"""

from __future__ import annotations

from typing import Any

from posecore._components import Component, Converter, Nested, Preset, PublishedResult
from posecore.config import ComponentSpec, ExperimentConfig
from posecore._errors import (
    CheckpointError,
    ConfigError,
    DataError,
    PluginError,
    PosecoreError,
    UnknownComponentError,
)
from posecore.hookspecs import PLUGIN_API_VERSION, hookimpl, hookspec

__all__ = [
    "PLUGIN_API_VERSION",
    "CheckpointError",
    "Component",
    "ComponentSpec",
    "ConfigError",
    "Converter",
    "DataError",
    "ExperimentConfig",
    "Nested",
    "PluginError",
    "Pose",
    "PosecoreError",
    "Preset",
    "PublishedResult",
    "UnknownComponentError",
    "__version__",
    "build",
    "build_model",
    "get_preset",
    "hookimpl",
    "hookspec",
]


def build(kind: str, spec: ComponentSpec | dict[str, Any] | str, **overrides: Any) -> Any:
    """Build a registered component, e.g. ``posecore.build("backbones", {"type": "timm", ...})``."""
    from posecore._plugins import get_host

    return get_host().registries[kind].build(spec, **overrides)


def build_model(config: ExperimentConfig) -> Any:
    """Build the :class:`~posecore.models.PoseModel` an experiment config describes."""
    return build("models", config.model)


def get_preset(name: str) -> ExperimentConfig:
    """The experiment config of a registered preset."""
    from posecore._plugins import get_host

    return get_host().registries.presets.get(name).load()


def __getattr__(name: str) -> Any:
    if name == "Pose":  # imported on first use: ``import posecore`` stays free of torch
        from posecore._api import Pose

        return Pose
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("posecore")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module 'posecore' has no attribute {name!r}")
