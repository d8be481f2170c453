"""The rules of the assembly step, stated once: what each spec of an experiment config is built
from, with which context, and how a dataset spec splits into what its factory gets and what the
engine reads.

:mod:`posecore.engine._builder` builds a config by these rules; :func:`validate_config` checks a
config by the same rules without building anything. This module imports no torch, so checking a
config (``posecore config``, every command's start) stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs

from posecore._errors import ConfigError, UnknownComponentError
from posecore._registry import Registries
from posecore.config import ExperimentConfig
from posecore.config._spec import ComponentSpec

__all__ = [
    "DATASET_ENGINE_KEYS",
    "DATA_SPLITS",
    "ENGINE_CONTEXT",
    "DatasetEntry",
    "dataset_entries",
    "engine_context",
    "resolve_data_paths",
    "split_dataset_spec",
    "validate_config",
]

#: The context the engine builds each kind of component with (see ``ComponentRegistry.build``):
#: a model gets the experiment's codec, so it decodes exactly as the pipeline encoded; a transform
#: the codec, the input size, whether the warp is UDP's and where JPEGs are decoded
#: (``data.jpeg_decode``), so no transform spec repeats them; a
#: dataset its position in its split; a metric the annotation file of the dataset it scores, so a
#: preset need not repeat the val file's path. A spec that sets the argument itself wins.
ENGINE_CONTEXT: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "models": ("codec",),
    "transforms": ("codec", "input_size", "use_udp", "jpeg_decode"),
    "datasets": ("dataset_index",),
    "metrics": ("ann_file",),
})

#: Keys of a dataset spec that the engine reads and the dataset's factory never sees: the
#: dataset's own ``codec`` (training sets only) and ``pipeline``.
DATASET_ENGINE_KEYS = ("codec", "pipeline")

#: The data splits of a config; only ``train`` is encoded, so only its datasets may bring a codec.
DATA_SPLITS = ("train", "val", "test")


def engine_context(kind: str, **values: Any) -> dict[str, Any]:
    """The context to build a ``kind`` component with: ``values`` less those that are ``None``.

    Only names of :data:`ENGINE_CONTEXT` are allowed, so what the assembly builds with is what
    :func:`validate_config` declared as provided.
    """
    unknown = set(values) - set(ENGINE_CONTEXT.get(kind, ()))
    if unknown:
        raise TypeError(f"the engine gives {kind} no context {sorted(unknown)}; ENGINE_CONTEXT[{kind!r}] is "
                        f"{ENGINE_CONTEXT.get(kind, ())}")
    return {name: value for name, value in values.items() if value is not None}


def split_dataset_spec(spec: ComponentSpec) -> tuple[ComponentSpec, ComponentSpec | None, tuple[ComponentSpec, ...] | None]:
    """A dataset spec without its engine keys, plus their values: ``(dataset, codec, pipeline)``.

    A dataset in ``data.train`` (or ``val``/``test``) may carry ``codec: {type: ...}`` and
    ``pipeline: [...]``: that dataset's samples are then encoded with its own codec and go through
    its own transforms instead of the experiment's (multi-dataset training where the datasets
    differ, as PoseBH's UDP targets for COCO/MPII and MSRA targets elsewhere, or no half-body
    crops for MPII). ``None`` where the spec leaves the experiment's in force.
    """
    args = {key: value for key, value in spec.args.items() if key not in DATASET_ENGINE_KEYS}
    codec = spec.args.get("codec")
    pipeline = spec.args.get("pipeline")
    if pipeline is not None and not isinstance(pipeline, (list, tuple)):
        raise ConfigError(f"pipeline must be a list of transforms; got {type(pipeline).__name__}")
    return (ComponentSpec(spec.type, args), None if codec is None else ComponentSpec.parse(codec),
            None if pipeline is None else tuple(ComponentSpec.parse(item) for item in pipeline))


def resolve_data_paths(spec: ComponentSpec, data_root: str | Path | None) -> ComponentSpec:
    """Relative file arguments (names ending in ``_file``, ``_root`` or ``_dir``) of a dataset spec,
    joined to ``data_root``; presets name their files relative to a data root this way."""
    if data_root is None:
        return spec
    args = dict(spec.args)
    for key, value in spec.args.items():
        if isinstance(value, str) and key.endswith(("_file", "_root", "_dir")) and not Path(value).is_absolute():
            args[key] = str(Path(data_root) / value)
    return ComponentSpec(spec.type, args)


@attrs.frozen
class DatasetEntry:
    """One dataset of a split, its spec split by :func:`split_dataset_spec`.

    ``where`` names it in messages (``data.train[1]``); ``index`` is its position in the split,
    which the dataset receives as ``dataset_index``.
    """

    where: str
    index: int
    dataset: ComponentSpec
    codec: ComponentSpec | None
    pipeline: tuple[ComponentSpec, ...] | None


def dataset_entries(config: ExperimentConfig, split: str, data_root: str | Path | None = None) -> list[DatasetEntry]:
    """The datasets of ``data.<split>``, relative paths joined to ``data_root``.

    An evaluation dataset may bring its own ``pipeline`` but not its own ``codec``: the model
    decodes every dataset with the experiment's codec, so such a spec is an error here, for
    validation and building alike.
    """
    entries = []
    for index, raw in enumerate(getattr(config.data, split)):
        where = f"data.{split}[{index}]"
        try:
            dataset, codec, pipeline = split_dataset_spec(resolve_data_paths(ComponentSpec.parse(raw), data_root))
        except ConfigError as exc:
            raise ConfigError(f"config {config.name!r}, {where}.{exc}") from None
        if codec is not None and split != "train":
            raise ConfigError(f"config {config.name!r}, {where}: an evaluation dataset cannot set its own codec (the "
                              "model decodes with the experiment's 'codec'); remove it, or evaluate that dataset with a "
                              "config whose codec it is")
        entries.append(DatasetEntry(where, index, dataset, codec, pipeline))
    return entries


def _sections(config: ExperimentConfig) -> list[tuple[str, str, Any]]:
    """``(where, kind, spec)`` for every component spec of ``config``, in config order."""
    sections: list[tuple[str, str, Any]] = [("model", "models", config.model)]
    if config.codec is not None:
        sections.append(("codec", "codecs", config.codec))
    for split in DATA_SPLITS:
        for entry in dataset_entries(config, split):
            sections.append((entry.where, "datasets", entry.dataset))
            if entry.codec is not None:
                sections.append((f"{entry.where}.codec", "codecs", entry.codec))
            sections += [(f"{entry.where}.pipeline[{j}]", "transforms", item) for j, item in enumerate(entry.pipeline or ())]
    sections += [(f"eval.metrics[{i}]", "metrics", spec) for i, spec in enumerate(config.eval.metrics)]
    for name in ("train_pipeline", "test_pipeline"):
        sections += [(f"data.{name}[{i}]", "transforms", spec) for i, spec in enumerate(getattr(config.data, name))]
    return sections


def validate_config(config: ExperimentConfig, registries: Registries) -> None:
    """Check every component spec of an ExperimentConfig against the loaded factories, knowing
    which arguments the engine's context will provide.

    Raises :class:`ConfigError` naming the section (``model``, ``data.train[1]``, ...).
    """
    for where, kind, spec in _sections(config):
        try:
            registries[kind].validate(spec, provided=ENGINE_CONTEXT.get(kind, ()))
        except (ConfigError, UnknownComponentError) as exc:
            needs = f" (this config uses plugins: {', '.join(config.plugins)})" if config.plugins else ""
            raise ConfigError(f"config {config.name!r}, {where}: {exc}{needs}") from None
