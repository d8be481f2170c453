"""``posecore plugins``, ``posecore doctor`` and ``posecore --version``."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from importlib import metadata
from typing import Any

from posecore._cli.common import host_from_args, print_json
from posecore._plugins import PluginHost
from posecore._registry import singular
from posecore.hookspecs import PLUGIN_API_VERSION

_STATUS_STYLE = {"ok": "green", "error": "bold red", "blocked": "yellow", "not loaded": "yellow"}


def plugins_document(host: PluginHost) -> dict[str, Any]:
    """What ``posecore plugins --json`` prints."""
    presets = host.registries.presets
    plugins = []
    for record in host.records.values():
        entry = record.to_json()
        entry["presets"] = [
            {
                "name": name,
                "description": presets.get(name).description,
                "default": presets.get(name).default,
                "published": [
                    {"dataset": r.dataset, "split": r.split, "metric": r.metric, "value": r.value, "source": r.source}
                    for r in presets.get(name).published
                ],
            }
            for name in presets.names(record.name)
        ] if record.status == "ok" else []
        plugins.append(entry)
    return {"plugin_api": PLUGIN_API_VERSION, "plugins": plugins}


def plugins_command(args: argparse.Namespace) -> int:
    host = host_from_args(args)
    document = plugins_document(host)
    if args.json:
        print_json(document)
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=max(120, shutil.get_terminal_size().columns))
    table = Table(title=f"posecore plugins (plugin API {PLUGIN_API_VERSION})", title_justify="left")
    for column in ("plugin", "distribution", "version", "status", "registers"):
        table.add_column(column)
    for entry in document["plugins"]:
        registers = ", ".join(f"{len(v)} {k}" for k, v in entry["components"].items())
        status = f"[{_STATUS_STYLE[entry['status']]}]{entry['status']}[/]"
        table.add_row(entry["name"], entry["distribution"] or "", entry["version"] or "", status,
                      entry["error"] if entry["error"] else registers)
    console.print(table)
    if args.verbose:
        _print_components(console, host, document)
    return 0


def _print_components(console: Any, host: PluginHost, document: dict[str, Any]) -> None:
    for entry in document["plugins"]:
        if entry["status"] != "ok":
            continue
        console.print(f"\n[bold]{entry['name']}[/]")
        if not entry["components"]:
            console.print("  registers no components yet")
        for kind, names in entry["components"].items():
            if kind == "presets":
                continue
            registry = host.registries[kind]
            for name in names:
                description = getattr(registry.get(name), "description", "")
                console.print(f"  {singular(kind):<10} {name:<34} {description}", soft_wrap=True)
        for preset in entry["presets"]:
            published = "; ".join(f"{p['dataset']} {p['split']} {p['metric']} {p['value']:g}" for p in preset["published"])
            mark = " (default)" if preset["default"] else ""
            console.print(f"  preset     {preset['name']:<34} {published or 'no published figure'}{mark}", soft_wrap=True)
            if preset["description"]:  # what the preset runs: e.g. a reproduction of released code or a corrected one
                console.print(f"  {'':<10} {'':<34} {preset['description']}", soft_wrap=True)


def version_command(args: argparse.Namespace) -> int:
    host = host_from_args(args)
    print(f"posecore {_dist_version('posecore')} (plugin API {PLUGIN_API_VERSION}) at {os.path.dirname(__file__)[:-4]}")
    for record in host.records.values():
        if not record.builtin:
            print(f"  {record.name}: {record.distribution or '?'} {record.version or '?'} [{record.status}]")
    return 0


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def doctor_document(host: PluginHost) -> dict[str, Any]:
    """Environment facts for bug reports: python, torch, devices, accelerate, key packages, plugins."""
    import torch

    from posecore._malloc import allocator_report

    devices = [
        {"index": i, "name": torch.cuda.get_device_name(i),
         "memory_GiB": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
        for i in range(torch.cuda.device_count())
    ] if torch.cuda.is_available() else []
    accelerate_config = _accelerate_config_path()
    packages = ("posecore", "torch", "torchvision", "timm", "accelerate", "pluggy", "attrs", "cattrs",
                "pycocotools", "scikit-image", "numpy", "opencv-python-headless", "open_clip_torch")
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": {
            "version": torch.__version__,
            "cuda_build": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(),
            "devices": devices,
            "bf16_supported": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
            "cpu_threads": torch.get_num_threads(),
            "cpu_allocator": allocator_report(),
        },
        "accelerate": {
            "config_file": str(accelerate_config) if accelerate_config else None,
            "note": None if accelerate_config else "no accelerate config: single process on the best device; "
            "run 'accelerate config' for multi-GPU",
        },
        "packages": {name: _dist_version(name) for name in packages},
        "plugins": {r.name: {"status": r.status, "version": r.version, "error": r.error} for r in host.records.values()},
    }


def _accelerate_config_path() -> Any:
    try:
        from accelerate.commands.config.config_args import default_config_file
    except ImportError:
        return None
    return default_config_file if os.path.isfile(default_config_file) else None


def doctor_command(args: argparse.Namespace) -> int:
    """Exit status 1 when any plugin is broken, so scripts can gate on it."""
    host = host_from_args(args)
    document = doctor_document(host)
    broken = sum(plugin["status"] == "error" for plugin in document["plugins"].values())
    if args.json:
        print_json(document)
        return 1 if broken else 0
    t = document["torch"]
    print(f"python        {document['python']} on {document['platform']}")
    print(f"torch         {t['version']} (CUDA build {t['cuda_build'] or 'none'}), {t['cpu_threads']} CPU threads")
    print(f"  allocator   {t['cpu_allocator']}")
    if t["devices"]:
        for device in t["devices"]:
            print(f"  cuda:{device['index']}      {device['name']}, {device['memory_GiB']} GiB, bf16 {t['bf16_supported']}")
    else:
        print("  devices     no CUDA device: training and inference run on the CPU")
    accel = document["accelerate"]
    print(f"accelerate    {document['packages']['accelerate']}; config: {accel['config_file'] or accel['note']}")
    missing = [name for name, version in document["packages"].items() if version is None]
    print("packages      " + ", ".join(f"{n} {v}" for n, v in document["packages"].items() if v))
    if missing:
        print(f"  not installed: {', '.join(missing)}")
    for name, plugin in document["plugins"].items():
        detail = f": {plugin['error']}" if plugin["error"] else ""
        print(f"plugin        {name} {plugin['version'] or ''} [{plugin['status']}]{detail}")
    print("verdict       " + ("all good" if not broken else f"{broken} broken plugin(s), see above"))
    return 1 if broken else 0
