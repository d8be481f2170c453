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
from posecore.config.spec import ComponentSpec
from posecore.data.dataset import PipelineDataset
from posecore.data.pipeline import build_pipeline, standard_topdown_pipeline
from posecore.errors import ConfigError, DataError
from posecore.models.base import PoseModel

__all__ = ["EvalSet", "TrainSet", "build_codec", "build_eval_sets", "build_model", "build_train_set", "experiment_pipeline",
           "resolve_data_paths"]


def _registries(registries: Any) -> Any:
    if registries is not None:
        return registries
    from posecore.plugins import get_host

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
    from posecore.codecs.heatmap import UDPHeatmap

    return isinstance(codec, UDPHeatmap)


def experiment_pipeline(config: ExperimentConfig, registries: Any, codec: Any, train: bool) -> Any:
    """The experiment's train or test pipeline (the standard top-down one unless the config lists transforms)."""
    registries = _registries(registries)
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


def _label(spec: ComponentSpec, index: int, taken: set[str]) -> str:
    split = spec.args.get("split")
    label = f"{spec.type}-{split}" if split else spec.type
    if label in taken:
        label = f"{label}#{index}"
    taken.add(label)
    return label


def _build_dataset(registries: Any, spec: ComponentSpec, index: int) -> Dataset:
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
    registries = _registries(registries)
    if not config.data.train:
        raise ValueError(f"config {config.name!r} has no training data (data.train is empty)")
    pipeline = experiment_pipeline(config, registries, codec, train=True)
    taken: set[str] = set()
    parts, labels = [], []
    for index, spec in enumerate(config.data.train):
        spec = resolve_data_paths(spec, data_root)
        parts.append(PipelineDataset(_build_dataset(registries, spec, index), pipeline, seed=config.train.seed))
        labels.append(_label(spec, index, taken))
    return TrainSet(ConcatDataset(parts), tuple(parts), tuple(labels))


def build_eval_sets(config: ExperimentConfig, registries: Any = None, codec: Any = None, split: str = "val",
                    data_root: str | Path | None = None) -> list[EvalSet]:
    """The ``data.val`` (or ``data.test``) datasets with the ``eval.metrics`` built for each."""
    from posecore.engine.evaluation import build_metric

    registries = _registries(registries)
    specs: Sequence[ComponentSpec] = getattr(config.data, split)
    pipeline = experiment_pipeline(config, registries, codec, train=False)
    taken: set[str] = set()
    sets = []
    for index, spec in enumerate(specs):
        spec = resolve_data_paths(spec, data_root)
        dataset = PipelineDataset(_build_dataset(registries, spec, index), pipeline, seed=config.train.seed)
        metrics = tuple(build_metric(registries, metric, dataset) for metric in config.eval.metrics)
        sets.append(EvalSet(_label(spec, index, taken), dataset, metrics))
    return sets
