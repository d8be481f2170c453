"""Every preset: its recipe, its published figures, its model's forward/backward at a small size,
the released B model's parameter counts (the brief's totals), and ``posecore flops``."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from posecore_vlpose.presets import HUMANART_TRAINABLE, PUBLISHED

import posecore
from posecore._plugins import get_host
from posecore.config import ExperimentConfig, structure, unstructure
from posecore.engine._builder import build_model
from posecore.testing import check_model_step

PRESETS = get_host().registries.presets.names("vlpose")
README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def _small(config: ExperimentConfig) -> ExperimentConfig:
    """Same structure, small: a 2-block 32-wide ViT, a 1-layer 16-wide BERT, 16-channel head stages."""
    data = copy.deepcopy(unstructure(config))
    model = data["model"]
    model["backbone"].update(embed_dim=32, depth=2, num_heads=2, input_size=[48, 64])
    if model["backbone"].get("frozen_stages", -1) > 2:
        model["backbone"]["frozen_stages"] = 2
    model.update(input_size=[48, 64], vocab_file=None, text_vocab_size=64, text_width=16, text_layers=1, text_heads=2,
                 text_intermediate=32, text_max_positions=32, matcher_heads=2,
                 deconv_channels=[16] * len(model.get("deconv_channels", [256, 256])))
    data["codec"].update(input_size=[48, 64], heatmap_size=[12, 16])
    return structure(data, ExperimentConfig)


def test_every_released_configuration_has_a_preset() -> None:
    expected = {"vlpose-tiny-synthetic"}
    for size in "sblh":
        expected |= {f"vlpose-{size}-dp-humanart-256x192", f"vlpose-{size}-sp-humanart-256x192",
                     f"vlpose-{size}-coco-256x192"}
    assert set(PRESETS) == expected
    registry = get_host().registries.presets
    assert registry.get("vlpose-tiny-synthetic").default
    for size, (humanart, coco) in PUBLISHED.items():
        published = {(r.dataset, r.metric): r.value for r in registry.get(f"vlpose-{size}-dp-humanart-256x192").published}
        assert published == {("Human-Art", "AP"): humanart, ("COCO", "AP"): coco}
    assert PUBLISHED["b"] == (34.33, 75.75) and PUBLISHED["h"] == (43.03, 78.84)
    for name in PRESETS:
        for result in registry.get(name).published:
            assert f"`{name}`" in README and f"{result.value:g}" in README, (name, result)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_model_trains_and_predicts_at_a_small_size(name: str) -> None:
    config = _small(posecore.get_preset(name))
    torch.manual_seed(0)
    model = build_model(config, get_host().registries)
    batch = model.example_batch(2)
    assert tuple(check_model_step(model, batch, name).keypoints.shape) == (2, 17, 2)
    flipped = model.predict({**batch, "meta": [posecore.data.load_metainfo("coco")] * 2}, flip_test=True)
    assert tuple(flipped.keypoints.shape) == (2, 17, 2)


@pytest.mark.parametrize("size,tokens,arch", [("s", 50, "small"), ("b", 20, "base"), ("l", 10, "large"), ("h", 5, "huge")])
def test_humanart_presets_follow_the_released_configs(size: str, tokens: int, arch: str) -> None:
    for prompt, mode in (("dp", "deep"), ("sp", "shallow")):
        config = posecore.get_preset(f"vlpose-{size}-{prompt}-humanart-256x192")
        data = unstructure(config)
        backbone = data["model"]["backbone"]
        assert (backbone["arch"], backbone["prompt_mode"], backbone["prompt_tokens"]) == (arch, mode, tokens)
        assert data["model"]["text_mode"] == "style" and data["model"]["legacy_quirks"]
        assert data["codec"]["type"] == "udp_heatmap" and data["codec"]["blur_kernel_size"] == 11
        assert config.eval.flip_test and config.train.grad_clip == 1.0
        assert config.train.optimizer.layer_decay == 0.8 and config.train.optimizer.lr == 5e-4
        assert config.train.stages[0].trainable == HUMANART_TRAINABLE
        assert config.data.batch_size == {"s": 64, "b": 64, "l": 32, "h": 16}[size]
        assert data["data"]["train"][0]["type"] == "vlpose_styled" and data["data"]["train"][0]["source"] == "parent_dir"
    coco = posecore.get_preset(f"vlpose-{size}-coco-256x192")
    model = unstructure(coco)["model"]
    assert model["text_mode"] == "fixed" and "prompt_mode" not in model["backbone"]
    assert coco.train.optimizer.layer_decay == 0.75


def test_released_b_parameter_counts_match_the_brief() -> None:
    """The brief's totals for VLPose-B dp20 (text encoder apart): backbone 85.8 M, prompts 0.18 M,
    head main + final 4.2 M, head extra 4.2 M, matcher 2.36 M."""
    with torch.device("meta"):
        model = build_model(posecore.get_preset("vlpose-b-dp-humanart-256x192"), get_host().registries)
    count = lambda prefix, *, has=None: sum(p.numel() for n, p in model.named_parameters()  # noqa: E731
                                           if n.startswith(prefix) and (has is None or any(h in n for h in has)))
    prompts = count("backbone.prompt_embed") + count("backbone.deep_prompt_embed")
    assert count("backbone") - prompts == pytest.approx(85.8e6, rel=0.01)
    assert prompts == pytest.approx(0.18e6, rel=0.03)
    main = count("head", has=(".deconv0.", ".bn0.", "final_layer"))
    extra = count("head", has=(".deconv1.", ".bn1."))
    assert main == pytest.approx(4.2e6, rel=0.03) and extra == pytest.approx(4.2e6, rel=0.03)
    assert count("matcher") == pytest.approx(2.36e6, rel=0.01)
    assert sum(p.numel() for p in model.text_encoder.parameters()) == pytest.approx(108.9e6, rel=0.01)  # BERT-base, no pooler


def test_posecore_flops_measures_the_tiny_preset() -> None:
    result = subprocess.run([sys.executable, "-m", "posecore", "flops", "--preset", "vlpose-tiny-synthetic", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)["presets"]["vlpose-tiny-synthetic"]
    assert figures["params_M"] > 0.5 and 0.0 < figures["GFLOPs"] < 1.0
