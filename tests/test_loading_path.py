"""One loading path: ``Pose``, ``posecore eval`` and ``posecore predict`` take the ViTPose files
people have (original ViTPose / mmpose 0.x, mmpose 1.x, a Hugging Face folder or its
``model.safetensors``) with ``--preset``, and give the heatmaps of the converted model.

Each file is written here in its layout from random weights; the reference is the same weights
saved in posecore's own layout, so any key the path mishandled changes the heatmaps.
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import posecore
from posecore._checkpoint import CheckpointError, convert_state_dict, load_checkpoint, save_checkpoint
from posecore._cli.main import main
from posecore._plugins import get_host

PRESET = "vitpose-b-coco-256x192"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGE = SHARED / "coco" / "000000196141.jpg"
BOX = [[247.0, 74.0, 460.0, 420.0]]
MMPRETRAIN_BLOCK = {"norm1": "ln1", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj", "norm2": "ln2",
                    "mlp.fc1": "ffn.layers.0.0", "mlp.fc2": "ffn.layers.1"}


def _random_vitpose_b() -> dict[str, torch.Tensor]:
    model = posecore.build_model(posecore.get_preset(PRESET))
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, tensor in model.state_dict().items():
        noise = torch.randn(tensor.shape, generator=generator) if tensor.is_floating_point() else None
        state[name] = tensor if noise is None else (noise.abs() + 0.5 if name.endswith("running_var")
                                                    else tensor + 0.05 * noise)
    state["backbone.pos_embed"][:, 0] = 0.0  # mmpose 1.x keeps no class slot: what a model without it computes
    return state


def _as_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {("keypoint_head." + k[5:] if k.startswith("head.") else k): v for k, v in state.items()}
    return {**renamed, "backbone.cls_token": torch.zeros(1, 1, 768)}


def _as_mmpose1x(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {"backbone.patch_embed.projection.weight": state["backbone.patch_embed.proj.weight"],
           "backbone.patch_embed.projection.bias": state["backbone.patch_embed.proj.bias"],
           "backbone.pos_embed": state["backbone.pos_embed"][:, 1:],
           "backbone.ln1.weight": state["backbone.last_norm.weight"],
           "backbone.ln1.bias": state["backbone.last_norm.bias"]}
    for block in range(12):
        for ours, theirs in MMPRETRAIN_BLOCK.items():
            for kind in ("weight", "bias"):
                out[f"backbone.layers.{block}.{theirs}.{kind}"] = state[f"backbone.blocks.{block}.{ours}.{kind}"]
    out.update({k: v for k, v in state.items() if k.startswith("head.")})
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same random ViTPose-B in posecore's layout and three foreign ones, plus a Hugging Face
    model (its own random weights) as a folder, with its posecore-layout twin."""
    folder = tmp_path_factory.mktemp("layouts")
    state = _random_vitpose_b()
    paths = {"posecore": save_checkpoint({"state_dict": state}, folder / "posecore.pth")}
    meta = {"mmpose_version": "0.24.0", "epoch": 210, "hook_msgs": {"best_score": np.float64(0.758)}}
    torch.save({"meta": meta, "state_dict": OrderedDict(_as_original(state))}, folder / "vitpose_base.pth",
               pickle_protocol=2)
    torch.save({"meta": {"epoch": 210}, "state_dict": _as_mmpose1x(state)}, folder / "td-hm_ViTPose-base.pth")
    paths["original"], paths["mmpose1x"] = folder / "vitpose_base.pth", folder / "td-hm_ViTPose-base.pth"

    transformers = pytest.importorskip("transformers")
    backbone = transformers.VitPoseBackboneConfig(image_size=[256, 192], patch_size=[16, 16], hidden_size=768,
                                                  num_hidden_layers=12, num_attention_heads=12,
                                                  layer_norm_eps=1e-6, out_indices=[12])
    torch.manual_seed(1)
    config = transformers.VitPoseConfig(backbone_config=backbone, num_labels=17, use_simple_decoder=False)
    hf = transformers.VitPoseForPoseEstimation(config)
    hf.save_pretrained(folder / "hf-vitpose-base")
    model = posecore.build_model(posecore.get_preset(PRESET))
    _, converted = convert_state_dict(hf.state_dict(), expected=model.state_dict(), registries=get_host().registries)
    paths["hf-twin"] = save_checkpoint({"state_dict": dict(converted)}, folder / "hf-twin.pth")
    paths["hf-folder"] = folder / "hf-vitpose-base"
    paths["hf-file"] = folder / "hf-vitpose-base" / "model.safetensors"
    return paths


@functools.cache
def _heatmaps(checkpoint: Path) -> np.ndarray:
    pose = posecore.Pose(checkpoint, preset=PRESET, device="cpu", flip_test=False)
    [prediction] = pose(str(IMAGE), [BOX], return_heatmaps=True)
    assert prediction.heatmaps.shape == (1, 17, 64, 48)
    return prediction.heatmaps


@pytest.mark.parametrize(("layout", "twin"), [("original", "posecore"), ("mmpose1x", "posecore"),
                                              ("hf-folder", "hf-twin"), ("hf-file", "hf-twin")])
def test_pose_takes_every_layout_with_a_preset(files: dict[str, Path], layout: str, twin: str) -> None:
    np.testing.assert_array_equal(_heatmaps(files[layout]), _heatmaps(files[twin]))


def _eval(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    data = f"data.val=[{{type: coco, ann_file: {SHARED / 'coco' / 'test_coco.json'}, image_root: {SHARED / 'coco'}}}]"
    status = main(["eval", "--preset", PRESET, "--checkpoint", str(checkpoint), "--device", "cpu", "--json", data,
                   "eval.flip_test=false"])
    output = capsys.readouterr()
    assert status == 0, output.err
    table = json.loads(output.out)
    assert table.pop("checkpoint") == str(checkpoint)
    return table


def test_eval_takes_foreign_files_with_a_preset(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    reference = _eval(files["posecore"], capsys)
    assert _eval(files["original"], capsys) == reference
    assert _eval(files["hf-folder"], capsys) == _eval(files["hf-twin"], capsys)


def _predict(checkpoint: Path, output: Path) -> list[dict]:
    assert main(["predict", "--preset", PRESET, "--checkpoint", str(checkpoint), "--device", "cpu",
                 "--no-flip-test", "--whole-image", str(IMAGE), "--output", str(output)]) == 0
    return json.loads((output / "predictions.json").read_text())


def test_predict_takes_foreign_files_with_a_preset(files: dict[str, Path], tmp_path: Path) -> None:
    assert _predict(files["mmpose1x"], tmp_path / "a") == _predict(files["posecore"], tmp_path / "b")
    assert _predict(files["hf-file"], tmp_path / "c") == _predict(files["hf-twin"], tmp_path / "d")


def test_a_hugging_face_folder_without_weights_names_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="holds no weights file.*model.safetensors"):
        load_checkpoint(tmp_path)


def test_a_sharded_hugging_face_folder_loads_every_shard(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    first, second = {"a": torch.ones(2)}, {"b": torch.zeros(3)}
    save_file(first, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file(second, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = load_checkpoint(tmp_path)
    assert set(loaded) == {"a", "b"} and torch.equal(loaded["b"], second["b"])


def test_a_training_state_of_another_architecture_gives_the_key_table(tmp_path: Path) -> None:
    """``load_weights`` strict (as resume uses it): a key table, never a raw load_state_dict error."""
    model = posecore.build_model(posecore.get_preset("vit-tiny-synthetic"))
    other = {f"{k}.extra" if "head" in k else k: v for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"does not fit .* exactly \(strict\); nothing loaded") as info:
        posecore.load_weights(model, {"model": other}, strict=True, name="the training state of run")
    assert "unexpected" in str(info.value) and "missing" in str(info.value)


def test_a_registered_converter_is_reachable_by_name_to_build_on() -> None:
    """``posecore.get_converter`` hands a plugin the core's conversion of a layout (here Hugging
    Face's) so that its own converter adds only what differs; an unknown name says so."""
    converter = posecore.get_converter("vitpose-hf")
    converted = converter({"backbone.layernorm.weight": torch.ones(2), "head.conv.bias": torch.zeros(3)})
    assert set(converted) == {"backbone.last_norm.weight", "head.final_layer.bias"}
    with pytest.raises(posecore.UnknownComponentError, match="vitpose-hugging"):
        posecore.get_converter("vitpose-hugging")
