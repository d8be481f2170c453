"""The checks behind :mod:`posecore.testing`; each raises ``AssertionError`` with a clear reason.

Training checks require a gradient on every trainable parameter. A parameter that is not trained
is frozen (``requires_grad_(False)``, or a buffer) and never checked; a trainable one that a
training step may leave without a gradient by design (a mixture-of-experts expert reached only by
its own dataset's samples) is declared on its module in ``parameters_without_gradient``: a tuple
of ``fnmatch`` patterns of parameter names relative to that module. Anything else without a
gradient is unused, which is a bug.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path

import attrs
import torch
import yaml
from torch import nn

from posecore._plugins import PluginHost, get_host
from posecore._registry import Registries
from posecore.config import structure, unstructure
from posecore.config._experiment import ExperimentConfig
from posecore.data._sample import check_sample, collate_samples
from posecore.engine._assembly_rules import validate_config
from posecore.models._base import PoseModel, PoseResult
from posecore.testing._codec_checks import check_codec
from posecore.testing._metric_checks import check_metric

__all__ = [
    "ContractCase",
    "check_backbone",
    "check_codec",
    "check_dataset",
    "check_detector",
    "check_head",
    "check_metric",
    "check_model",
    "check_preset",
    "contract_cases",
]

_BATCH = 2


def _input_size(registries: Registries, kind: str, name: str, workdir: Path) -> tuple[int, int]:
    size = registries[kind].get(name).example_kwargs(workdir).get("input_size", (64, 64))
    return int(size[0]), int(size[1])


def _declared_without_gradient(module: nn.Module) -> list[str]:
    """The ``parameters_without_gradient`` patterns of ``module`` and its submodules, as full names."""
    return [f"{prefix}.{pattern}" if prefix else pattern
            for prefix, submodule in module.named_modules()
            for pattern in getattr(submodule, "parameters_without_gradient", ())]


def _assert_every_parameter_learned(module: nn.Module, what: str) -> None:
    """After a backward pass: every trainable parameter has a gradient, but those declared in
    ``parameters_without_gradient`` (see the module docstring); every declaration names some."""
    names = [name for name, parameter in module.named_parameters() if parameter.requires_grad]
    declared = _declared_without_gradient(module)
    stale = [pattern for pattern in declared if not any(fnmatchcase(name, pattern) for name in names)]
    assert not stale, f"{what}: parameters_without_gradient names no trainable parameter: {', '.join(stale)}"
    parameters = dict(module.named_parameters())
    silent = [name for name in names
              if parameters[name].grad is None and not any(fnmatchcase(name, pattern) for pattern in declared)]
    assert not silent, (
        f"{what}: {len(silent)} of {len(names)} trainable parameters received no gradient: {', '.join(silent[:5])}"
        f"{', ...' if len(silent) > 5 else ''}. Remove unused parameters, freeze those not trained "
        "(requires_grad_(False)), or declare those a step may leave without a gradient in the module's "
        "parameters_without_gradient")


def _assert_trains(module: nn.Module, output_sum: torch.Tensor, what: str) -> None:
    assert torch.isfinite(output_sum), f"{what}: forward gave a non-finite value"
    output_sum.backward()
    _assert_every_parameter_learned(module, what)


def check_backbone(registries: Registries, name: str, workdir: Path) -> None:
    """Builds from its example; (2, 3, H, W) -> (2, out_channels, h, w); every trainable parameter learns."""
    backbone = registries.backbones.build_example(name, workdir)
    assert isinstance(backbone, nn.Module), f"backbone {name!r} must build an nn.Module"
    assert isinstance(getattr(backbone, "out_channels", None), int), f"backbone {name!r} needs an int out_channels"
    width, height = _input_size(registries, "backbones", name, workdir)
    features = backbone(torch.randn(_BATCH, 3, height, width))
    maps = features if isinstance(features, (list, tuple)) else [features]
    for feature in maps:
        assert feature.ndim == 4 and feature.shape[0] == _BATCH, f"backbone {name!r}: got shape {tuple(feature.shape)}"
    assert maps[-1].shape[1] == backbone.out_channels, (
        f"backbone {name!r}: out_channels is {backbone.out_channels} but the output has {maps[-1].shape[1]}"
    )
    _assert_trains(backbone, sum(f.float().mean() for f in maps), f"backbone {name!r}")


def check_head(registries: Registries, name: str, workdir: Path) -> None:
    """Builds from its example; forward/backward on (2, in_channels, 8, 6); decodes K keypoints."""
    head = registries.heads.build_example(name, workdir)
    k = getattr(head, "num_keypoints", None)
    assert isinstance(k, int) and k > 0, f"head {name!r} needs a positive int num_keypoints"
    features = torch.randn(_BATCH, head.in_channels, 8, 6)
    outputs = head(features)
    _assert_trains(head, outputs.float().mean(), f"head {name!r}")
    with torch.no_grad():
        keypoints, scores = head.decode(head(features))
    assert tuple(keypoints.shape) == (_BATCH, k, 2), f"head {name!r}: decode gave keypoints {tuple(keypoints.shape)}, expected {(_BATCH, k, 2)}"
    assert tuple(scores.shape) == (_BATCH, k), f"head {name!r}: decode gave scores {tuple(scores.shape)}"


def check_dataset(registries: Registries, name: str, workdir: Path) -> None:
    """Builds from its example; non-empty; samples follow the schema; two samples collate."""
    dataset = registries.datasets.build_example(name, workdir)
    assert len(dataset) > 0, f"dataset {name!r}: example is empty"
    meta = getattr(dataset, "meta", None)
    assert meta is not None, f"dataset {name!r} needs a meta attribute (DatasetMeta)"
    samples = []
    for index in (0, len(dataset) - 1):
        sample = dataset[index]
        # Category-agnostic data (MP-100) gives each sample its own category's keypoint set.
        own = sample.get("meta", meta)
        check_sample(sample, own.num_keypoints, where=f"dataset {name!r} sample {index}")
        samples.append(sample)
    same = [s for s in samples if s["meta"].num_keypoints == samples[0]["meta"].num_keypoints]
    batch = collate_samples(same)
    assert tuple(batch["keypoints"].shape) == (len(same), samples[0]["meta"].num_keypoints, 2)


def check_model(registries: Registries, name: str, workdir: Path) -> None:
    """Builds from its example; finite losses that back-propagate to every trainable parameter;
    predict gives (B, K, 2)."""
    model = registries.models.build_example(name, workdir)
    check_model_step(model, model.example_batch(_BATCH), f"model {name!r}")


def check_model_step(model: nn.Module, batch: dict, what: str = "model") -> PoseResult:
    """One training step and one prediction of a built model on ``batch``: scalar, finite losses
    that back-propagate to every trainable parameter (but those the model declares in
    ``parameters_without_gradient``), then ``predict`` in eval mode giving (B, K, 2) keypoints and
    (B, K) scores. Returns the prediction, for the caller's own checks (e.g. K, heatmap sizes):
    what each plugin's "every preset's model trains and predicts" test runs on its shrunk presets."""
    assert isinstance(model, PoseModel), f"{what} must subclass posecore.models.PoseModel"
    model.train()
    losses = model.loss(batch)
    assert losses and all(v.ndim == 0 for v in losses.values()), f"{what}: loss() must return scalar tensors"
    total = sum(losses.values())
    assert math.isfinite(float(total.detach())), f"{what}: non-finite loss {losses}"
    total.backward()
    _assert_every_parameter_learned(model, what)
    model.eval()
    result = model.predict(batch)
    size = batch["image"].shape[0]
    assert isinstance(result, PoseResult), f"{what}: predict() must return a PoseResult"
    assert result.keypoints.ndim == 3 and result.keypoints.shape[0] == size and result.keypoints.shape[2] == 2, (
        f"{what}: predict() gave keypoints {tuple(result.keypoints.shape)}, expected ({size}, K, 2)")
    assert tuple(result.scores.shape) == tuple(result.keypoints.shape[:2])
    return result


def check_preset(registries: Registries, name: str, workdir: Path) -> None:
    """Loads, validates against the factories and round-trips through YAML to an equal config."""
    config = registries.presets.get(name).load()
    validate_config(config, registries)
    text = yaml.safe_dump(unstructure(config), sort_keys=False)
    again = structure(yaml.safe_load(text), ExperimentConfig, source=f"preset {name!r} round trip")
    assert again == config, f"preset {name!r} changes when written and read back"


def check_detector(registries: Registries, name: str, workdir: Path) -> None:
    """Builds from its example for ``("person",)`` on the CPU; two RGB images of different sizes
    give one :class:`posecore.Detections` each: finite x1 <= x2, y1 <= y2 boxes, scores, labels
    among the classes asked for."""
    import numpy as np

    from posecore._detect import Detector, build_detector, check_detections
    from posecore._errors import ConfigError

    example = registries.detectors.get(name).example_kwargs(workdir)
    detector = build_detector(registries, {"type": name, **example}, classes=("person",), device="cpu")
    assert isinstance(detector, Detector), f"detector {name!r} must build a callable (posecore.Detector)"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (72, 96, 3), dtype=np.uint8), rng.integers(0, 256, (100, 64, 3), dtype=np.uint8)]
    try:
        check_detections(detector(images), images, ("person",), f"detector {name!r}")
    except ConfigError as exc:
        raise AssertionError(str(exc)) from None


_CHECKS: dict[str, Callable[[Registries, str, Path], None]] = {
    "backbones": check_backbone,
    "heads": check_head,
    "codecs": check_codec,
    "datasets": check_dataset,
    "detectors": check_detector,
    "metrics": check_metric,
    "models": check_model,
    "presets": check_preset,
}


@attrs.frozen
class ContractCase:
    """One contract check of one registered component; ``str(case)`` is a readable test id."""

    kind: str
    name: str
    provider: str
    host: PluginHost = attrs.field(eq=False, repr=False)

    def run(self, workdir: Path) -> None:
        torch.manual_seed(0)
        _CHECKS[self.kind](self.host.registries, self.name, Path(workdir))

    def __str__(self) -> str:
        return f"{self.provider}:{self.kind}:{self.name}"


def contract_cases(plugin: str | None = None, host: PluginHost | None = None) -> list[ContractCase]:
    """A case for every checkable component (of ``plugin`` only, if given)."""
    host = host or get_host()
    if plugin is not None:
        host.require(plugin)
    return [
        ContractCase(kind, name, host.registries[kind].provider(name), host)
        for kind in _CHECKS
        for name in host.registries[kind].names(plugin)
    ]
