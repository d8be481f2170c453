"""Every preset: its recipe (datasets and their codecs, phases, optimiser groups), its published
figures, and its model's forward/backward at a small size."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import posecore
from posecore.config import ExperimentConfig, structure, unstructure
from posecore.engine._builder import build_model, split_dataset_spec
from posecore.engine._optim import build_param_groups
from posecore._plugins import get_host

PRESETS = get_host().registries.presets.names("posebh")
README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def _small(config: ExperimentConfig) -> ExperimentConfig:
    """The preset with a 1-block, 32-wide ViT, 16-channel heads and 64x48 crops: the same structure, small."""
    data = copy.deepcopy(unstructure(config))
    model = data["model"]
    model["backbone"].update(embed_dim=32, depth=1, num_heads=2, input_size=[48, 64])
    model["input_size"] = [48, 64]
    if data["codec"] is not None:
        data["codec"].update(input_size=[48, 64], heatmap_size=[12, 16])
    if model["backbone"]["type"] == "posebh_vit_moe":
        model["backbone"]["part_features"] = 8
    for head in model.get("heads", []) + [model[key] for key in ("head", "proto_head") if key in model]:
        head.update(in_channels=32, deconv_channels=[16, 16])
    return structure(data, ExperimentConfig)


def test_every_configuration_of_the_published_table_has_a_preset() -> None:
    expected = {"posebh-tiny-synthetic", "posebh-b-interhand2d-256x192", "posebh-b-3dpw-256x192"}
    for size in ("b", "h"):
        expected |= {f"posebh-{size}-mdt-256x192"} | {f"posebh-{size}-{d}-256x192" for d in
                                                      ("coco", "ochuman", "mpii", "aic", "ap10k", "apt36k", "wholebody")}
    expected |= {f"vitpose+-{size}-mdt-256x192" for size in "sblh"}
    assert set(PRESETS) == expected
    registry = get_host().registries.presets
    assert registry.get("posebh-tiny-synthetic").default
    for name in PRESETS:
        published = registry.get(name).published
        assert bool(published) == (name != "posebh-tiny-synthetic"), name
        for result in published:
            assert result.source and result.value > 0
            assert f"`{name}`" in README and f"{result.value:g}" in README, (name, result)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_model_trains_and_predicts_at_a_small_size(name: str) -> None:
    config = _small(posecore.get_preset(name))
    torch.manual_seed(0)
    model = build_model(config)
    batch = model.example_batch(2)
    model.train()
    losses = model.loss(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert any(p.grad is not None for p in model.parameters())
    model.eval()
    result = model.predict(batch)
    heads = getattr(model, "heads", None) or [model.head]
    dataset = model.dataset_id(model.dataset) if getattr(model, "dataset", None) else 0
    assert tuple(result.keypoints.shape) == (2, heads[dataset].num_keypoints, 2)


def test_posebh_multi_dataset_training_recipe() -> None:
    config = posecore.get_preset("posebh-b-mdt-256x192")
    types = [spec.type for spec in config.data.train]
    assert types == ["coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody"]
    assert [spec.args["dataset_index"] for spec in config.data.train] == list(range(6))
    assert config.codec.type == "udp_heatmap" and config.data.sampling_ratios is None  # proportional to size
    codecs, pipelines = {}, {}
    for spec in config.data.train:
        _, codec, pipeline = split_dataset_spec(spec)
        codecs[spec.type] = (codec or config.codec).type
        pipelines[spec.type] = [t.type for t in (pipeline or config.data.train_pipeline)]
    assert codecs == {"coco": "udp_heatmap", "mpii": "udp_heatmap", "aic": "msra_heatmap", "ap10k": "msra_heatmap",
                      "apt36k": "msra_heatmap", "coco_wholebody": "msra_heatmap"}
    assert "random_half_body" not in pipelines["mpii"] and "random_half_body" in pipelines["coco"]
    bbox = next(t for t in config.data.train_pipeline if t.type == "random_bbox_transform").args
    assert (bbox["scale_factor"], bbox["rotate_factor"]) == (0.5, 40.0)
    train = config.train
    assert train.init_weights == "weights/vitpose+_base.pth" and train.epochs == 100
    assert [(s.start_epoch, s.trainable, s.lr) for s in train.stages] == [
        (0, ("proto_head.*",), 1e-3), (50, ("heads.*", "proto_head.*"), 1e-4), (90, ("*",), 1e-5)]
    assert train.stages[1].options == {"freeze_prototypes": True, "cps": True, "css": True}
    assert train.schedule.milestones == () and train.schedule.warmup_iters == 500  # the phases set the lr
    optimizer = train.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay, optimizer.layer_decay) == ("adamw", 1e-3, 0.1, 0.75)
    assert train.grad_clip == 1.0 and train.mixed_precision == "fp16" and config.data.batch_size == 128
    model = config.model.args
    assert model["backbone"] == {"type": "posebh_vit_moe", "arch": "base", "drop_path_rate": 0.3, "input_size": [192, 256]}
    assert [h["num_keypoints"] for h in model["heads"]] == [17, 14, 16, 17, 17, 133]
    assert model["proto_head"]["num_keypoints"] == [17, 14, 16, 17, 17, 133] and model["proto_head"]["num_clusters"] == 96
    huge = posecore.get_preset("posebh-h-mdt-256x192")
    assert huge.train.optimizer.layer_decay == 0.8 and huge.model.args["backbone"]["drop_path_rate"] == 0.55


def test_layer_decay_leaves_heads_and_prototype_head_at_full_rate() -> None:
    config = _small(posecore.get_preset("posebh-b-mdt-256x192"))
    model = build_model(config)
    groups = build_param_groups(model, config.train.optimizer)
    scale = {name: group["lr_scale"] for group in groups for name in group["names"]}
    decay = {name: group["weight_decay"] for group in groups for name in group["names"]}
    depth = model.backbone.num_layers  # 1 block here: embeddings x 0.75^2, the block x 0.75
    assert scale["backbone.pos_embed"] == scale["backbone.patch_embed.proj.weight"] == pytest.approx(0.75 ** (depth + 1))
    assert scale["backbone.blocks.0.mlp.experts.3.weight"] == pytest.approx(0.75)
    assert scale["backbone.last_norm.weight"] == scale["heads.5.final_layer.weight"] == 1.0
    assert scale["proto_head.neck.conv1.weight"] == 1.0
    assert decay["backbone.pos_embed"] == 0.0 and decay["backbone.blocks.0.mlp.experts.3.bias"] == 0.0
    assert decay["backbone.blocks.0.mlp.experts.3.weight"] == 0.1
    assert not any(name.endswith("prototypes") for name in scale)  # the banks are buffers: no optimiser


@pytest.mark.parametrize(("dataset", "selected", "codec", "metric"), [
    ("coco", "coco", "udp_heatmap", "AP"), ("ochuman", "coco", "udp_heatmap", "AP"), ("mpii", "mpii", "udp_heatmap", "Mean"),
    ("aic", "aic", "msra_heatmap", "AP"), ("ap10k", "ap10k", "msra_heatmap", "AP"),
    ("apt36k", "apt36k", "msra_heatmap", "AP"), ("wholebody", "coco_wholebody", "msra_heatmap", "wholebody/AP"),
])
def test_evaluation_presets_pick_the_dataset_codec_and_metric(dataset: str, selected: str, codec: str, metric: str) -> None:
    config = posecore.get_preset(f"posebh-h-{dataset}-256x192")
    assert config.model.args["dataset"] == selected and config.codec.type == codec
    assert config.eval.main_metric == metric and config.eval.flip_test and config.train.epochs == 0
    assert config.model.args["backbone"]["arch"] == "huge"


def test_transfer_presets_follow_the_transfer_configs() -> None:
    hands = posecore.get_preset("posebh-b-interhand2d-256x192")
    assert hands.model.type == "posebh_transfer" and hands.model.args["head"]["num_keypoints"] == 21
    assert hands.data.train[0].args["hands"] == "each" and hands.eval.main_metric == "AUC"
    assert [(s.start_epoch, s.trainable, s.options) for s in hands.train.stages] == [
        (0, ("head.*",), {"freeze_prototypes": False}), (30, ("backbone.*", "head.*"), {"freeze_prototypes": True})]
    assert (hands.train.optimizer.type, hands.train.optimizer.lr, hands.train.schedule.milestones) == ("adam", 5e-4, (35, 55))
    bbox = next(t for t in hands.data.train_pipeline if t.type == "random_bbox_transform").args
    assert (bbox["scale_factor"], bbox["rotate_factor"], bbox["shift_factor"]) == (0.3, 90.0, pytest.approx(0.2 / 1.5))
    body = posecore.get_preset("posebh-b-3dpw-256x192")
    assert body.model.args["head"]["num_keypoints"] == 24 and body.data.train[0].type == "posebh_pw3d"
    assert [s.start_epoch for s in body.train.stages] == [0, 15, 16] and body.train.stages[2].trainable == ("head.*",)
    (metric,) = body.eval.metrics
    assert metric.args["use_area"] is False and len(metric.args["sigmas"]) == 24


def test_posecore_flops_measures_a_preset() -> None:
    result = subprocess.run([sys.executable, "-m", "posecore", "flops", "--preset", "posebh-tiny-synthetic", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    import json

    figures = json.loads(result.stdout)["presets"]["posebh-tiny-synthetic"]
    assert figures["params_M"] > 0.5 and 0.0 < figures["GFLOPs"] < 1.0
