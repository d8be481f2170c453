"""Registry-driven contract checks: every component of every installed plugin, built and run.

As in timm, a plugin gets these tests for free the moment it registers a component.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pytest
import torch
from torch import nn

import posecore
from posecore._plugins import load_plugins
from posecore.codecs import MSRAHeatmap
from posecore.config import apply_overrides
from posecore.models import TopdownHeatmapModel
from posecore.testing import (
    ContractCase,
    check_codec,
    check_metric,
    check_model,
    contract_cases,
    loss_history,
    model_and_batch,
)

HOST = load_plugins(autoload=True, strict=True)
CASES = contract_cases(host=HOST)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_component_contract(case: ContractCase, tmp_path: Path) -> None:
    case.run(tmp_path)


def test_every_component_kind_is_exercised() -> None:
    kinds = {case.kind for case in CASES}
    assert {"backbones", "heads", "datasets", "models", "presets"} <= kinds


def test_a_broken_component_fails_its_check(tmp_path: Path) -> None:
    """The checks must be able to fail: a head that decodes the wrong number of keypoints."""
    from torch import nn

    import posecore
    from posecore.testing import check_head

    class WrongCountHead(nn.Module):
        def __init__(self, in_channels: int = 4, num_keypoints: int = 3) -> None:
            super().__init__()
            self.in_channels, self.num_keypoints = in_channels, num_keypoints
            self.conv = nn.Conv2d(in_channels, num_keypoints, 1)

        def forward(self, features):
            return self.conv(features)

        def decode(self, heatmaps):
            from posecore.codecs import heatmap_argmax

            coords, scores = heatmap_argmax(heatmaps[:, :-1])
            return coords, scores

    host = load_plugins(autoload=False)
    host.registries.heads.add(posecore.Component("wrong_count", WrongCountHead), "test")
    with pytest.raises(AssertionError, match="decode gave keypoints"):
        check_head(host.registries, "wrong_count", tmp_path)


def test_metrics_and_codecs_are_exercised() -> None:
    kinds = {case.kind for case in CASES}
    assert {"codecs", "metrics"} <= kinds
    names = {(case.kind, case.name) for case in CASES}
    assert {("codecs", "msra_heatmap"), ("codecs", "udp_heatmap"), ("codecs", "keypoint_regression"),
            ("metrics", "coco_ap"), ("metrics", "pckh"), ("metrics", "nme")} <= names


class _UnusedLayerModel(TopdownHeatmapModel):
    """The core's top-down model with a layer its loss never reaches."""

    def __init__(self, backbone: Annotated[nn.Module, posecore.Nested("backbones")],
                 head: Annotated[nn.Module, posecore.Nested("heads")], input_size: tuple[int, int] = (192, 256)) -> None:
        super().__init__(backbone, head, input_size=input_size)
        self.forgotten = nn.Linear(4, 4)


def _host_with(kind: str, component: posecore.Component):
    host = load_plugins(autoload=False)
    host.registries[kind].add(component, "test")
    return host


def test_a_trainable_parameter_without_gradient_fails_the_model_check(tmp_path: Path) -> None:
    example = dict(HOST.registries.models.get("topdown_heatmap").example)
    host = _host_with("models", posecore.Component("unused_layer", _UnusedLayerModel, example=example))
    with pytest.raises(AssertionError, match=r"2 of 37 trainable parameters received no gradient: forgotten.weight"):
        check_model(host.registries, "unused_layer", tmp_path)


class _FrozenLayerModel(_UnusedLayerModel):
    def __init__(self, backbone: Annotated[nn.Module, posecore.Nested("backbones")],
                 head: Annotated[nn.Module, posecore.Nested("heads")], input_size: tuple[int, int] = (192, 256)) -> None:
        super().__init__(backbone, head, input_size=input_size)
        self.forgotten.requires_grad_(False)


class _DeclaredLayerModel(_UnusedLayerModel):
    parameters_without_gradient = ("forgotten.*",)


class _StaleDeclarationModel(TopdownHeatmapModel):
    parameters_without_gradient = ("forgotten.*",)


def test_frozen_and_declared_parameters_pass_and_stale_declarations_fail(tmp_path: Path) -> None:
    example = dict(HOST.registries.models.get("topdown_heatmap").example)
    for name, factory in (("frozen", _FrozenLayerModel), ("declared", _DeclaredLayerModel)):
        check_model(_host_with("models", posecore.Component(name, factory, example=example)).registries, name, tmp_path)
    host = _host_with("models", posecore.Component("stale", _StaleDeclarationModel, example=example))
    with pytest.raises(AssertionError, match="parameters_without_gradient names no trainable parameter: forgotten"):
        check_model(host.registries, "stale", tmp_path)


class _ShiftedDecodeCodec(MSRAHeatmap):
    """Decodes one heatmap pixel to the right: a stride off, twice the tolerance."""

    def decode(self, outputs):
        keypoints, scores = super().decode(outputs)
        return keypoints + torch.tensor([self.input_size[0] / self.heatmap_size[0], 0.0]), scores


def test_a_codec_that_does_not_round_trip_fails(tmp_path: Path) -> None:
    example = dict(HOST.registries.codecs.get("msra_heatmap").example)
    host = _host_with("codecs", posecore.Component("shifted", _ShiftedDecodeCodec, example=example))
    with pytest.raises(AssertionError, match=r"codec 'shifted': encode -> decode moved keypoints by up to \[2\.9"):
        check_codec(host.registries, "shifted", tmp_path)


class _CountingMetric:
    """Counts the results it was given: breaks under the repeats of multi-process padding."""

    def reset(self) -> None:
        self.results = []

    def update(self, results) -> None:
        self.results.extend(results)

    def compute(self) -> dict[str, float]:
        return {"count": float(len(self.results))}


class _FirstArrivalMetric(_CountingMetric):
    """Drops duplicates but reports the first result's error: depends on the arrival order."""

    def compute(self) -> dict[str, float]:
        first = self.results[0]
        return {"error": float(np.abs(first["keypoints"] - first["gt_keypoints"]).sum())}


def test_metrics_that_count_repeats_or_depend_on_order_fail(tmp_path: Path) -> None:
    host = _host_with("metrics", posecore.Component("counting", _CountingMetric))
    with pytest.raises(AssertionError, match="padded with repeats as 2 processes give them change the table"):
        check_metric(host.registries, "counting", tmp_path)
    host = _host_with("metrics", posecore.Component("first_arrival", _FirstArrivalMetric))
    with pytest.raises(AssertionError, match="the same results in another order give another table"):
        check_metric(host.registries, "first_arrival", tmp_path)


def test_model_and_batch_and_loss_history_train_for_real_and_stop_on_a_non_finite_loss(tiny_config) -> None:
    """The training helpers plugins' tests share: the batch is the trainer's (pipeline, codec,
    collate, JPEGs decoded where ``data.jpeg_decode: device`` left them), the history every
    step's terms; a NaN stops with its step."""
    model, batch = model_and_batch(tiny_config(), 8)
    assert batch["image"].shape == (8, 3, 64, 48) and batch["heatmaps"].shape == (8, 17, 16, 12)
    assert model.training
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = loss_history(model, [batch, {**batch, "image": batch["image"].flip(-1)}], optimizer, 30)
    assert len(history) == 30 and set(history[0]) == {"loss_heatmap"}
    assert history[-1]["loss_heatmap"] < history[0]["loss_heatmap"]
    _, decoded_there = model_and_batch(apply_overrides(tiny_config(), ["data.jpeg_decode=device"]), 8)
    assert "jpeg" not in decoded_there and (decoded_there["image"].int() - batch["image"].int()).abs().max() <= 1
    broken = {**batch, "heatmaps": torch.full_like(batch["heatmaps"], float("nan"))}
    with pytest.raises(AssertionError, match=r"step 0: non-finite loss \{'loss_heatmap': nan\}"):
        loss_history(model, broken, optimizer, 5)
