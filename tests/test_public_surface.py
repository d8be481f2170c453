"""The public surface a plugin may use: every name the plugin guide and the template cite exists
and is public, every public package's ``__all__`` resolves, and importing it stays cheap."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import posecore

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(posecore.__file__).parent
GUIDES = [REPO / "docs" / "writing-a-plugin.md", REPO / "examples" / "plugin-template" / "README.md"]

#: The public packages, as docs/writing-a-plugin.md ("The public surface") lists them.
PUBLIC = ["posecore", "posecore.analysis", "posecore.codecs", "posecore.config", "posecore.data", "posecore.engine",
          "posecore.hookspecs", "posecore.metrics", "posecore.models", "posecore.testing"]
#: The public packages that import no torch, so that plugins, presets and ``posecore plugins`` need none.
TORCH_FREE = ["posecore", "posecore.codecs", "posecore.config", "posecore.data", "posecore.engine",
              "posecore.hookspecs", "posecore.metrics"]
#: Dotted words in the guides that are not Python names.
NOT_NAMES = {"posecore.plugins": "the entry-point group plugins register in"}

_DOTTED = re.compile(r"(?<![\w/.])posecore(?:\.\w+)+(?::[\w.]+)?")
_FROM_IMPORT = re.compile(r"^\s*from (posecore(?:\.\w+)*) import ([\w, ]+)$", re.M)
_SOURCE_PATH = re.compile(r"\bcore/posecore/[\w/]+\.py\b")


def _cited_names() -> list[str]:
    names: set[str] = set()
    for guide in GUIDES:
        text = guide.read_text(encoding="utf-8")
        names |= set(_DOTTED.findall(text))
        for module, imported in _FROM_IMPORT.findall(text):
            names |= {f"{module}.{name.strip()}" for name in imported.split(",")}
    return sorted(names - set(NOT_NAMES))


def _resolve(name: str) -> Any:
    """``pkg.mod.attr`` or ``pkg.mod:attr.attr``: the longest importable module, then attributes."""
    module_part, _, attributes = name.partition(":")
    parts = module_part.split(".")
    for split in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:] + (attributes.split(".") if attributes else []):
            value = getattr(value, attribute)
        return value
    raise ModuleNotFoundError(name)


def test_the_guides_cite_names() -> None:
    cited = _cited_names()
    assert "posecore.hookimpl" in cited and "posecore.models.PoseModel" in cited


@pytest.mark.parametrize("name", _cited_names())
def test_every_name_the_guides_cite_exists_and_is_public(name: str) -> None:
    private = [part for part in re.split(r"[.:]", name) if part.startswith("_")]
    assert not private, f"{name} is private ({', '.join(private)}); cite its public name"
    _resolve(name)


def test_every_source_file_the_guides_cite_exists() -> None:
    cited = {path for guide in GUIDES for path in _SOURCE_PATH.findall(guide.read_text(encoding="utf-8"))}
    assert cited, "the guides point at the hook reference, core/posecore/hookspecs.py"
    assert not [path for path in cited if not (REPO / path).is_file()]


def test_the_public_packages_are_the_ones_without_an_underscore() -> None:
    found = {"posecore"} | {f"posecore.{path.parent.name}" for path in PACKAGE.glob("[!_]*/__init__.py")}
    found |= {f"posecore.{path.stem}" for path in PACKAGE.glob("[!_]*.py")}
    assert found == set(PUBLIC)


def test_the_guide_lists_every_public_package() -> None:
    guide = GUIDES[0].read_text(encoding="utf-8")
    section = guide.split("## The public surface", 1)[1].split("\n## ", 1)[0]
    assert sorted(re.findall(r"^\| `(posecore[\w.]*)` \|", section, re.M)) == PUBLIC


@pytest.mark.parametrize("package", PUBLIC)
def test_every_exported_name_resolves(package: str) -> None:
    """Each public package's ``__init__`` declares its API in ``__all__``; the module
    ``posecore.hookspecs`` is checked too once it declares one (its hooks are found by name)."""
    module = importlib.import_module(package)
    exported = getattr(module, "__all__", None)
    if exported is None and not hasattr(module, "__path__"):
        pytest.skip(f"{package} is a module without __all__")
    assert exported, f"{package} declares no __all__"
    assert len(set(exported)) == len(exported), f"{package}.__all__ repeats a name"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not have: {missing}"


def test_the_torch_free_packages_and_plugin_discovery_import_no_torch() -> None:
    """``import posecore`` and the plugin host stay cheap: every installed plugin is listed and its
    presets declared without torch (models and data readers load when used)."""
    code = (
        "import importlib, sys\n"
        "import posecore\n"
        "assert 'torch' not in sys.modules, 'import posecore imported torch'\n"
        f"for name in {TORCH_FREE!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'torch' not in sys.modules, f'import {name} imported torch'\n"
        "host = posecore.load_plugins()\n"
        "assert not [r for r in host.records.values() if r.status == 'error'], host.records\n"
        "assert 'torch' not in sys.modules, 'loading the plugins imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
