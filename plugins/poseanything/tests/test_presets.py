"""The presets: the published table, the paper's training and evaluation recipe, parameter counts,
and posecore's contract checks for everything the plugin registers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from posecore_poseanything.presets import PUBLISHED_PCK, SPLITS

import posecore
from posecore._plugins import get_host
from posecore.testing import ContractCase, contract_cases


@pytest.mark.parametrize("case", contract_cases(plugin="poseanything"), ids=str)
def test_contract(case: ContractCase, tmp_path: Path) -> None:
    case.run(tmp_path)


def test_the_plugin_registers_its_components_through_the_hooks() -> None:
    components = get_host().records["poseanything"].components
    assert components["backbones"] == ["poseanything_swinv2"] and components["models"] == ["poseanything"]
    assert components["converters"] == ["poseanything-original", "poseanything-swinv2-pretraining"]
    assert len(components["presets"]) == 31
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


def test_the_legacy_b_draws_64x64_heatmaps_at_224_px_as_its_configs() -> None:
    """The December 2023 configs set ``image_size=[224, 224], heatmap_size=[64, 64]``: stride 3.5,
    for the supports' pooling and the query's target alike (not 224 / 4 = 56)."""
    from posecore.data import DatasetMeta
    from posecore.engine._builder import build_codec, experiment_pipeline

    for shots in (1, 5):
        config = posecore.get_preset(f"poseanything-base-legacy-{shots}shot-split2")
        assert config.codec.args == {"input_size": [224, 224], "heatmap_size": [64, 64], "sigma": 1.0}
    registries = get_host().registries
    pipeline = experiment_pipeline(config, registries, build_codec(config, registries), train=False)
    meta = DatasetMeta(name="pair", keypoint_names=["a", "b"], flip_indices=[0, 1])
    image = np.zeros((300, 300, 3), np.uint8)
    # the box 40..220 padded 1.25x spans 17.5..242.5 (225 px): a keypoint lands at (x - 17.5) * 224 / 225
    sample = pipeline({"image": image, "bbox": np.array([40, 40, 220, 220], np.float32),
                       "keypoints": np.array([[100.0, 60.0], [200.0, 150.0]], np.float32),
                       "visibility": np.ones(2, np.float32), "meta": meta, "image_id": 0, "id": 0, "category_id": 0},
                      np.random.default_rng(0))
    assert sample["heatmaps"].shape == (2, 64, 64)
    for (x, y), heatmap in zip(sample["keypoints"], sample["heatmaps"], strict=True):
        row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        assert (col, row) == (int(x / 3.5 + 0.5), int(y / 3.5 + 0.5)) and heatmap.max() == 1.0


def test_the_legacy_5_shot_row_has_presets_with_its_published_figures() -> None:
    """SwinV2-B 5-shot from the README before 2024-02-02: 96.51 / 92.15 / 91.99 / 92.01 / 92.36."""
    from posecore_poseanything.presets import mp100_preset

    figures = [posecore.get_preset(f"poseanything-base-legacy-5shot-split{split}") for split in SPLITS]
    published = [get_host().registries.presets.get(f"poseanything-base-legacy-5shot-split{split}").published[0].value
                 for split in SPLITS]
    assert published == [96.51, 92.15, 91.99, 92.01, 92.36]
    assert all(config.model.args["num_shots"] == 5 and config.data.batch_size == 8 for config in figures)
    assert all(spec.args["num_shots"] == 5 for spec in figures[2].data.test)
    with pytest.raises(ValueError, match="no released base-legacy 2-shot model"):  # a clear error, not a KeyError
        mp100_preset("base-legacy", 2, 1)


@pytest.mark.parametrize(("arch", "file_name", "source"), [
    ("tiny", "swinv2_tiny_patch4_window16_256.pth", "https://github.com/SwinTransformer/storage/releases"),
    ("small", "swinv2_small_1k_500k.pth", "https://huggingface.co/zdaxie/SimMIM/"),
    ("base-legacy", "swinv2_base_22k_500k.pth", "https://drive.google.com/drive/folders/"),
])
def test_mp100_presets_start_from_the_pretraining_their_configs_name(arch: str, file_name: str, source: str) -> None:
    """Every MP-100 preset reads its architecture's SwinV2 pre-training from ``pretrained/`` (the
    released configs' ``pretrained=``) and says where to download it; the default needs no file."""
    for shots in (1, 5):
        name = f"poseanything-{arch}-{shots}shot-split4"
        assert posecore.get_preset(name).train.init_weights == f"pretrained/{file_name}"
        description = get_host().registries.presets.get(name).description
        assert file_name in description and source in description and "train.init_weights=null" in description
    assert posecore.get_preset("poseanything-tiny-synthetic").train.init_weights is None
