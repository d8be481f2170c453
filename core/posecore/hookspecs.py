"""The plugin contract: every hook a posecore plugin may implement.

This module is the plugin author's reference. A plugin is a module (usually
``posecore_<name>/plugin.py``) named by an entry point in the group ``posecore.plugins``. It declares
the plugin-API version it was written for and implements any of the hooks below with
:data:`posecore.hookimpl`::

    # posecore_example/plugin.py
    import posecore

    POSECORE_PLUGIN_API = 1

    @posecore.hookimpl
    def posecore_backbones():
        return [posecore.Component("tiny_cnn", "posecore_example.models:TinyCNN",
                                   example={"width": 8})]

Rules every hook follows
------------------------
* Hooks are called with keyword arguments only. An implementation may accept fewer arguments than
  the specification; hooks only ever *gain* arguments, so a plugin written for API version ``N``
  keeps working with every later core that still supports ``N``.
* The registration hooks (``posecore_backbones`` ... ``posecore_converters``) are called once per
  plugin when plugins are loaded, and must return a list (or tuple) of declarations: a
  :class:`~posecore.Component` for component kinds, a :class:`~posecore.Preset` for presets and a
  :class:`~posecore.Converter` for converters. They must be cheap: give factories as
  ``"module:attribute"`` strings so that listing plugins does not import torch.
* A registration hook that raises or returns something else marks the whole plugin as broken:
  it is reported by ``posecore plugins`` with the error and every component it had declared is
  withdrawn, while the other plugins keep working (``--strict-plugins`` makes it fatal).
* Component names are global per kind. Two plugins declaring the same name is an error naming both.

API versions
------------
``1``: every hook in this module.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from posecore._components import Component, Converter, Preset

PROJECT_NAME = "posecore"

#: The plugin-API version this core implements. Bumped when hooks are added.
PLUGIN_API_VERSION = 1
#: The oldest plugin-API version this core still serves; plugins older than this are refused.
MIN_PLUGIN_API_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def posecore_backbones() -> Sequence[Component]:
    """Declare feature extractors.

    Called once per plugin at load time. Each factory builds an ``nn.Module`` whose
    ``forward(images: (B, 3, H, W)) -> Tensor (B, C, h, w)`` (or a list of such maps, finest
    last) and which has an ``out_channels`` attribute. ``Component.example`` must build a
    small instance: the contract checks run it forward and backward on a ``(2, 3, 64, 64)`` input
    (or ``example["input_size"]`` when the component needs another size; that key is not passed
    to the factory).

    Since API 1.
    """


@hookspec
def posecore_heads() -> Sequence[Component]:
    """Declare prediction heads.

    A head is an ``nn.Module`` with ``in_channels`` and ``num_keypoints`` attributes,
    ``forward(features) -> outputs`` and ``decode(outputs) -> (keypoints (B, K, 2), scores (B, K))``
    where K equals ``num_keypoints`` and keypoints are in input-image pixels. Multi-dataset
    methods (PoseBH) declare one head per dataset through the same hook.

    Since API 1.
    """


@hookspec
def posecore_losses() -> Sequence[Component]:
    """Declare losses: ``nn.Module`` s whose ``forward(...)`` returns a scalar tensor.

    Since API 1.
    """


@hookspec
def posecore_codecs() -> Sequence[Component]:
    """Declare codecs: objects with ``encode(keypoints, visibility) -> targets`` and
    ``decode(outputs) -> (keypoints, scores)``, configured once per preset and shared by the data
    pipeline and the head.

    Since API 1.
    """


@hookspec
def posecore_transforms() -> Sequence[Component]:
    """Declare data transforms: callables ``(sample) -> sample`` over the documented
    :class:`posecore.data.Sample` mapping. Plugin-specific fields (text prompts, support sets)
    travel as extra keys of the sample.

    Since API 1.
    """


@hookspec
def posecore_datasets() -> Sequence[Component]:
    """Declare dataset readers.

    A dataset is a ``torch.utils.data.Dataset`` of :class:`posecore.data.Sample` mappings with a
    ``meta`` attribute (:class:`posecore.data.DatasetMeta`). Episodic datasets (few-shot
    support/query) yield samples whose extra ``support`` key holds the support samples.
    ``Component.example`` is then a callable that writes a tiny dataset into the directory it is
    given and returns the factory's keyword arguments.

    Since API 1.
    """


@hookspec
def posecore_metrics() -> Sequence[Component]:
    """Declare metrics with ``reset()``, ``update(predictions, batch)`` and ``compute() -> dict``.
    ``compute`` must be correct after results were gathered across processes.

    Since API 1.
    """


@hookspec
def posecore_models() -> Sequence[Component]:
    """Declare assembled models: subclasses of :class:`posecore.models.PoseModel`, which know
    how to compute their losses (``loss(batch) -> dict[str, Tensor]``) and predict
    (``predict(batch) -> PoseResult``). Factories receive nested components (backbone, heads,
    losses) already built when their parameters are annotated with :class:`posecore.Nested`.

    Since API 1.
    """


@hookspec
def posecore_presets() -> Sequence[Preset]:
    """Declare complete, named experiments (:class:`~posecore.Preset`), each with the published
    figure it should reach. At most one preset per plugin is marked ``default=True``: it is what
    ``posecore run --plugin NAME`` runs with no ``--preset``.

    A preset whose method predicts from more than images (a few-shot support set, a text prompt)
    names a ``predictor``: ``posecore predict`` then hands it its parsed arguments, including the
    options the plugin added through :func:`posecore_cli_arguments`, instead of predicting top-down.

    Since API 1 (``Preset.predictor`` since posecore 0.1.0).
    """


@hookspec
def posecore_converters() -> Sequence[Converter]:
    """Declare checkpoint converters (:class:`~posecore.Converter`) from a foreign key layout into
    posecore's, used by ``posecore convert`` and when a foreign file is loaded; a converter whose
    function has a ``matches(state_dict)`` attribute is chosen automatically when it recognises a
    file (see :class:`~posecore.Converter`).

    Since API 1.
    """


@hookspec
def posecore_cli_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Add plugin-specific options to a CLI command's parser.

    Called after plugins are loaded, for the command being run (``"run"``, ``"predict"``, ...).
    Options appear under the command's ``--help`` only when the plugin is loaded. Prefer long,
    plugin-specific names (PoseAnything adds ``--support``, ``--support-keypoints``).

    Since API 1.
    """
