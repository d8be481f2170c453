"""Measuring models under one protocol, in one process: accuracy as ``posecore eval`` scores it,
parameters and GFLOPs as ``posecore flops`` counts them, images/s and peak memory on one device.

Every model is first loaded on the CPU and tried on one sample of the protocol's data, so a model
that cannot take part (another keypoint set, a method that needs inputs the data lacks, a missing
plugin) is refused with the reason before anything long runs. Then each is loaded on the device
and measured alone, and freed before the next.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from posecore._api import config_from_checkpoint, load_model
from posecore._checkpoint import load_checkpoint
from posecore._compare._inputs import Candidate, Skipped
from posecore._compare._protocol import Protocol
from posecore._errors import ConfigError, PosecoreError
from posecore._registry import Registries
from posecore.analysis._complexity import CONVENTIONS, Complexity, measure_complexity
from posecore.config import ExperimentConfig
from posecore.data._metainfo import DatasetMeta
from posecore.data._sample import collate_samples
from posecore.engine._builder import EvalSet, build_eval_sets
from posecore.engine._evaluation import IndexedDataset, evaluate, move_to_device, predict_as_configured

__all__ = ["Measurement", "Prepared", "flops_note", "measure", "memory_note", "prepare", "speed_note"]

#: Calls before timing (lazy initialisation, oneDNN primitive creation, cuDNN autotuning).
WARMUP_CALLS = 2
#: Timed calls at least, however long each takes.
MIN_CALLS = 3


@attrs.frozen
class Prepared:
    """A model that passed the checks: its config under the protocol and its evaluation sets."""

    candidate: Candidate
    config: ExperimentConfig
    plugin: str
    keypoint_set: str
    eval_sets: tuple[EvalSet, ...]


@attrs.frozen
class Measurement:
    """One model's figures: metrics by dataset label, complexity, images/s by batch size, and the
    peak memory (MiB) of a call at the largest batch size, ``None`` where it cannot be measured."""

    prepared: Prepared
    metrics: Mapping[str, Mapping[str, float]]
    complexity: Complexity
    images_per_s: Mapping[int, float]
    peak_memory_mib: float | None

    @property
    def main(self) -> float | None:
        """The protocol's main metric on the first dataset."""
        table = next(iter(self.metrics.values()), {})
        return table.get(self.prepared.config.eval.main_metric)


def prepare(candidates: Sequence[Candidate], *, split: str, data_root: str | None,
            registries: Registries, foreign_preset: str | None = None,
            overrides: Callable[[ExperimentConfig], ExperimentConfig] | None = None,
            ) -> tuple[Protocol, list[Prepared], list[Skipped]]:
    """The protocol (from the first model that loads; ``overrides`` adjusts its config first) and
    every model checked against it on the CPU; those that cannot take part are skipped with the reason."""
    protocol: Protocol | None = None
    prepared: list[Prepared] = []
    skipped: list[Skipped] = []
    for candidate in candidates:
        try:
            model, config, meta = _load(candidate, "cpu", foreign_preset)
            meta = meta or _own_keypoint_set(config, registries, split, data_root)
            if protocol is None:
                protocol = Protocol.from_config(overrides(config) if overrides else config, candidate.label, split)
            config = protocol.apply(config)
            eval_sets = tuple(build_eval_sets(config, registries, getattr(model, "codec", None), split, data_root))
            _check_keypoints(candidate.label, meta, eval_sets)
            _try_one_sample(candidate.label, model, eval_sets[0], protocol)
        except PosecoreError as exc:
            skipped.append(Skipped(candidate.label, str(exc)))
            continue
        prepared.append(Prepared(candidate, config, _plugin(config, registries), meta.name if meta else "?", eval_sets))
        del model
    if protocol is None:
        raise ConfigError("no model could be loaded: " + "; ".join(f"{s.label}: {s.reason}" for s in skipped))
    return protocol, prepared, skipped


def _load(candidate: Candidate, device: str | torch.device, foreign_preset: str | None = None,
          config: ExperimentConfig | None = None) -> tuple[Any, ExperimentConfig, DatasetMeta | None]:
    """``load_model`` for a candidate; a checkpoint without a posecore config takes its preset."""
    preset = candidate.preset
    if preset is None and config is None:
        try:
            return load_model(candidate.checkpoint, device=device)
        except ConfigError:
            if config_from_checkpoint(load_checkpoint(candidate.checkpoint)) is not None:
                raise
            if foreign_preset is None:
                raise ConfigError(f"{candidate.checkpoint} carries no posecore config: say which model it is with "
                                  f"--preset-for-foreign {candidate.checkpoint}=PRESET (posecore plugins -v lists "
                                  "presets)") from None
            preset = foreign_preset
    return load_model(candidate.checkpoint, preset=preset, config=config, device=device)


def _own_keypoint_set(config: ExperimentConfig, registries: Registries, split: str,
                      data_root: str | None) -> DatasetMeta | None:
    """The keypoint set of a model's own evaluation data, for a config that names none (a preset
    on synthetic data given to a foreign checkpoint); ``None`` when that data is not at hand."""
    try:
        eval_sets = build_eval_sets(config, registries, None, split, data_root)
    except PosecoreError:
        return None
    return next((eval_set.dataset.meta for eval_set in eval_sets if eval_set.dataset.meta is not None), None)


def _check_keypoints(label: str, meta: DatasetMeta | None, eval_sets: Sequence[EvalSet]) -> None:
    """Refuse a model whose keypoints are not those the protocol's datasets are labelled with."""
    for eval_set in eval_sets:
        labelled = eval_set.dataset.meta
        if labelled is None:
            continue
        if meta is None:
            raise ConfigError(f"{label}: cannot tell which keypoints the model predicts (its config names no keypoint "
                              f"set), so it cannot be scored on {eval_set.label} ({labelled.name})")
        if tuple(meta.keypoint_names) != tuple(labelled.keypoint_names):
            raise ConfigError(f"{label}: the model predicts {meta.name} ({meta.num_keypoints} keypoints), "
                              f"{eval_set.label} is labelled with {labelled.name} ({labelled.num_keypoints} keypoints); "
                              "models are compared only on a keypoint set they share")


def _try_one_sample(label: str, model: Any, eval_set: EvalSet, protocol: Protocol) -> None:
    """One sample of the protocol's data through the model, so a model that cannot take it (a
    method needing inputs the data lacks) is refused before the comparison starts."""
    batch = collate_samples([IndexedDataset(eval_set.dataset)[0]])
    try:
        with torch.inference_mode():
            model.predict(batch, flip_test=protocol.flip_test)
    except Exception as exc:  # noqa: BLE001 - any failure refuses the model, with its reason
        raise ConfigError(f"{label}: the model cannot predict on {eval_set.label}, the data of {protocol.source}'s "
                          f"config ({type(exc).__name__}: {exc})") from None


def _plugin(config: ExperimentConfig, registries: Registries) -> str:
    """The plugin a model comes from: its preset's (a run's config is named after its preset),
    else its model type's."""
    if config.name in registries.presets:
        return registries.presets.provider(config.name)
    return registries.models.provider(config.model.type)


def measure(prepared: Prepared, protocol: Protocol, *, device: torch.device, batch_sizes: Sequence[int],
            min_time: float, convention: str) -> Measurement:
    """Load the model on ``device``, evaluate it under the protocol, count it and time it; free
    it before returning, so the next model is measured alone."""
    model, config, _ = _load(prepared.candidate, device, config=prepared.config)
    try:
        return _measure_loaded(model, config, prepared, protocol, device, batch_sizes, min_time, convention)
    finally:
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _measure_loaded(model: Any, config: ExperimentConfig, prepared: Prepared, protocol: Protocol,
                    device: torch.device, batch_sizes: Sequence[int], min_time: float, convention: str) -> Measurement:
    metrics = {eval_set.label: evaluate(predict_as_configured(model, eval_set.dataset, config), eval_set.metrics)
               for eval_set in prepared.eval_sets if eval_set.metrics}
    complexity = measure_complexity(model, model.example_batch(1), convention=convention)
    speed, peak = {}, None
    for size in sorted(batch_sizes):
        call = functools.partial(model.predict, _crops(prepared.eval_sets[0], size, device),
                                 flip_test=protocol.flip_test)
        with torch.inference_mode():
            speed[size] = _images_per_second(call, size, device, min_time)
            peak = _peak_memory_mib(call, device)
    return Measurement(prepared, metrics, complexity, speed, peak)


def _crops(eval_set: EvalSet, size: int, device: torch.device) -> dict[str, Any]:
    """A batch of ``size`` real crops of the dataset (its first samples, repeated when it has
    fewer), through the model's test pipeline, already on ``device``."""
    dataset = IndexedDataset(eval_set.dataset)
    return move_to_device(collate_samples([dataset[index % len(dataset)] for index in range(size)]), device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images_per_second(call: Callable[[], Any], size: int, device: torch.device, min_time: float) -> float:
    """Crops per second of ``call``: ``size`` over the median time of a call, timed over at least
    ``min_time`` seconds and MIN_CALLS calls. The median, not the mean, so a call another process
    pre-empted does not decide the figure."""
    for _ in range(WARMUP_CALLS):
        call()
    _synchronize(device)
    durations: list[float] = []
    while len(durations) < MIN_CALLS or sum(durations) < min_time:
        start = time.perf_counter()
        call()
        _synchronize(device)
        durations.append(time.perf_counter() - start)
    return size / statistics.median(durations)


def _peak_memory_mib(call: Callable[[], Any], device: torch.device) -> float | None:
    """How much memory one ``call`` needs above what is resident before it (weights, inputs):
    on CUDA the growth of ``torch.cuda.max_memory_allocated``; on a Linux CPU the growth of the
    process's peak resident set (``VmHWM``, reset first), after returning freed heap memory to the
    system so the call cannot hide in pages an earlier one left; elsewhere ``None``."""
    if device.type == "cuda":
        _synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call()
        _synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if device.type != "cpu":
        return None
    status = Path("/proc/self/status")
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
        before = _status_kib(status, "VmRSS")
    except (OSError, AttributeError):  # not Linux with glibc, or /proc read-only
        return None
    call()
    return (_status_kib(status, "VmHWM") - before) / 1024


def _status_kib(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{path} has no {field}")


def speed_note(device: torch.device, flip_test: bool) -> str:
    flip = "with the flip test" if flip_test else "without flip test"
    return (f"images/s: model.predict on crops already cut and on the {device.type.upper()} (the forward pass, "
            f"{flip} as the accuracy was measured, and heatmap decoding), over the median call; reading and decoding "
            "the images, cropping and mapping keypoints back to the image are not included")


def memory_note(device: torch.device, batch_size: int) -> str:
    if device.type == "cuda":
        how = "growth of torch.cuda.max_memory_allocated"
    elif device.type == "cpu":
        how = ("growth of the process's peak resident memory (VmHWM), freed heap returned to the system first "
               "(malloc_trim); n/a where the kernel offers no resettable peak")
    else:
        how = "not measured on this device"
    return (f"peak memory (MiB): what one call at batch {batch_size} needs above the weights and inputs already "
            f"resident: {how}")


def flops_note(convention: str) -> str:
    return f"GFLOPs: {CONVENTIONS[convention]}, of one forward pass at batch 1 without flip (posecore flops)"
