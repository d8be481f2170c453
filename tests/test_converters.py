"""Loading the ViTPose checkpoints people have: original / mmpose 0.x, mmpose 1.x and Hugging Face
transformers layouts, recognised by their keys, with every mismatch reported.

The Hugging Face models are the real ``transformers`` classes built from config objects (random
weights, no download); the mmpose files are written here with those layouts' key names and
shapes (ViTPose's ``keypoint_head.*``, mmpretrain's ``backbone.layers.{i}.ffn.layers.0.0`` ...).
"""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import posecore
from posecore import load_weights
from posecore._checkpoint import CheckpointError, convert_state_dict
from posecore._plugins import get_host
from posecore.models._heads import HeatmapDeconvHead, HeatmapSimpleHead
from posecore.models._topdown import TopdownHeatmapModel
from posecore.models._vit import ViT

TINY_VIT = {"embed_dim": 64, "depth": 2, "num_heads": 4, "input_size": (48, 64)}


def _posecore_tiny(simple: bool = False, keypoints: int = 5) -> TopdownHeatmapModel:
    head = HeatmapSimpleHead(64, keypoints) if simple else HeatmapDeconvHead(64, keypoints)  # transformers' classic head: 256 channels
    return TopdownHeatmapModel(ViT(**TINY_VIT), head, input_size=(48, 64)).eval()


def _randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter and norm statistic away from its init, so a swapped key cannot hide."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                tensor.copy_(noise.abs() + 0.5)
            else:
                tensor.add_(0.05 * noise)
    return model.eval()


def _hf_vitpose(hidden: int, layers: int, heads: int, image_size: list[int], keypoints: int, simple: bool):
    """A randomised ``VitPoseForPoseEstimation``; skips the calling test (only it) without transformers."""
    transformers = pytest.importorskip("transformers")
    backbone = transformers.VitPoseBackboneConfig(
        image_size=image_size, patch_size=[16, 16], hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, layer_norm_eps=1e-6, out_indices=[layers],
    )
    config = transformers.VitPoseConfig(backbone_config=backbone, num_labels=keypoints, use_simple_decoder=simple)
    torch.manual_seed(0)
    return _randomised(transformers.VitPoseForPoseEstimation(config))


def _heatmaps(model: TopdownHeatmapModel, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model({"image": images})


# ---------------------------------------------------------------------------------------------
# Hugging Face transformers


@pytest.mark.parametrize("simple", [True, False], ids=["simple-head", "classic-head"])
def test_hf_vitpose_small_config_gives_the_same_heatmaps(tmp_path: Path, simple: bool) -> None:
    hf = _hf_vitpose(64, 2, 4, [64, 48], 5, simple)
    path = tmp_path / "model.safetensors"  # the hub's format
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(path))
    ours = _posecore_tiny(simple)
    report = load_weights(ours, path)
    assert report.converter == "vitpose-hf" and report.clean, report.format()
    images = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        expected = hf(pixel_values=images).heatmaps
    assert (_heatmaps(ours, images) - expected).abs().max() <= 1e-4


def test_hf_vitpose_b_config_gives_the_same_heatmaps_as_posecore_vitpose_b() -> None:
    hf = _hf_vitpose(768, 12, 12, [256, 192], 17, simple=False)
    model = posecore.build_model(posecore.get_preset("vitpose-b-coco-256x192")).eval()
    name, converted = convert_state_dict(hf.state_dict(), expected=model.state_dict(), registries=get_host().registries)
    assert name == "vitpose-hf"
    model.load_state_dict(converted, strict=True)
    images = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        expected = hf(pixel_values=images).heatmaps
    heatmaps = _heatmaps(model, images)
    assert heatmaps.shape == expected.shape == (2, 17, 64, 48)
    assert (heatmaps - expected).abs().max() <= 1e-4


# ---------------------------------------------------------------------------------------------
# original ViTPose / mmpose 0.x


def _mmcv_checkpoint(state_dict: dict[str, torch.Tensor], path: Path) -> Path:
    """How mmcv 1.x saves: ``meta`` (with numpy values) beside an OrderedDict ``state_dict``."""
    meta = {"mmpose_version": "0.24.0", "epoch": 210, "iter": 98280,
            "hook_msgs": {"best_score": np.float64(0.758), "best_ckpt": "best_AP_epoch_210.pth"}}
    torch.save({"meta": meta, "state_dict": OrderedDict(state_dict)}, path, pickle_protocol=2)
    return path


def _as_mmpose0x(model: TopdownHeatmapModel) -> dict[str, torch.Tensor]:
    """The original repository's names: the backbone's are posecore's, the head is keypoint_head."""
    state = {k.replace("head.", "keypoint_head.", 1) if k.startswith("head.") else k: v
             for k, v in model.state_dict().items()}
    state["backbone.cls_token"] = torch.zeros(1, 1, 64)  # present in some released files, never used
    return state


def test_original_vitpose_checkpoint_loads_exactly(tmp_path: Path) -> None:
    source = _randomised(_posecore_tiny())
    path = _mmcv_checkpoint(_as_mmpose0x(source), tmp_path / "vitpose_small.pth")
    target = _posecore_tiny()
    report = load_weights(target, path)
    assert report.converter == "vitpose-mmpose0x" and report.clean
    assert report.dropped == (("backbone.cls_token", "ViTPose's forward never uses a class token"),)
    images = torch.randn(2, 3, 64, 48)
    assert torch.equal(_heatmaps(target, images), _heatmaps(source, images))


def test_vitpose_plus_split_leftovers_are_dropped_but_real_experts_are_kept(tmp_path: Path) -> None:
    source = _as_mmpose0x(_posecore_tiny())
    expected = _posecore_tiny().state_dict()
    # model_split output: fc2 already holds the chosen expert (full width); expert copies remain
    split = dict(source)
    for block in range(2):
        for expert in range(6):
            split[f"backbone.blocks.{block}.mlp.experts.{expert}.weight"] = torch.zeros(16, 256)  # (P, 4C)
    _, converted = convert_state_dict(split, expected=expected, registries=get_host().registries)
    assert not any(".experts." in key for key in converted)
    assert len(converted.dropped) == 1 + 2 * 6
    # the multi-dataset file itself: fc2 narrower than the width, experts needed by a MoE backbone
    moe = dict(split)
    for block in range(2):
        moe[f"backbone.blocks.{block}.mlp.fc2.weight"] = torch.zeros(48, 256)
    path = tmp_path / "vitpose+_tiny.pth"
    torch.save({"state_dict": moe}, path)
    with pytest.raises(CheckpointError) as info:
        load_weights(_posecore_tiny(), path, strict=True)
    message = str(info.value)
    assert "backbone.blocks.0.mlp.fc2.weight" in message and "checkpoint [48, 256] vs model [64, 256]" in message
    assert "unexpected" in message and "backbone.blocks.1.mlp.experts.5.weight" in message


# ---------------------------------------------------------------------------------------------
# mmpose 1.x (mmpretrain's VisionTransformer)


_MMPRETRAIN_BLOCK = {"norm1": "ln1", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj", "norm2": "ln2",
                     "mlp.fc1": "ffn.layers.0.0", "mlp.fc2": "ffn.layers.1"}


def _as_mmpose1x(model: TopdownHeatmapModel) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    out = {"backbone.patch_embed.projection.weight": state["backbone.patch_embed.proj.weight"],
           "backbone.patch_embed.projection.bias": state["backbone.patch_embed.proj.bias"],
           "backbone.pos_embed": state["backbone.pos_embed"][:, 1:],  # mmpretrain keeps no class slot
           "backbone.ln1.weight": state["backbone.last_norm.weight"],
           "backbone.ln1.bias": state["backbone.last_norm.bias"]}
    for block in range(2):
        for ours, theirs in _MMPRETRAIN_BLOCK.items():
            for kind in ("weight", "bias"):
                out[f"backbone.layers.{block}.{theirs}.{kind}"] = state[f"backbone.blocks.{block}.{ours}.{kind}"]
    out.update({k: v for k, v in state.items() if k.startswith("head.")})
    return out


def test_mmpose1x_checkpoint_loads_exactly(tmp_path: Path) -> None:
    source = _randomised(_posecore_tiny())
    with torch.no_grad():
        source.backbone.pos_embed[:, 0] = 0.0  # what a model without the class slot computes
    path = tmp_path / "td-hm_ViTPose-tiny.pth"
    torch.save({"meta": {"epoch": 210}, "state_dict": _as_mmpose1x(source)}, path)
    target = _posecore_tiny()
    report = load_weights(target, path, strict=True)
    assert report.converter == "vitpose-mmpose1x" and report.clean and not report.dropped
    images = torch.randn(2, 3, 64, 48)
    assert torch.equal(_heatmaps(target, images), _heatmaps(source, images))


# ---------------------------------------------------------------------------------------------
# reports


def test_posecore_layout_needs_no_converter(tmp_path: Path) -> None:
    source = _randomised(_posecore_tiny())
    path = tmp_path / "posecore.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    report = load_weights(_posecore_tiny(), path, strict=True)
    assert report.converter is None and report.clean


def test_a_different_head_is_reported_loaded_partially_and_refused_when_strict(tmp_path: Path) -> None:
    hf = _hf_vitpose(64, 2, 4, [64, 48], 5, simple=False)
    path = tmp_path / "hf.pth"
    torch.save(hf.state_dict(), path)
    target = _posecore_tiny(keypoints=17)
    before = target.state_dict()["head.final_layer.weight"].clone()
    with pytest.warns(UserWarning, match="wrong shape") as warned:
        report = load_weights(target, path)
    assert report.mismatched == (("head.final_layer.bias", (5,), (17,)),
                                 ("head.final_layer.weight", (5, 256, 1, 1), (17, 256, 1, 1)))
    assert "checkpoint [5, 256, 1, 1] vs model [17, 256, 1, 1]" in str(warned[0].message)
    assert torch.equal(target.state_dict()["head.final_layer.weight"], before)  # skipped, not half-loaded
    converted = convert_state_dict(hf.state_dict(), converter="vitpose-hf", registries=get_host().registries)[1]
    assert torch.equal(target.state_dict()["backbone.blocks.1.attn.qkv.weight"],
                       converted["backbone.blocks.1.attn.qkv.weight"])
    with pytest.raises(CheckpointError, match=r"does not fit TopdownHeatmapModel \(after converter 'vitpose-hf'\) "
                                              r"exactly \(strict\); nothing loaded:\nproblem"):
        load_weights(_posecore_tiny(keypoints=17), path, strict=True)


def test_a_file_of_another_model_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, path)
    with pytest.raises(CheckpointError, match="none of its 2 tensors fits TopdownHeatmapModel"):
        load_weights(_posecore_tiny(), path)
    with pytest.raises(CheckpointError, match="no registered converter recognises its keys"):
        convert_state_dict(torch.load(path), registries=get_host().registries)


# ---------------------------------------------------------------------------------------------
# posecore convert


def _convert_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posecore", "convert", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_convert_cli_recognises_the_layout_and_checks_the_preset(tmp_path: Path) -> None:
    hf = _hf_vitpose(384, 12, 12, [256, 192], 17, simple=False)  # ViTPose-S
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    source, target = tmp_path / "vitpose-s.safetensors", tmp_path / "out" / "vitpose-s.pth"
    save_file(state, str(source))
    result = _convert_cli(source, target, "--preset", "vitpose-s-coco-256x192", "--strict", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "layout: converter 'vitpose-hf'" in result.stdout and "all keys match" in result.stdout
    written = torch.load(target, weights_only=True)
    assert written["meta"] == {"converter": "vitpose-hf", "source": str(source)}
    assert torch.equal(written["state_dict"]["backbone.pos_embed"], state["backbone.embeddings.position_embeddings"])

    del state["backbone.layernorm.bias"]
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    result = _convert_cli(broken, tmp_path / "broken.pth", "--preset", "vitpose-s-coco-256x192", "--strict",
                          cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "missing      backbone.last_norm.bias" in result.stdout
    assert "does not fit preset 'vitpose-s-coco-256x192' (--strict); nothing written" in result.stderr
    assert not (tmp_path / "broken.pth").exists()
