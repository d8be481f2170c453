"""What several commands share: loading plugins from the flags, choosing a config, printing."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from posecore._plugins import PluginHost, get_host, load_plugins, set_host
from posecore.config import ExperimentConfig, apply_overrides, load_config
from posecore.engine._assembly_rules import validate_config

__all__ = ["host_from_args", "print_json", "resolve_config", "selected_plugin"]


def host_from_args(args: argparse.Namespace) -> PluginHost:
    """Load plugins once per process as the flags say (``-p NAME``, ``-p no:NAME``, ``--strict-plugins``)."""
    if getattr(args, "_host", None) is None:
        names = getattr(args, "plugins", [])
        enable = [n for n in names if not n.startswith("no:")]
        block = [n[3:] for n in names if n.startswith("no:")]
        host = load_plugins(enable=enable, block=block, strict=True if getattr(args, "strict_plugins", False) else None)
        set_host(host)
        args._host = host
    return args._host


def selected_plugin(args: argparse.Namespace) -> str | None:
    """The plugin chosen with ``--plugin`` (the first one that is not a ``no:`` block)."""
    return next((n for n in getattr(args, "plugins", []) if not n.startswith("no:")), None)


def resolve_config(args: argparse.Namespace) -> ExperimentConfig:
    """The config from ``--config FILE`` or ``--preset`` (default: the plugin's default preset),
    with overrides applied and every component checked against the loaded plugins."""
    host = host_from_args(args)
    if getattr(args, "config_file", None):
        config = load_config(args.config_file)
    elif getattr(args, "preset", None):
        config = host.registries.presets.get(args.preset).load()
    else:
        config = host.default_preset(selected_plugin(args)).load()
    config = apply_overrides(config, getattr(args, "overrides", []))
    validate_config(config, get_host().registries)
    return config


def print_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
