"""Every preset: its recipe, its published figures (carried in the README too), and its model's
forward/backward at a small input."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import posecore
from posecore._plugins import get_host
from posecore.config import ExperimentConfig, structure, unstructure
from posecore.engine._builder import build_model
from posecore.testing import check_model_step

PRESETS = get_host().registries.presets.names("hevitpose")
README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def _small(config: ExperimentConfig, side: int = 64) -> ExperimentConfig:
    """The preset's own model (widths, depths, head) at a ``side`` x ``side`` input."""
    data = copy.deepcopy(unstructure(config))
    data["model"]["input_size"] = [side, side]
    data["codec"].update(input_size=[side, side], heatmap_size=[side // 4, side // 4])
    return structure(data, ExperimentConfig)


def test_every_configuration_of_the_published_table_has_a_preset() -> None:
    assert set(PRESETS) == {"hevitpose-tiny-synthetic", "hevitpose-t-mpii-256x256", "hevitpose-s-mpii-256x256",
                            "hevitpose-b-mpii-256x256", "hevitpose-b-coco-256x256"}
    registry = get_host().registries.presets
    assert registry.get("hevitpose-tiny-synthetic").default
    expected = {
        "hevitpose-t-mpii-256x256": {("MPII", "val", 87.2), ("MPII", "test", 88.7)},
        "hevitpose-s-mpii-256x256": {("MPII", "val", 88.5), ("MPII", "test", 90.1)},
        "hevitpose-b-mpii-256x256": {("MPII", "val", 89.4), ("MPII", "test", 90.7)},
        "hevitpose-b-coco-256x256": {("COCO", "val2017", 75.4), ("COCO", "test-dev", 72.6)},
    }
    for name in PRESETS:
        preset = registry.get(name)
        published = {(r.dataset, r.split, r.value) for r in preset.published}
        assert published == expected.get(name, set()), name
        if published:
            assert "RECONSTRUCTION" in preset.description and "mmpose 0.29" in preset.description
        for result in preset.published:
            assert f"`{name}`" in README and f"{result.value:g}" in README, (name, result)
    assert "RECONSTRUCTION" in README


def test_the_recipe_is_mmpose_029s_top_down_default() -> None:
    config = posecore.get_preset("hevitpose-b-mpii-256x256")
    assert config.train.epochs == 210 and config.train.optimizer.type == "adam" and config.train.optimizer.lr == 5e-4
    assert tuple(config.train.schedule.milestones) == (170, 200) and config.train.schedule.warmup_iters == 500
    assert config.data.batch_size == 64 and config.eval.flip_test and config.eval.main_metric == "Mean"
    codec = unstructure(config)["codec"]
    assert codec == {"type": "msra_heatmap", "input_size": [256, 256], "heatmap_size": [64, 64], "sigma": 2.0}
    transforms = [t["type"] for t in unstructure(config)["data"]["train_pipeline"]]
    assert not any("half" in t.lower() for t in transforms)  # MPII: no half-body crops
    coco = unstructure(posecore.get_preset("hevitpose-b-coco-256x256"))
    assert any("half" in t["type"].lower() for t in coco["data"]["train_pipeline"])
    assert coco["model"]["head"]["num_keypoints"] == 17 and coco["data"]["test"]


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_model_trains_and_predicts_at_a_small_size(name: str) -> None:
    config = posecore.get_preset(name)
    if name != "hevitpose-tiny-synthetic":
        config = _small(config)
    torch.manual_seed(0)
    model = build_model(config, get_host().registries)
    batch = model.example_batch(2)
    result = check_model_step(model, batch, name)
    height, width = batch["image"].shape[-2:]
    assert tuple(result.heatmaps.shape[-2:]) == (height // 4, width // 4)  # two deconvs from stride 16
    assert tuple(result.keypoints.shape) == (2, model.head.num_keypoints, 2)
