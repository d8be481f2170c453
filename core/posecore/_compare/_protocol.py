"""The one evaluation protocol of a comparison, and what "evaluated on the same data" means.

Published tables mix protocols: detector boxes or ground-truth boxes, flip test or not, one metric
implementation or another. A comparison takes the datasets of one split (with their boxes), the
metrics and the flip setting from one model's config and imposes them on every model, which keeps
only what is its own: architecture, codec, input size and test pipeline.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from posecore._errors import ConfigError
from posecore.config import ComponentSpec, ExperimentConfig, unstructure
from posecore.engine._assembly_rules import dataset_entries

__all__ = ["Protocol", "data_signature"]


@attrs.frozen
class Protocol:
    """Datasets, metrics and flip setting every model of a comparison is evaluated with.

    ``source`` names the model whose config they were taken from.
    """

    source: str
    split: str
    datasets: tuple[ComponentSpec, ...]
    metrics: tuple[ComponentSpec, ...]
    main_metric: str
    higher_is_better: bool
    flip_test: bool

    @classmethod
    def from_config(cls, config: ExperimentConfig, source: str, split: str) -> Protocol:
        """The protocol of ``config``'s ``data.<split>`` and ``eval`` sections."""
        datasets = getattr(config.data, split)
        if not datasets:
            raise ConfigError(f"{source}: config {config.name!r} has no data.{split} datasets to compare the models on; "
                              f"choose the split with --split, or put a model whose config has one first")
        if not config.eval.metrics:
            raise ConfigError(f"{source}: config {config.name!r} names no eval.metrics to compare the models by")
        return cls(source=source, split=split, datasets=tuple(datasets), metrics=tuple(config.eval.metrics),
                   main_metric=config.eval.main_metric, higher_is_better=config.eval.higher_is_better,
                   flip_test=config.eval.flip_test)

    def apply(self, config: ExperimentConfig) -> ExperimentConfig:
        """``config`` with this protocol's datasets, metrics and flip setting; its model, codec,
        input size, test pipeline and evaluation batch size stay."""
        data = attrs.evolve(config.data, **{self.split: self.datasets})
        evaluation = attrs.evolve(config.eval, metrics=self.metrics, main_metric=self.main_metric,
                                  higher_is_better=self.higher_is_better, flip_test=self.flip_test)
        return attrs.evolve(config, data=data, eval=evaluation)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "split": self.split,
                "datasets": [unstructure(spec) for spec in self.datasets],
                "metrics": [unstructure(spec) for spec in self.metrics],
                "main_metric": self.main_metric, "higher_is_better": self.higher_is_better, "flip_test": self.flip_test}


def data_signature(config: ExperimentConfig, split: str) -> str:
    """What ``config``'s ``data.<split>`` evaluates on, as a canonical string: each dataset's type
    and arguments, without what belongs to the model (a dataset's own test ``pipeline``) or to its
    place in the list (``dataset_index``). Two runs with equal signatures were scored on the same
    samples with the same boxes."""
    datasets = [{"type": entry.dataset.type,
                 "args": {key: value for key, value in entry.dataset.args.items() if key != "dataset_index"}}
                for entry in dataset_entries(config, split)]
    return json.dumps(datasets, sort_keys=True, default=str)
