"""Shared fixtures: real, installed-looking plugin distributions made on the fly, and a tiny
experiment on the synthetic data for engine tests.

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
from typing import Any

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


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One folder for the synthetic datasets of the whole session (generated once, on first use)."""
    return str(tmp_path_factory.mktemp("synthetic-cache"))


@pytest.fixture(scope="session")
def tiny_config(synthetic_cache: str) -> Callable[..., Any]:
    """``tiny_config(**train) -> ExperimentConfig``: a model and data small enough for a few seconds of
    CPU training (24 synthetic train images, 8 val images, ResNet-18 to stride 8 at 64x48);
    keyword arguments override ``TrainConfig`` fields."""
    from posecore.config import DataConfig, EvalConfig, ExperimentConfig, OptimizerConfig, ScheduleConfig, TrainConfig

    def make(**train: Any) -> Any:
        input_size = (48, 64)
        return ExperimentConfig(
            name="engine-test",
            model={
                "type": "topdown_heatmap",
                "backbone": {"type": "timm", "model_name": "resnet18", "out_index": 2},
                "head": {"type": "heatmap_deconv", "in_channels": 128, "num_keypoints": 17, "deconv_channels": [16],
                         "input_stride": 8},
                "input_size": list(input_size),
            },
            codec={"type": "msra_heatmap", "input_size": list(input_size), "heatmap_size": [12, 16], "sigma": 1.0},
            data=DataConfig(
                train=[{"type": "synthetic_people", "split": "train", "num_images": 24, "cache_dir": synthetic_cache}],
                val=[{"type": "synthetic_people", "split": "val", "num_images": 8, "cache_dir": synthetic_cache}],
                batch_size=8, eval_batch_size=16, num_workers=0, input_size=input_size,
            ),
            train=TrainConfig(**{"epochs": 2, "optimizer": OptimizerConfig(lr=1e-3),
                                 "schedule": ScheduleConfig(type="cosine", warmup_iters=2), "val_interval": 1,
                                 "log_interval": 1, **train}),
            eval=EvalConfig(metrics=[{"type": "coco_ap", "metainfo": "coco"}, {"type": "pck"}], main_metric="AP"),
        )

    return make
