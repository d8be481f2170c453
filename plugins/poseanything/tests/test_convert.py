"""Loading the released checkpoints: state_dicts with exactly the released keys and shapes (written
from the brief in ``original_layout.py``), saved in mmcv's container, load with nothing missing or
unexpected, the architecture told by the tensor shapes; then one forward pass and one decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from posecore_poseanything.model import convert_original, detect_variant
from posecore_poseanything.swinv2 import swinv2_pretrained_state_dict
from released_layout import mmcv_checkpoint, original_shapes, original_state_dict

import posecore
from posecore import load_weights
from posecore._checkpoint import compare_state_dicts

PRESETS = {"tiny": "poseanything-tiny-1shot-split1", "small": "poseanything-small-1shot-split1",
           "base-legacy": "poseanything-base-legacy-1shot-split1"}


@pytest.mark.parametrize("variant", list(PRESETS))
def test_released_layout_converts_without_a_missing_or_unexpected_key(variant: str) -> None:
    state = original_state_dict(variant)
    assert detect_variant(state) == variant
    model = posecore.build_model(posecore.get_preset(PRESETS[variant]))
    converted = convert_original(state)
    report = compare_state_dicts(model.state_dict(), converted, converter="poseanything-original")
    assert report.clean, report.format()
    assert all(key.startswith("backbone.") and (key.startswith("backbone.head.") or key.rsplit(".", 1)[-1] in {
        "relative_position_index", "relative_coords_table", "attn_mask"}) for key in converted.dropped)
    assert len(converted) + len(converted.dropped) == len(state)
    # stage i's patch merging moves to the start of stage i + 1 (timm's layout); heads keep their names
    assert converted["backbone.swin.layers.1.downsample.reduction.weight"] is state[
        "backbone.layers.0.downsample.reduction.weight"]
    assert converted["head.transformer.decoder.layers.2.ffn1.conv.weight"] is state[
        "keypoint_head.transformer.decoder.layers.2.ffn1.conv.weight"]


def test_variants_are_told_apart_by_shapes_only() -> None:
    shapes = {variant: original_shapes(variant) for variant in PRESETS}
    assert shapes["tiny"]["keypoint_head.input_proj.weight"] == shapes["small"]["keypoint_head.input_proj.weight"]
    assert shapes["base-legacy"]["keypoint_head.input_proj.weight"] == (256, 1024, 1, 1)
    assert "backbone.upsample.weight" in shapes["base-legacy"] and "backbone.upsample.weight" not in shapes["small"]
    with pytest.raises(ValueError, match="not a Pose Anything checkpoint"):
        detect_variant({"backbone.patch_embed.proj.weight": torch.zeros(96, 3, 4, 4)})
    odd = original_state_dict("tiny")
    odd["backbone.upsample.weight"] = torch.zeros(768, 768, 2, 2)
    with pytest.raises(ValueError, match="unknown Pose Anything architecture"):
        detect_variant(odd)


def test_a_released_tiny_checkpoint_loads_runs_and_decodes(tmp_path: Path) -> None:
    from poseanything_helpers import batch_of, episode
    from posecore_poseanything.predictor import load_poseanything

    state = original_state_dict("tiny", seed=3)
    path = tmp_path / "1shots_graph_split1.pth"
    torch.save(mmcv_checkpoint({"module." + k: v for k, v in state.items()}), path)  # a DataParallel save

    model = posecore.build_model(posecore.get_preset(PRESETS["tiny"]))
    report = load_weights(model, path, strict=True)
    assert report.clean and report.converter == "poseanything-original"
    assert torch.equal(model.state_dict()["head.kpt_branch.1.mlp.6.weight"],
                       state["keypoint_head.kpt_branch.1.mlp.6.weight"])

    loaded, config = load_poseanything(path, device="cpu")  # no preset: the shapes say Tiny
    assert config.name == "poseanything-tiny-1shot-split1"
    assert torch.equal(loaded.state_dict()["backbone.swin.layers.3.downsample.reduction.weight"],
                       state["backbone.layers.2.downsample.reduction.weight"])
    query, supports = episode(loaded, 9, [(0, 1), (1, 2), (2, 3), (5, 8)], missing=(6,))
    batch = batch_of([(query, supports)])
    with torch.no_grad():
        layers = loaded(batch)
    assert layers.shape == (3, 1, 9, 2) and torch.isfinite(layers).all()
    result = loaded.predict(batch)
    assert result.keypoints.shape == (1, 9, 2) and torch.allclose(result.keypoints, layers[-1] * 256)
    assert result.heatmaps.shape == (1, 9, 16, 16) and result.scores[0, 6] == 0


def test_convert_command_writes_a_posecore_checkpoint(tmp_path: Path, capsys) -> None:
    from posecore._cli.main import main

    source, target = tmp_path / "released.pth", tmp_path / "converted.pth"
    torch.save(mmcv_checkpoint(original_state_dict("tiny")), source)
    assert main(["convert", str(source), str(target), "--preset", PRESETS["tiny"], "--strict"]) == 0
    out = capsys.readouterr().out
    assert "converter 'poseanything-original'" in out and "0 missing, 0 unexpected, 0 wrong shape" in out
    model = posecore.build_model(posecore.get_preset(PRESETS["tiny"]))
    assert load_weights(model, target, strict=True).clean


def test_swinv2_pretraining_files_initialise_the_backbone(tmp_path: Path) -> None:
    """A SimMIM file (``encoder.*`` in the official layout, ``rpe_mlp``, a decoder and a mask
    token) and an official supervised one (``model``: the official layout with its classifier)."""
    import warnings

    backbone_keys = {k.removeprefix("backbone."): v for k, v in original_state_dict("tiny").items()
                     if k.startswith("backbone.")}
    simmim = {"encoder." + k.replace("cpb_mlp", "rpe_mlp"): v for k, v in backbone_keys.items()}
    simmim.update({"encoder.mask_token": torch.zeros(1, 1, 96), "decoder.0.weight": torch.zeros(3072, 768, 1, 1)})
    converted = swinv2_pretrained_state_dict(simmim)
    backbone = posecore.build("backbones", {"type": "poseanything_swinv2"})
    report = compare_state_dicts(backbone.swin.state_dict(), converted)
    assert report.clean, report.format()
    path = tmp_path / "swinv2_tiny_patch4_window16_256.pth"
    torch.save({"model": backbone_keys, "optimizer": {}, "epoch": 300}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # everything fits: no warning
        loaded = posecore.build("backbones", {"type": "poseanything_swinv2", "pretrained": str(path)})
    np.testing.assert_array_equal(loaded.swin.state_dict()["layers.2.downsample.norm.weight"].numpy(),
                                  backbone_keys["layers.1.downsample.norm.weight"].numpy())


def test_a_legacy_5_shot_file_loads_into_its_5_shot_preset(tmp_path: Path) -> None:
    """The legacy SwinV2-B 5-shot weights have the 1-shot architecture; their own preset evaluates
    5-shot episodes (before, no such preset existed and the 1-shot one was the only choice)."""
    from posecore_poseanything.predictor import load_poseanything

    path = tmp_path / "5shot-swin_graph_split3.pth"
    torch.save(mmcv_checkpoint(original_state_dict("base-legacy", seed=5)), path)
    model, config = load_poseanything(path, preset="poseanything-base-legacy-5shot-split3", device="cpu")
    assert config.name == "poseanything-base-legacy-5shot-split3" and model.num_shots == 5
    assert config.data.test[0].args["num_shots"] == 5 and config.codec.args["heatmap_size"] == [64, 64]


def _official_swinv2_file(path: Path) -> dict[str, torch.Tensor]:
    """An official SwinV2-T pre-training file (``{'model': ...}``, the classifier included) with
    random weights; returns its tensors."""
    tensors = {k.removeprefix("backbone."): v for k, v in original_state_dict("tiny", seed=7).items()
               if k.startswith("backbone.")}
    torch.save({"model": tensors, "optimizer": {}, "epoch": 300}, path)
    return tensors


def test_a_pretraining_file_initialises_a_whole_model_through_the_one_loading_path(tmp_path: Path) -> None:
    """What ``train.init_weights`` of the MP-100 presets does: ``load_weights`` recognises an official
    or SimMIM SwinV2 file, fills ``backbone.swin`` and leaves the head as initialised."""
    official = _official_swinv2_file(tmp_path / "swinv2_tiny_patch4_window16_256.pth")
    simmim = {"encoder." + k.replace("cpb_mlp", "rpe_mlp"): v for k, v in official.items() if not k.startswith("head.")}
    simmim.update({"encoder.mask_token": torch.zeros(1, 1, 96), "decoder.0.weight": torch.zeros(3072, 768, 1, 1)})
    torch.save({"model": simmim}, tmp_path / "simmim.pth")
    for file_name in ("swinv2_tiny_patch4_window16_256.pth", "simmim.pth"):
        torch.manual_seed(0)
        model = posecore.build_model(posecore.get_preset(PRESETS["tiny"]))
        head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
        report = load_weights(model, tmp_path / file_name, warn=False)
        assert report.converter == "poseanything-swinv2-pretraining"
        assert not report.unexpected and not report.mismatched
        assert report.missing and all(key.startswith("head.") for key in report.missing)
        loaded = model.state_dict()
        assert torch.equal(loaded["backbone.swin.layers.3.downsample.reduction.weight"],
                           official["layers.2.downsample.reduction.weight"])
        assert torch.equal(loaded["backbone.swin.layers.1.blocks.1.attn.cpb_mlp.0.weight"],
                           official["layers.1.blocks.1.attn.cpb_mlp.0.weight"])
        assert all(torch.equal(loaded[k], v) for k, v in head.items())
