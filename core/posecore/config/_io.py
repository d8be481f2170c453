"""Reading and writing experiment files (YAML), atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from posecore._errors import ConfigError
from posecore._fileio import atomic_write
from posecore.config._converter import structure, unstructure
from posecore.config._experiment import ExperimentConfig

__all__ = ["atomic_write_text", "dump_config", "load_config", "save_config"]


def dump_config(config: ExperimentConfig) -> str:
    """The fully resolved config as YAML text (every field, defaults included)."""
    return yaml.safe_dump(unstructure(config), sort_keys=False, default_flow_style=None, width=100)


def load_config(path: str | os.PathLike[str]) -> ExperimentConfig:
    """Read an experiment YAML file; errors name the file and each bad field."""
    path = Path(path)
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level; got {type(data).__name__}")
    return structure(data, ExperimentConfig, source=f"config {path}")


def save_config(config: ExperimentConfig, path: str | os.PathLike[str]) -> Path:
    """Write the config as YAML, atomically (no half-written file is ever left behind)."""
    return atomic_write_text(path, dump_config(config))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically: no half-written file is ever left behind."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
