"""The presets: the published table, the paper's training and evaluation recipe, parameter counts,
and posecore's contract checks for everything the plugin registers."""

from __future__ import annotations

from pathlib import Path

import pytest
from posecore_poseanything.presets import PUBLISHED_PCK

import posecore
from posecore._plugins import get_host
from posecore.testing import ContractCase, contract_cases


@pytest.mark.parametrize("case", contract_cases(plugin="poseanything"), ids=str)
def test_contract(case: ContractCase, tmp_path: Path) -> None:
    case.run(tmp_path)


def test_the_plugin_registers_its_components_through_the_hooks() -> None:
    components = get_host().records["poseanything"].components
    assert components["backbones"] == ["poseanything_swinv2"] and components["models"] == ["poseanything"]
    assert components["converters"] == ["poseanything-original"]
    assert len(components["presets"]) == 26
    assert get_host().default_preset("poseanything").name == "poseanything-tiny-synthetic"


@pytest.mark.parametrize(("name", "value"), [
    ("poseanything-small-1shot-split1", 94.73), ("poseanything-tiny-1shot-split1", 91.19),
    ("poseanything-tiny-5shot-split5", 89.73), ("poseanything-small-5shot-split3", 92.62),
    ("poseanything-base-legacy-1shot-split4", 88.68),
])
def test_presets_carry_the_published_pck(name: str, value: float) -> None:
    [published] = get_host().registries.presets.get(name).published
    assert (published.dataset, published.metric, published.value) == ("MP-100", "PCK@0.2", value)
    assert published.split == f"split{name[-1]} test"


def test_every_cell_of_the_published_table_has_a_preset() -> None:
    presets = get_host().registries.presets
    for (arch, shots), row in PUBLISHED_PCK.items():
        assert len(row) == 5
        for split, value in enumerate(row, start=1):
            assert presets.get(f"poseanything-{arch}-{shots}shot-split{split}").published[0].value == value
    means = {key: sum(row) / 5 for key, row in PUBLISHED_PCK.items()}
    assert round(means[("tiny", 1)], 2) == 87.23 and round(means[("small", 5)], 2) == 92.83  # the README's means


def test_mp100_presets_follow_the_released_recipe() -> None:
    config = posecore.get_preset("poseanything-small-5shot-split3")
    train, val, test = config.data.train[0].args, config.data.val[0].args, config.data.test[0].args
    assert train["ann_file"] == "data/mp100/annotations/mp100_split3_train.json" and train["num_shots"] == 5
    assert train["episodes"] and "num_episodes" not in train  # fresh balanced pairs every epoch
    assert (val["num_episodes"], val["num_queries"]) == (100, 15)
    assert (test["ann_file"], test["num_episodes"], test["num_queries"], test["seed"]) == (
        "data/mp100/annotations/mp100_split3_test.json", 200, 15, 1)
    assert all(spec.args["skeleton"] == "updated" for spec in (*config.data.train, *config.data.val, *config.data.test))
    steps = [spec.type for spec in config.data.train_pipeline]
    assert "random_flip" not in steps and "random_half_body" not in steps
    augment = next(spec.args for spec in config.data.train_pipeline if spec.type == "random_bbox_transform")
    assert augment == {"scale_factor": 0.15, "rotate_factor": 15.0, "rotate_prob": 0.6}
    assert [spec.type for spec in config.data.test_pipeline] == ["get_bbox_center_scale", "topdown_affine",
                                                                 "generate_target", "pack_sample"]
    assert config.codec.args == {"input_size": [256, 256], "heatmap_size": [64, 64], "sigma": 1.0}
    optimizer, schedule = config.train.optimizer, config.train.schedule
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ("adam", 1e-5, 0.0)
    assert (schedule.type, schedule.milestones, schedule.warmup_iters, schedule.warmup_ratio) == (
        "step", (160, 180), 1000, 0.001)
    assert (config.train.epochs, config.train.val_interval, config.data.batch_size) == (200, 25, 8)
    assert posecore.get_preset("poseanything-tiny-1shot-split1").data.batch_size == 16
    [metric] = config.eval.metrics
    assert metric.args == {"thresholds": [0.05, 0.1, 0.15, 0.2, 0.25], "mean": "instance", "norm": "bbox"}
    assert (config.eval.main_metric, config.eval.flip_test) == ("PCK@0.2/instance", False)


@pytest.mark.parametrize(("name", "published_millions"), [
    ("poseanything-tiny-1shot-split1", 36.6), ("poseanything-small-1shot-split1", 58.0),
    ("poseanything-base-legacy-1shot-split1", 101.2),
])
def test_parameter_counts_match_the_published_within_3_percent(name: str, published_millions: float) -> None:
    """Tiny 36.59M and Small 57.97M as the brief computes them (without SwinV2's unused ImageNet
    classifier); legacy B 102.2M with it, so 101.2M without."""
    import torch

    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        model = posecore.build_model(posecore.get_preset(name))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - published_millions) / published_millions < 0.03, f"{name}: {params:.2f}M"


def test_flops_command_measures_a_preset(capsys) -> None:
    import json

    from posecore._cli.main import main

    assert main(["flops", "--preset", "poseanything-tiny-1shot-split1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["presets"]["poseanything-tiny-1shot-split1"]
    assert round(figures["params_M"], 2) == 36.59
    assert figures["input_shape"] == [1, 3, 256, 256]
    # one query and one support through SwinV2-T (about 5.9 GMACs each) plus the head
    assert 12.0 < figures["GFLOPs"] < 16.0
