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
* The registration hooks (``posecore_backbones`` ... ``posecore_app_tabs``) are called once per
  plugin when plugins are loaded, and must return a list (or tuple) of declarations: a
  :class:`~posecore.Component` for component kinds, a :class:`~posecore.Preset` for presets, a
  :class:`~posecore.Converter` for converters and an :class:`~posecore.AppTab` for app tabs.
  They must be cheap: give factories as ``"module:attribute"`` strings so that listing plugins
  does not import torch.
* A registration hook that raises or returns something else marks the whole plugin as broken:
  it is reported by ``posecore plugins`` with the error and every component it had declared is
  withdrawn, while the other plugins keep working (``--strict-plugins`` makes it fatal).
* Component names are global per kind. Two plugins declaring the same name is an error naming both.
* Where the engine has a value a factory needs, it passes it by parameter name when the spec
  leaves that parameter unset: ``codec`` (the experiment's codec) to models and transforms,
  ``input_size`` and ``use_udp`` to transforms, ``dataset_index`` to datasets and ``ann_file``
  (the evaluated dataset's annotation file) to metrics. A spec that sets the argument wins.

Contract checks
---------------
:func:`posecore.testing.contract_cases` checks every registered backbone, head, codec, dataset,
metric, model and preset with its ``Component.example``; run them in the plugin's tests. Training
checks require a gradient on every trainable parameter. A parameter that is not trained is frozen
(``requires_grad_(False)``, or a buffer) and never checked. A trainable parameter that a training
step may leave without a gradient by design (a mixture-of-experts expert reached only by its own
dataset's samples) is declared on its module: ``parameters_without_gradient = ("experts.*",)``,
``fnmatch`` patterns of parameter names relative to that module. Any other parameter without a
gradient is unused, and fails the check.

API versions
------------
``1``: every hook in this module but those marked otherwise. ``2``: ``posecore_detectors``, ``posecore_app_tabs``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from posecore._components import AppTab, Component, Converter, Preset

__all__ = [
    "MIN_PLUGIN_API_VERSION",
    "PLUGIN_API_VERSION",
    "hookimpl",
    "hookspec",
    "posecore_app_tabs",
    "posecore_backbones",
    "posecore_cli_arguments",
    "posecore_codecs",
    "posecore_converters",
    "posecore_datasets",
    "posecore_detectors",
    "posecore_heads",
    "posecore_losses",
    "posecore_metrics",
    "posecore_models",
    "posecore_presets",
    "posecore_transforms",
]

PROJECT_NAME = "posecore"

#: The plugin-API version this core implements. Bumped when hooks are added.
PLUGIN_API_VERSION = 2
#: The oldest plugin-API version this core still serves; plugins older than this are refused.
MIN_PLUGIN_API_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def posecore_backbones() -> Sequence[Component]:
    """Declare feature extractors.

    Called once per plugin at load time. Each factory builds an ``nn.Module`` with an ``int``
    ``out_channels`` attribute whose ``forward(images)`` maps float images ``(B, 3, H, W)`` (the
    model normalises them) to a feature map ``(B, out_channels, h, w)``, or to a list of maps of
    which the last has ``out_channels`` channels. A backbone that routes samples by dataset
    (ViTPose++ experts) also takes ``dataset_index`` ``(B,)`` int64 as a keyword.
    ``Component.example`` must build a small instance: the contract checks run it forward and
    backward on a ``(2, 3, 64, 64)`` input, or ``(2, 3, height, width)`` for
    ``example["input_size"] = (width, height)`` when the component needs another size (that key
    is not passed to the factory), and every trainable parameter must receive a gradient.

    Since API 1.
    """


@hookspec
def posecore_heads() -> Sequence[Component]:
    """Declare prediction heads.

    A head is an ``nn.Module`` with ``in_channels`` and ``num_keypoints`` attributes,
    ``forward(features (B, in_channels, h, w)) -> outputs`` (heatmaps ``(B, K, h', w')`` for
    heatmap heads) and ``decode(outputs) -> (keypoints (B, K, 2), scores (B, K))`` where K equals
    ``num_keypoints`` and keypoints are in input-crop pixels (the network input's frame, as codecs
    decode). Multi-dataset methods (PoseBH) declare one head per dataset through the same hook.
    The contract checks run the example forward and backward on ``(2, in_channels, 8, 6)``
    features (every trainable parameter must receive a gradient) and decode K keypoints.

    Since API 1.
    """


@hookspec
def posecore_losses() -> Sequence[Component]:
    """Declare losses: ``nn.Module`` s whose ``forward(...)`` returns a scalar tensor. Models build
    them as nested components and call them with the arguments each documents (the core's
    ``keypoint_mse``: ``forward(heatmaps (B, K, h, w), targets (B, K, h, w), keypoint_weights (B, K) | None)``).

    Since API 1.
    """


@hookspec
def posecore_codecs() -> Sequence[Component]:
    """Declare codecs (:class:`posecore.codecs.Codec`): objects with an ``input_size``
    ``(width, height)``, ``encode(keypoints (..., K, 2), visibility (..., K))`` returning float32
    arrays ``keypoint_weights`` ``(..., K)`` and one training target (``heatmaps`` ``(..., K, h, w)``
    or ``keypoint_labels`` ``(..., K, 2)``), which the ``generate_target`` transform adds to the
    sample under those names; ``decode(outputs) -> (keypoints (B, K, 2) float32, scores (B, K))``;
    and ``flip_back(outputs, flip_indices) -> outputs`` for the flip test. Keypoints are in
    input-crop pixels. A codec is configured once per experiment (config key ``codec``) and shared
    by the data pipeline and the model. The contract checks encode a batch and decode its target
    back: heatmaps within half a heatmap stride per axis (keypoints whose Gaussian lies whole
    inside the map), coordinates within 1e-3 px.

    Since API 1.
    """


@hookspec
def posecore_transforms() -> Sequence[Component]:
    """Declare data transforms: callables ``(sample, rng) -> sample`` over the documented
    :class:`posecore.data.Sample` mapping, where ``rng`` is a ``numpy.random.Generator`` seeded
    from ``(seed, epoch, index)`` (draw every random number from it, so that augmentation does not
    depend on workers and a resumed run sees the same samples). A transform may add keys; keys the
    core does not read (text prompts) are declared in :class:`~posecore.data.Sample` as
    ``NotRequired`` plugin keys.

    Since API 1.
    """


@hookspec
def posecore_datasets() -> Sequence[Component]:
    """Declare dataset readers.

    A dataset is a ``torch.utils.data.Dataset`` of :class:`posecore.data.Sample` mappings (every
    required key, with its image) with a ``meta`` attribute (:class:`posecore.data.DatasetMeta`).
    Optional: ``annotation(index)``, the sample without its image, so that the pipeline reads the
    image once; ``set_epoch(epoch)``, called on training sets every epoch (episodes drawn anew);
    ``ann_file``, handed to the metrics of an evaluation set; ``has_ground_truth = False`` for a
    split that is predicted, not scored. Episodic datasets (few-shot support/query) yield samples
    whose ``support`` key holds the support samples. ``Component.example`` is then a callable that
    writes a tiny dataset into the directory it is given and returns the factory's keyword
    arguments; the contract checks build it and check its first and last samples.

    Since API 1.
    """


@hookspec
def posecore_metrics() -> Sequence[Component]:
    """Declare metrics (:class:`posecore.metrics.Metric`): ``reset()``, ``update(results)`` and
    ``compute() -> dict[str, float]``. ``results`` is a sequence of
    :class:`posecore.metrics.InstanceResult` dicts, one per predicted instance, in image pixels:
    the keypoints and their scores, the box and its score, and the ground truth the sample
    carried (``gt_keypoints``, ``gt_visibility``, ``gt_bbox``, ``head_size``, ``episode``). After
    predicting an evaluation set, the engine gathers every process's results and calls ``reset``,
    ``update`` with all of them in dataset order, then ``compute``; ``posecore eval`` and tests may
    call ``update`` several times. The table's keys are in display order, its values plain floats.
    ``compute`` must give the same table whatever order the results arrive in and with the
    duplicates a distributed sampler's padding adds (drop them by
    :func:`posecore.metrics.instance_key`, as :class:`posecore.metrics.ResultBuffer` does); the
    contract checks feed the example's results shuffled and padded as 2 and 3 processes pad them.

    Since API 1.
    """


@hookspec
def posecore_models() -> Sequence[Component]:
    """Declare assembled models: subclasses of :class:`posecore.models.PoseModel`, which compute
    their losses (``loss(batch) -> dict[str, Tensor]``, the trainer back-propagates their sum),
    predict (``predict(batch, *, flip_test=False) -> PoseResult``, keypoints in input-crop pixels:
    the engine maps them to the image through each sample's ``warp``) and make an
    ``example_batch(batch_size)`` of their input size. ``batch`` is a
    :class:`posecore.models.Batch`: the collated samples. Factories receive nested components
    (backbone, heads, losses) already built when their parameters are annotated with
    :class:`posecore.Nested`. The contract checks back-propagate the example batch's loss to every
    trainable parameter and predict ``(B, K, 2)`` keypoints from it.

    Since API 1.
    """


@hookspec
def posecore_presets() -> Sequence[Preset]:
    """Declare complete, named experiments (:class:`~posecore.Preset`), each with the published
    figure it should reach. At most one preset per plugin is marked ``default=True``: it is what
    ``posecore run --plugin NAME`` runs with no ``--preset``.

    A preset whose method predicts from more than images (a few-shot support set, a text prompt)
    names a ``predictor`` (:class:`~posecore.Predictor`): ``posecore predict`` then hands it a typed
    :class:`~posecore.PredictRequest` (inputs expanded and checked, boxes read, the output folder
    made, the device, and the options the plugin added through :func:`posecore_cli_arguments` in
    ``request.options`` by their ``dest``), instead of predicting top-down. A predictor loads its
    model with :func:`posecore.load_model` or :class:`posecore.Pose` (``batch_extras`` and
    ``keypoint_set`` carry what the method adds to every crop).

    Since API 1 (``Preset.predictor`` since posecore 0.1.0).
    """


@hookspec
def posecore_detectors() -> Sequence[Component]:
    """Declare detectors: what finds the people (or animals) a top-down model then predicts, when
    ``posecore predict`` or :class:`posecore.Pose` is given no boxes.

    A factory builds a :class:`posecore.Detector`: ``detector(images)`` takes a list of RGB uint8
    ``(H, W, 3)`` arrays and returns one :class:`posecore.Detections` per image (``boxes``
    ``(N, 4)`` x1, y1, x2, y2 in image pixels, ``scores`` ``(N,)``, ``labels``: N class names).
    posecore passes by parameter name, when the spec leaves them unset: ``classes``, the COCO-style
    class names to find (chosen from the model's keypoint set: ``("person",)`` for human sets, the
    COCO animal classes for AP-10K, APT-36K and AnimalPose; ``--detector-classes`` overrides),
    to which every returned label must belong; and ``device`` (``"cpu"``, ``"cuda:0"``, ...).
    ``--detector-weights FILE`` arrives as ``weights``; a factory without that parameter refuses
    it. Return every instance the model keeps; posecore applies ``--box-score-thr`` itself.
    ``Component.example`` must build without downloading anything (random weights): the contract
    checks build it for ``("person",)`` and run it on two small images. The core registers
    torchvision's COCO detectors (``fasterrcnn_resnet50_fpn_v2``, the default, and others).

    Since API 2.
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
def posecore_app_tabs() -> Sequence[AppTab]:
    """Declare tabs of ``posecore app``, the browser app (:class:`~posecore.AppTab`).

    Called once per plugin at load time, like the other registration hooks: a tab is declared,
    and its ``build(context)`` runs only when the app is assembled, inside the tab, with a
    :class:`posecore.AppContext` (the model the app serves, the device, the folder to write
    results into). Import Gradio inside ``build``, never at module level, so that loading the
    plugin stays cheap and ``posecore[app]`` optional. A ``build`` that raises is reported in its
    tab and on the terminal; the app and the other tabs go on. The core's own tab (predict on an
    uploaded image or video) is declared through this hook too; Pose Anything's defines a few-shot
    category by clicks.

    Since API 2.
    """


@hookspec
def posecore_cli_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """Add plugin-specific options to a CLI command's parser.

    Called after plugins are loaded, before the command line is parsed, for the command being run
    when it is ``"run"``, ``"train"``, ``"eval"`` or ``"predict"``. Options appear under the
    command's ``--help`` only when the plugin is loaded. Prefer long, plugin-specific names
    (PoseAnything adds ``--support``, ``--support-keypoints``). An implementation that raises is
    reported and its plugin withdrawn, the command goes on without it (fatal with
    ``--strict-plugins``).

    Since API 1.
    """
