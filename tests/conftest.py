"""Shared fixtures: real, installed-looking plugin distributions made on the fly.

``fake_plugin_dist`` writes what ``pip install`` would leave in site-packages: a
``<dist>-<version>.dist-info/`` folder (``METADATA`` and ``entry_points.txt`` naming the plugin
in the group ``posecore.plugins``) and the plugin module beside it. Put the returned directory on
``sys.path`` (``monkeypatch.syspath_prepend``) for in-process tests, or on ``PYTHONPATH``
(:func:`plugin_env`) for ``python -m posecore`` subprocesses: ``importlib.metadata`` then
discovers the plugin exactly as it discovers an installed one.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

MakePlugin = Callable[..., Path]


def _module_name(plugin_name: str) -> str:
    return "posecore_fake_" + re.sub(r"\W", "_", plugin_name)


def _forget_modules(names: set[str]) -> None:
    for module in list(sys.modules):
        if module.split(".")[0] in names:
            del sys.modules[module]
    importlib.invalidate_caches()


@pytest.fixture
def fake_plugin_dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakePlugin]:
    """A factory ``make(name, source, dist=None, version="0.1.0") -> Path``.

    Every call writes one plugin distribution into the same per-test directory (a stand-in for
    site-packages) and returns that directory:

    * ``<dir>/<dist_normalised>-<version>.dist-info/METADATA`` with ``Name``/``Version``;
    * ``<dir>/<dist_normalised>-<version>.dist-info/entry_points.txt`` with
      ``[posecore.plugins]`` / ``<name> = posecore_fake_<name>``;
    * ``<dir>/posecore_fake_<name>.py`` holding ``source`` (dedented).

    ``dist`` defaults to ``posecore-fake-<name>``. Modules created here are dropped from
    ``sys.modules`` when created and again at teardown, so tests never see each other's plugins.
    """
    site = tmp_path_factory.mktemp("site-packages")
    created: set[str] = set()

    def make(name: str, source: str, dist: str | None = None, version: str = "0.1.0") -> Path:
        module = _module_name(name)
        dist = dist or f"posecore-fake-{name}"
        info = site / f"{re.sub(r'[-_.]+', '_', dist)}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
        (info / "entry_points.txt").write_text(f"[posecore.plugins]\n{name} = {module}\n", encoding="utf-8")
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        created.add(module)
        _forget_modules({module})
        return site

    yield make
    _forget_modules(created)


def _plugin_env(*paths: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSECORE_")}
    pythonpath = [str(p) for p in paths] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    env.update(extra)
    return env


@pytest.fixture
def plugin_env() -> Callable[..., dict[str, str]]:
    """``plugin_env(*dirs, **variables) -> env``: the current environment with ``dirs`` prepended
    to ``PYTHONPATH``, every ``POSECORE_*`` variable cleared, then ``variables`` set; for
    ``python -m posecore`` subprocesses."""
    return _plugin_env


@pytest.fixture
def clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No POSECORE_* variable of the outer environment may change how plugins load in a test."""
    for key in list(os.environ):
        if key.startswith("POSECORE_"):
            monkeypatch.delenv(key)
