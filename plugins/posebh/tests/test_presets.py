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
from posecore._plugins import get_host
from posecore.config import ExperimentConfig, structure, unstructure
from posecore.engine._assembly_rules import split_dataset_spec
from posecore.engine._builder import build_model
from posecore.engine._optim import build_param_groups
from posecore.testing import check_model_step

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


#: Presets that no published figure ran: the embedded default and the corrected training recipes.
UNPUBLISHED = {"posebh-tiny-synthetic", "posebh-b-mdt-256x192", "posebh-h-mdt-256x192"}


def test_every_configuration_of_the_published_table_has_a_preset() -> None:
    expected = {"posebh-tiny-synthetic", "posebh-b-interhand2d-256x192", "posebh-b-3dpw-256x192"}
    for size in ("b", "h"):
        expected |= {f"posebh-{size}-mdt-256x192", f"posebh-{size}-mdt-released-256x192"}
        expected |= {f"posebh-{size}-{d}-256x192" for d in ("coco", "ochuman", "mpii", "aic", "ap10k", "apt36k", "wholebody")}
    expected |= {f"vitpose+-{size}-mdt-256x192" for size in "sblh"}
    assert set(PRESETS) == expected
    registry = get_host().registries.presets
    assert registry.get("posebh-tiny-synthetic").default
    for name in PRESETS:
        published = registry.get(name).published
        assert bool(published) == (name not in UNPUBLISHED), name
        for result in published:
            assert result.source and result.value > 0
            assert f"`{name}`" in README and f"{result.value:g}" in README, (name, result)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_model_trains_and_predicts_at_a_small_size(name: str) -> None:
    config = _small(posecore.get_preset(name))
    torch.manual_seed(0)
    model = build_model(config, get_host().registries)
    result = check_model_step(model, model.example_batch(2), name)
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


def _centre_shift(config: ExperimentConfig) -> tuple[list[str], dict, dict]:
    """The train pipeline's transform order, its centre_shift args and random_bbox_transform args."""
    pipeline = config.data.train_pipeline
    args = {t.type: t.args for t in pipeline}
    return [t.type for t in pipeline], args.get("center_shift", {}), args["random_bbox_transform"]


@pytest.mark.parametrize("size", ["b", "h"])
def test_the_released_run_and_the_corrected_one_are_both_offered(size: str) -> None:
    """The preset carrying the published figure runs the released code's behaviour (legacy quirks,
    fp16 as vit*_posebh.py, the centre shift drawn once and discarded by half-body crops); the
    corrected one is the method as described; ``posecore plugins -v`` says which is which."""
    released = posecore.get_preset(f"posebh-{size}-mdt-released-256x192")
    corrected = posecore.get_preset(f"posebh-{size}-mdt-256x192")
    assert released.model.args["legacy_quirks"] is True and not corrected.model.args.get("legacy_quirks", False)
    assert released.train.mixed_precision == corrected.train.mixed_precision == "fp16"
    order, shift, bbox = _centre_shift(released)
    assert order[:4] == ["get_bbox_center_scale", "center_shift", "random_flip", "random_half_body"]
    assert shift == {"factor": 0.16, "prob": 0.3, "once": True} and "shift_prob" not in bbox
    order, shift, bbox = _centre_shift(corrected)
    assert "center_shift" not in order and (bbox["shift_factor"], bbox["shift_prob"]) == (0.16, 0.3)  # per epoch
    for config in (released, corrected):
        config.model.args.pop("legacy_quirks", None)
    assert unstructure(released.model) == unstructure(corrected.model)  # otherwise the same recipe
    listing = subprocess.run([sys.executable, "-m", "posecore", "plugins", "-v", "-p", "posebh"], capture_output=True,
                             text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    described = {line.split()[1]: lines[n + 1] for n, line in enumerate(lines) if line.strip().startswith("preset")}
    assert "reproduction of the released code" in described[f"posebh-{size}-mdt-released-256x192"]
    assert "corrected" in described[f"posebh-{size}-mdt-256x192"]


@pytest.mark.parametrize("name", ["vitpose+-s-mdt-256x192", "vitpose+-b-mdt-256x192", "vitpose+-l-mdt-256x192",
                                  "vitpose+-h-mdt-256x192", "posebh-b-interhand2d-256x192", "posebh-b-3dpw-256x192"])
def test_the_other_published_recipes_run_as_their_original_configs(name: str) -> None:
    """ViTPose++ trains in fp32 (its configs have no fp16 block); these reproductions draw the
    centre shift once per dataset build, before the flip and half-body crops."""
    config = posecore.get_preset(name)
    if name.startswith("vitpose+"):
        assert config.train.mixed_precision == "no"
    order, shift, bbox = _centre_shift(config)
    assert order[1] == "center_shift" and shift["once"] is True and "shift_prob" not in bbox


def test_layer_decay_leaves_heads_and_prototype_head_at_full_rate() -> None:
    config = _small(posecore.get_preset("posebh-b-mdt-256x192"))
    model = build_model(config, get_host().registries)
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
    ("coco", "coco", "udp_heatmap", "AP"), ("ochuman", "coco", "msra_heatmap", "AP"), ("mpii", "mpii", "udp_heatmap", "Mean"),
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
    _, shift, bbox = _centre_shift(hands)
    assert (bbox["scale_factor"], bbox["rotate_factor"], shift["factor"]) == (0.3, 90.0, pytest.approx(0.2 / 1.5))
    body = posecore.get_preset("posebh-b-3dpw-256x192")
    assert body.model.args["head"]["num_keypoints"] == 24 and body.data.train[0].type == "posebh_pw3d"
    assert [s.start_epoch for s in body.train.stages] == [0, 15, 16] and body.train.stages[2].trainable == ("head.*",)
    (metric,) = body.eval.metrics
    assert metric.args["use_area"] is False and len(metric.args["sigmas"]) == 24


def _analytic_macs(config: ExperimentConfig) -> tuple[int, int]:
    """Multiply-accumulates of the backbone and of the head that ``forward`` runs (the first
    dataset's), for one crop, counted by hand from the architecture the config describes."""
    model = config.model.args
    backbone, head = model["backbone"], model["heads"][0]
    width, height = model["input_size"]
    dim, depth, part = backbone["embed_dim"], backbone["depth"], backbone["part_features"]
    patch, padding, hidden = 16, 2, 4 * dim  # ViTPose's padded 16x16 patches; an MLP 4 tokens wide
    grid_h, grid_w = ((side + 2 * padding - patch) // patch + 1 for side in (height, width))
    tokens = grid_h * grid_w
    block = (tokens * dim * 3 * dim  # query, key, value
             + 2 * tokens * tokens * dim  # QK^T and attention x V, all heads together
             + tokens * dim * dim  # attention output projection
             + tokens * dim * hidden  # shared fc1
             + tokens * hidden * (dim - part)  # shared fc2
             + tokens * hidden * part)  # the sample's one expert (the others do not run)
    backbone_macs = tokens * dim * 3 * patch * patch + depth * block
    head_macs, channels, rows, columns = 0, dim, grid_h, grid_w
    for out in head["deconv_channels"]:  # 4x4 stride-2 deconvolutions: each input pixel x 16 taps
        head_macs += rows * columns * channels * out * 4 * 4
        channels, rows, columns = out, 2 * rows, 2 * columns
    head_macs += rows * columns * channels * head["num_keypoints"]  # the 1x1 convolution to heatmaps
    return backbone_macs, head_macs


def test_posecore_flops_measures_a_preset() -> None:
    """The count is the architecture's, to the multiply-accumulate (0.0645 G for the tiny preset)."""
    from posecore.analysis import measure_complexity

    config = posecore.get_preset("posebh-tiny-synthetic")
    backbone_macs, head_macs = _analytic_macs(config)
    torch.manual_seed(0)
    model = build_model(config, get_host().registries)
    measured = measure_complexity(model, model.example_batch(1))
    assert measured.macs == backbone_macs + head_macs
    assert measured.macs_by_module["backbone"] == backbone_macs
    result = subprocess.run([sys.executable, "-m", "posecore", "flops", "--preset", "posebh-tiny-synthetic", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    import json

    figures = json.loads(result.stdout)["presets"]["posebh-tiny-synthetic"]
    assert figures["params_M"] > 0.5 and 0.0 < figures["GFLOPs"] < 1.0
    assert figures["GFLOPs"] == round((backbone_macs + head_macs) / 1e9, 3)
    assert figures["params"] == measured.params
