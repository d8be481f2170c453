"""The assembly step: from an experiment config and the registries to the objects a run needs,
the codec, the model, the training set, the evaluation sets and their metrics.

Training, evaluation, prediction and export all assemble here, so a model is always built with
the codec its data was encoded with. The registries are always the caller's (the CLI's or
``posecore.Pose``'s plugin host, a test's own): nothing here reaches for the process-wide host.
What goes where, with which context, and the data-split rules are in
:mod:`posecore.engine._assembly_rules`, shared with config validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from torch.utils.data import ConcatDataset, Dataset

from posecore._errors import ConfigError, DataError
from posecore._fileio import parsing_each_file_once
from posecore._registry import Registries
from posecore.config import ExperimentConfig
from posecore.config._spec import ComponentSpec
from posecore.data._dataset import PipelineDataset
from posecore.data._pipeline import build_pipeline
from posecore.data._pipeline_specs import standard_topdown_pipeline
from posecore.engine._assembly_rules import DatasetEntry, dataset_entries, engine_context
from posecore.models._base import PoseModel

__all__ = ["EvalSet", "TrainSet", "build_codec", "build_eval_sets", "build_model", "build_train_set", "experiment_pipeline"]


def build_codec(config: ExperimentConfig, registries: Registries) -> Any:
    """The experiment's codec, or ``None`` when the config has none."""
    return None if config.codec is None else registries.codecs.build(config.codec)


def build_model(config: ExperimentConfig, registries: Registries, codec: Any = None) -> PoseModel:
    """The model, given the experiment's codec (``codec``, else the config's) when its factory
    takes one and the spec sets none."""
    codec = codec if codec is not None else build_codec(config, registries)
    model = registries.models.build(config.model, context=engine_context("models", codec=codec))
    if not isinstance(model, PoseModel):
        raise TypeError(f"model {config.model.type!r} built a {type(model).__name__}, not a posecore.models.PoseModel")
    return model


def _use_udp(codec: Any) -> bool:
    from posecore.codecs._heatmap import UDPHeatmap

    return isinstance(codec, UDPHeatmap)


def experiment_pipeline(config: ExperimentConfig, registries: Registries, codec: Any, train: bool,
                        specs: Sequence[ComponentSpec] | None = None) -> Any:
    """The experiment's train or test pipeline (the standard top-down one unless the config lists
    transforms); ``specs`` replaces the config's list (a dataset's own ``pipeline``)."""
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
    if config.data.jpeg_decode == "device":
        _check_image_blind_after_affine(specs)
    context = engine_context("transforms", codec=codec, input_size=tuple(config.data.input_size), use_udp=_use_udp(codec),
                             jpeg_decode=config.data.jpeg_decode)
    return build_pipeline(specs, registries, **context)


#: Transforms that may follow ``topdown_affine`` when it leaves JPEGs to the device: they never
#: read the image's pixels (targets from keypoints; the zero image packed as a tensor).
_IMAGE_BLIND = ("generate_target", "pack_sample")


def _check_image_blind_after_affine(specs: Sequence[ComponentSpec | dict[str, Any] | str]) -> None:
    """With ``data.jpeg_decode: device`` the image is zeros until the batch reaches the device: a
    transform after ``topdown_affine`` that may read it would work on zeros, silently."""
    types = [ComponentSpec.parse(spec).type for spec in specs]
    if "topdown_affine" not in types:
        return
    for name in types[types.index("topdown_affine") + 1:]:
        if name not in _IMAGE_BLIND:
            raise ConfigError(
                f"data.jpeg_decode=device leaves JPEG crops undecoded until the batch is on the device, but transform "
                f"{name!r} comes after 'topdown_affine' and may read the image (only {', '.join(_IMAGE_BLIND)} may "
                "follow it then); set data.jpeg_decode=loader, or move the transform before 'topdown_affine'"
            )


class _Pipelines:
    """The pipeline of each dataset of a split, built once per distinct (codec, pipeline) choice."""

    def __init__(self, config: ExperimentConfig, registries: Registries, codec: Any, train: bool) -> None:
        # no codec given: the config's (so a caller holding only the config gets the same targets)
        codec = codec if codec is not None else build_codec(config, registries)
        self.config, self.registries, self.codec, self.train = config, registries, codec, train
        self._built: dict[tuple[str, str], Any] = {}

    def for_dataset(self, entry: DatasetEntry) -> Any:
        key = (repr(entry.codec), repr(entry.pipeline))
        if key not in self._built:
            codec = self.codec if entry.codec is None else self.registries.codecs.build(entry.codec)
            self._built[key] = experiment_pipeline(self.config, self.registries, codec, self.train, entry.pipeline)
        return self._built[key]


def _label(spec: ComponentSpec, index: int, taken: set[str]) -> str:
    split = spec.args.get("split")
    label = f"{spec.type}-{split}" if split else spec.type
    if label in taken:
        label = f"{label}#{index}"
    taken.add(label)
    return label


def _build_dataset(registries: Registries, entry: DatasetEntry) -> Dataset:
    try:
        return registries.datasets.build(entry.dataset, context=engine_context("datasets", dataset_index=entry.index))
    except DataError as exc:
        if "not found" not in str(exc):
            raise
        raise DataError(f"{exc}; relative dataset paths are read from the working directory, or from the folder "
                        "given with --data ROOT (posecore run --data /datasets ...)") from None


def _build_metrics(config: ExperimentConfig, registries: Registries, dataset: Dataset) -> tuple[Any, ...]:
    """``eval.metrics`` for one dataset, each given the dataset's ``ann_file`` as context.

    A split without ground truth (COCO test-dev: image info and detections) is predicted, not
    scored: no metrics.
    """
    if not getattr(dataset, "has_ground_truth", True):
        return ()
    ann_file = getattr(dataset, "ann_file", None)
    context = engine_context("metrics", ann_file=None if ann_file is None else str(ann_file))
    return tuple(registries.metrics.build(spec, context=context) for spec in config.eval.metrics)


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


def build_train_set(config: ExperimentConfig, registries: Registries, codec: Any = None,
                    data_root: str | Path | None = None) -> TrainSet:
    """The ``data.train`` datasets, each behind the train pipeline (its own, when its spec has a
    ``codec`` or ``pipeline``), concatenated."""
    if not config.data.train:
        raise ValueError(f"config {config.name!r} has no training data (data.train is empty)")
    pipelines = _Pipelines(config, registries, codec, train=True)
    taken: set[str] = set()
    parts, labels = [], []
    for entry in dataset_entries(config, "train", data_root):
        pipeline = pipelines.for_dataset(entry)
        parts.append(PipelineDataset(_build_dataset(registries, entry), pipeline, seed=config.train.seed))
        labels.append(_label(entry.dataset, entry.index, taken))
    return TrainSet(ConcatDataset(parts), tuple(parts), tuple(labels))


def build_eval_sets(config: ExperimentConfig, registries: Registries, codec: Any = None, split: str = "val",
                    data_root: str | Path | None = None) -> list[EvalSet]:
    """The ``data.val`` (or ``data.test``) datasets, each behind the test pipeline (its own, when
    its spec has a ``pipeline``), with the ``eval.metrics`` built for it.

    A dataset and its metrics are built while each file is parsed once, so the annotation file
    that the dataset reads and its metric scores against is parsed once and both read the same
    parsed document.
    """
    pipelines = _Pipelines(config, registries, codec, train=False)
    taken: set[str] = set()
    sets = []
    for entry in dataset_entries(config, split, data_root):
        pipeline = pipelines.for_dataset(entry)
        with parsing_each_file_once():
            dataset = _build_dataset(registries, entry)
            metrics = _build_metrics(config, registries, dataset)
        sets.append(EvalSet(_label(entry.dataset, entry.index, taken),
                            PipelineDataset(dataset, pipeline, seed=config.train.seed), metrics))
    return sets
