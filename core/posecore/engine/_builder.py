"""From an experiment config to the objects a run needs: codec, model, datasets, metrics.

One place builds them for training, evaluation, prediction and export, so a model is always
built with the codec its data was encoded with.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from torch.utils.data import ConcatDataset, Dataset

from posecore.config import ExperimentConfig
from posecore.config._spec import ComponentSpec
from posecore.data._dataset import PipelineDataset
from posecore.data._pipeline import build_pipeline, standard_topdown_pipeline
from posecore._errors import ConfigError, DataError
from posecore.models._base import PoseModel
from posecore._registry import DATASET_ENGINE_KEYS

__all__ = ["EvalSet", "TrainSet", "build_codec", "build_eval_sets", "build_model", "build_train_set", "experiment_pipeline",
           "resolve_data_paths", "split_dataset_spec"]


def _registries(registries: Any) -> Any:
    if registries is not None:
        return registries
    from posecore._plugins import get_host

    return get_host().registries


def build_codec(config: ExperimentConfig, registries: Any = None) -> Any:
    """The experiment's codec, or ``None`` when the config has none."""
    return None if config.codec is None else _registries(registries).codecs.build(config.codec)


def build_model(config: ExperimentConfig, registries: Any = None, codec: Any = None) -> PoseModel:
    """The model, given the experiment's codec when its factory takes one and the spec sets none."""
    registries = _registries(registries)
    codec = codec if codec is not None else build_codec(config, registries)
    factory = registries.models.get(config.model.type).resolve()
    extra = {}
    if codec is not None and "codec" in inspect.signature(factory).parameters and "codec" not in config.model.args:
        extra["codec"] = codec
    model = registries.models.build(config.model, **extra)
    if not isinstance(model, PoseModel):
        raise TypeError(f"model {config.model.type!r} built a {type(model).__name__}, not a posecore.models.PoseModel")
    return model


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


def _use_udp(codec: Any) -> bool:
    from posecore.codecs._heatmap import UDPHeatmap

    return isinstance(codec, UDPHeatmap)


def experiment_pipeline(config: ExperimentConfig, registries: Any, codec: Any, train: bool,
                        specs: Sequence[ComponentSpec] | None = None) -> Any:
    """The experiment's train or test pipeline (the standard top-down one unless the config lists
    transforms); ``specs`` replaces the config's list (a dataset's own ``pipeline``)."""
    registries = _registries(registries)
    if specs is None:
        specs = config.data.train_pipeline if train else config.data.test_pipeline
    if not specs:
        if train and codec is None:
            raise ConfigError(
                f"config {config.name!r} sets no codec (config key 'codec'); the standard training pipeline needs "
                "one to encode targets, e.g. codec: {type: msra_heatmap, input_size: [192, 256], heatmap_size: "
                "[48, 64], sigma: 2.0}"
            )
        specs = standard_topdown_pipeline(train=train)
    context: dict[str, Any] = {"input_size": tuple(config.data.input_size), "use_udp": _use_udp(codec)}
    if codec is not None:
        context["codec"] = codec
    return build_pipeline(specs, registries, **context)


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
    return (ComponentSpec(spec.type, args), None if codec is None else ComponentSpec.parse(codec),
            None if pipeline is None else tuple(ComponentSpec.parse(item) for item in pipeline))


class _Pipelines:
    """The pipeline of each dataset of a split, built once per distinct (codec, pipeline) choice."""

    def __init__(self, config: ExperimentConfig, registries: Any, codec: Any, train: bool) -> None:
        # no codec given: the config's (so a caller holding only the config gets the same targets)
        codec = codec if codec is not None else build_codec(config, registries)
        self.config, self.registries, self.codec, self.train = config, registries, codec, train
        self._built: dict[tuple[str, str], Any] = {}

    def for_dataset(self, codec_spec: ComponentSpec | None, pipeline_specs: tuple[ComponentSpec, ...] | None) -> Any:
        key = (repr(codec_spec), repr(pipeline_specs))
        if key not in self._built:
            codec = self.codec if codec_spec is None else self.registries.codecs.build(codec_spec)
            self._built[key] = experiment_pipeline(self.config, self.registries, codec, self.train, pipeline_specs)
        return self._built[key]


def _label(spec: ComponentSpec, index: int, taken: set[str]) -> str:
    split = spec.args.get("split")
    label = f"{spec.type}-{split}" if split else spec.type
    if label in taken:
        label = f"{label}#{index}"
    taken.add(label)
    return label


def _build_dataset(registries: Any, spec: ComponentSpec, index: int) -> Dataset:
    """``spec`` without engine keys (see :func:`split_dataset_spec`)."""
    factory = registries.datasets.get(spec.type).resolve()
    extra = {"dataset_index": index} if "dataset_index" in inspect.signature(factory).parameters else {}
    if "dataset_index" in spec.args:
        extra = {}
    try:
        return registries.datasets.build(spec, **extra)
    except DataError as exc:
        if "not found" not in str(exc):
            raise
        raise DataError(f"{exc}; relative dataset paths are read from the working directory, or from the folder "
                        "given with --data ROOT (posecore run --data /datasets ...)") from None


@attrs.frozen
class TrainSet:
    """The concatenated training datasets, each behind the train pipeline."""

    dataset: ConcatDataset
    parts: tuple[PipelineDataset, ...]
    labels: tuple[str, ...]

    @property
    def sizes(self) -> list[int]:
        return [len(part) for part in self.parts]

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)
            inner = getattr(part.dataset, "set_epoch", None)
            if callable(inner):  # datasets that redraw pairs each epoch (few-shot episodes)
                inner(epoch)


@attrs.frozen
class EvalSet:
    """One evaluation dataset behind the test pipeline, with its metrics."""

    label: str
    dataset: PipelineDataset
    metrics: tuple[Any, ...]


def build_train_set(config: ExperimentConfig, registries: Any = None, codec: Any = None,
                    data_root: str | Path | None = None) -> TrainSet:
    """The ``data.train`` datasets, each behind the train pipeline (its own, when its spec has a
    ``codec`` or ``pipeline``), concatenated."""
    registries = _registries(registries)
    if not config.data.train:
        raise ValueError(f"config {config.name!r} has no training data (data.train is empty)")
    pipelines = _Pipelines(config, registries, codec, train=True)
    taken: set[str] = set()
    parts, labels = [], []
    for index, full_spec in enumerate(config.data.train):
        spec, codec_spec, pipeline_specs = split_dataset_spec(resolve_data_paths(full_spec, data_root))
        pipeline = pipelines.for_dataset(codec_spec, pipeline_specs)
        parts.append(PipelineDataset(_build_dataset(registries, spec, index), pipeline, seed=config.train.seed))
        labels.append(_label(spec, index, taken))
    return TrainSet(ConcatDataset(parts), tuple(parts), tuple(labels))


def build_eval_sets(config: ExperimentConfig, registries: Any = None, codec: Any = None, split: str = "val",
                    data_root: str | Path | None = None) -> list[EvalSet]:
    """The ``data.val`` (or ``data.test``) datasets with the ``eval.metrics`` built for each.

    An evaluation dataset may bring its own ``pipeline`` but not its own ``codec``: the model
    decodes every dataset with the experiment's codec (validated in :func:`posecore._registry.validate_config`)."""
    from posecore.engine._evaluation import build_metric

    registries = _registries(registries)
    specs: Sequence[ComponentSpec] = getattr(config.data, split)
    pipelines = _Pipelines(config, registries, codec, train=False)
    taken: set[str] = set()
    sets = []
    for index, full_spec in enumerate(specs):
        spec, codec_spec, pipeline_specs = split_dataset_spec(resolve_data_paths(full_spec, data_root))
        if codec_spec is not None:
            raise ConfigError(f"config {config.name!r}, data.{split}[{index}]: an evaluation dataset cannot set its own "
                              "codec (the model decodes with the experiment's 'codec'); remove it, or evaluate that "
                              "dataset with a config whose codec it is")
        pipeline = pipelines.for_dataset(None, pipeline_specs)
        dataset = PipelineDataset(_build_dataset(registries, spec, index), pipeline, seed=config.train.seed)
        # a split without ground truth (COCO test-dev: image info and detections) is predicted, not scored
        scored = getattr(dataset.dataset, "has_ground_truth", True)
        metrics = tuple(build_metric(registries, metric, dataset) for metric in config.eval.metrics) if scored else ()
        sets.append(EvalSet(_label(spec, index, taken), dataset, metrics))
    return sets
