"""A comparison: the protocol, the device, the notes saying how each figure was measured, one
:class:`Measurement` per model and the models left out with the reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch

from posecore._compare._inputs import Candidate, Skipped
from posecore._compare._measure import Measurement, flops_note, measure, memory_note, prepare, speed_note
from posecore._compare._protocol import Protocol
from posecore._errors import ConfigError
from posecore._registry import Registries
from posecore.config import ExperimentConfig

__all__ = ["Comparison", "compare"]


@attrs.frozen
class Comparison:
    protocol: Protocol
    device: str
    batch_sizes: tuple[int, ...]
    notes: dict[str, str]
    measurements: tuple[Measurement, ...]
    skipped: tuple[Skipped, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol.to_json(),
            "device": self.device,
            "torch": torch.__version__,
            "batch_sizes": list(self.batch_sizes),
            "notes": self.notes,
            "models": [_model_json(m) for m in self.measurements],
            "not_compared": [{"label": s.label, "reason": s.reason} for s in self.skipped],
        }


def _model_json(measurement: Measurement) -> dict[str, Any]:
    prepared = measurement.prepared
    return {
        "label": prepared.candidate.label,
        "checkpoint": str(prepared.candidate.checkpoint),
        "run": None if prepared.candidate.run is None else str(prepared.candidate.run),
        "config": prepared.config.name,
        "plugin": prepared.plugin,
        "keypoint_set": prepared.keypoint_set,
        "metrics": {label: dict(table) for label, table in measurement.metrics.items()},
        "params": measurement.complexity.params,
        "params_M": round(measurement.complexity.params_m, 3),
        "GFLOPs": round(measurement.complexity.gflops, 3),
        "input_shape": list(measurement.complexity.input_shape),
        "images_per_s": {str(size): round(value, 2) for size, value in measurement.images_per_s.items()},
        "peak_memory_MiB": None if measurement.peak_memory_mib is None else round(measurement.peak_memory_mib, 1),
    }


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'' if threads == 1 else 's'})"
    return str(device)


def compare(candidates: Sequence[Candidate], *, registries: Registries, split: str = "val",
            data_root: str | None = None, device: str | None = None,
            batch_sizes: Sequence[int] = (1, 32), min_time: float = 2.0, convention: str = "operators",
            foreign_preset: str | None = None, skipped: Sequence[Skipped] = (), strict: bool = False,
            overrides: Callable[[ExperimentConfig], ExperimentConfig] | None = None,
            on_model: Callable[[str], None] | None = None) -> Comparison:
    """Check every candidate against the protocol of the first, then measure each on ``device``
    (default: CUDA when available). A candidate that cannot take part is left out with the reason,
    or, with ``strict`` (models the user named), stops the comparison before anything is measured.
    ``skipped`` are models already left out (runs on other data); ``on_model(label)`` is told when
    each model's measuring starts."""
    chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    protocol, prepared, refused = prepare(candidates, split=split, data_root=data_root,
                                          registries=registries, foreign_preset=foreign_preset, overrides=overrides)
    if strict and refused:
        raise ConfigError("cannot compare " + "; ".join(f"{s.label}: {s.reason}" for s in refused))
    measurements = []
    for model in prepared:
        if on_model is not None:
            on_model(model.candidate.label)
        measurements.append(measure(model, protocol, device=chosen, batch_sizes=batch_sizes, min_time=min_time,
                                    convention=convention))
    largest = max(batch_sizes)
    notes = {
        "accuracy": (f"{protocol.main_metric} and every metric of {protocol.source}'s config, on its data.{protocol.split} "
                     f"datasets and boxes, flip test {'on' if protocol.flip_test else 'off'}, each model with its own "
                     "input size, codec and test pipeline (what posecore eval gives under that protocol)"),
        "flops": flops_note(convention),
        "speed": speed_note(chosen, protocol.flip_test),
        "memory": memory_note(chosen, largest),
    }
    return Comparison(protocol, describe_device(chosen), tuple(sorted(batch_sizes)), notes, tuple(measurements),
                      (*skipped, *refused))
