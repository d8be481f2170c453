"""Command-line overrides: ``train.epochs=5 model.backbone.drop_path_rate=0.2``.

Values are parsed as YAML scalars/flow collections (``5``, ``1e-3``, ``true``, ``[1, 2]``,
``null``). A path into the core's attrs classes must name existing fields (an unknown key says
"did you mean ..."); inside a component spec any argument name is accepted here and checked
against the component's factory when the config is validated against the loaded plugins.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

import attrs
import yaml

from posecore._errors import ConfigError, did_you_mean
from posecore.config._converter import structure, unstructure
from posecore.config._experiment import ExperimentConfig
from posecore.config._spec import ComponentSpec

__all__ = ["apply_overrides", "parse_override"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=value"`` into ``(["a", "b", "c"], parsed value)``."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key.sub=value (e.g. train.epochs=5)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot parse value {raw!r}: {exc}") from exc
    return key.strip().split("."), value


def apply_overrides(config: ExperimentConfig, overrides: Iterable[str]) -> ExperimentConfig:
    """Return a new config with each ``key.sub=value`` applied, validated like a loaded file."""
    overrides = list(overrides)
    if not overrides:
        return config
    data = unstructure(config)
    for text in overrides:
        path, value = parse_override(text)
        _set(data, path, value, ExperimentConfig, text)
    return structure(data, ExperimentConfig, source="config after overrides")


def _set(data: MutableMapping[str, Any], path: list[str], value: Any, cls: type | None, text: str) -> None:
    """Walk ``path`` through nested dicts; ``cls`` is the attrs class at this level, if known."""
    node: Any = data
    for depth, key in enumerate(path):
        where = ".".join(path[: depth + 1])
        last = depth == len(path) - 1
        if isinstance(node, list):
            node = _index(node, key, where, text)
            cls = None
            continue
        if not isinstance(node, MutableMapping):
            raise ConfigError(f"override {text!r}: {'.'.join(path[:depth])} is a value, not a section")
        if cls is not None and attrs.has(cls):
            names = [a.name for a in attrs.fields(cls)]
            if key not in names:
                raise ConfigError(
                    f"override {text!r}: unknown key {where!r}{did_you_mean(key, names)}; "
                    f"{'.'.join(path[:depth]) or 'the top level'} has: {', '.join(names)}"
                )
            field_type = attrs.fields_dict(cls)[key].type
            cls = field_type if isinstance(field_type, type) and attrs.has(field_type) else None
            if cls is ComponentSpec:
                cls = None  # spec arguments are free-form here, checked against the factory later
        elif key not in node and not last:
            raise ConfigError(f"override {text!r}: {where!r} does not exist; keys here: {', '.join(map(str, node))}")
        if last:
            node[key] = value
        else:
            if node.get(key) is None:
                raise ConfigError(f"override {text!r}: {where!r} is empty; set it as a whole first")
            node = node[key]


def _index(node: list[Any], key: str, where: str, text: str) -> Any:
    try:
        if int(key) < 0:
            raise IndexError(key)
        return node[int(key)]
    except (ValueError, IndexError):
        raise ConfigError(
            f"override {text!r}: {where!r} must index a list of {len(node)} items (0..{len(node) - 1})"
        ) from None
