"""Loading the released PGVL checkpoints.

State dicts are built with exactly the released keys and shapes (``pgvl_released_layout``), saved in
mmcv 1.x's container and loaded through ``posecore.load_weights`` without naming a converter:
every key must find its place (strict). Then one forward pass with the flip test and a decode.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pgvl_released_layout import mmcv_checkpoint, released_shapes, released_state_dict
from posecore_pgvl.model import PGVLModel, pgvl_official, to_official

import posecore
from posecore.data import load_metainfo

_PRESETS = {"crowdpose": "pgvl-b-crowdpose-256x192", "mpii": "pgvl-b-mpii-256x256", "ochuman": "pgvl-b-ochuman-256x192"}
_METAINFO = {"crowdpose": "crowdpose", "mpii": "mpii", "ochuman": "coco"}


@pytest.mark.parametrize("dataset", ["crowdpose", "ochuman"])  # MPII's layout: test_released_key_lists_...
def test_released_checkpoint_loads_strictly_and_predicts(dataset: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = posecore.build_model(posecore.get_preset(_PRESETS[dataset]))
    state = released_state_dict(dataset)
    path = tmp_path / "best.pth"
    torch.save(mmcv_checkpoint(state), path)

    report = posecore.load_weights(model, path, strict=True)
    assert report.clean and not report.missing and not report.unexpected and not report.mismatched
    assert report.converter == "pgvl-official"
    loaded = model.state_dict()
    assert len(state) == 867
    for key in ("my_up1.weight", "my.parse_layers.0.0.block.1.block.0.w2", "keypoint_head.final_layer.weight",
                "text_encoder.positional_embedding", "contexts", "logit_scale"):
        assert torch.equal(loaded[pgvl_official({key: state[key]}).popitem()[0]], state[key])

    model.eval()
    meta = load_metainfo(_METAINFO[dataset])
    width, height = model.input_size
    image = torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8)
    result = model.predict({"image": image, "meta": [meta]}, flip_test=True)
    keypoints = len(model.class_names)
    assert result.keypoints.shape == (1, keypoints, 2) and result.scores.shape == (1, keypoints)
    assert result.heatmaps.shape == (1, keypoints, height // 4, width // 4)
    assert torch.isfinite(result.keypoints).all() and torch.isfinite(result.scores).all()
    # mmpose's convention: an empty heatmap (maximum <= 0) decodes to -1 heatmap pixels.
    assert (result.keypoints >= -4).all() and (result.keypoints[..., 0] <= width).all()


def test_released_key_lists_are_the_models_layout() -> None:
    """Every preset's model (meta device) has the released names and shapes after conversion."""
    for dataset, preset in _PRESETS.items():
        with torch.device("meta"):
            model = posecore.build_model(posecore.get_preset(preset))
        ours = {key: tuple(tensor.shape) for key, tensor in to_official(model.state_dict()).items()}
        assert ours == released_shapes(dataset), dataset


def test_converter_strips_module_and_is_recognised() -> None:
    state = {f"module.{key}": torch.zeros(1) for key in ("my.parse_layers.0.0.w", "my_up1.bias", "keypoint_head.x",
                                                        "backbone.pos_embed", "contexts")}
    assert pgvl_official.matches(state)
    assert not pgvl_official.matches({"backbone.pos_embed": torch.zeros(1)})
    assert sorted(pgvl_official(state)) == ["backbone.pos_embed", "contexts", "fusion.parse_layers.0.0.w",
                                            "head.x", "visual_proj.bias"]


def _tiny(**overrides: object) -> PGVLModel:
    from posecore.models import HeatmapDeconvHead, ViT

    args: dict[str, object] = dict(
        class_names=("left eye", "right eye", "nose"), text_width=32, text_heads=2, text_layers=1, text_embed_dim=32,
        prompt_heads=2, parse_dims=(32,), depths=(2,), splits=((2, 2),), target_dim=32, mode=5, cross_heads=2,
        input_size=(64, 64))
    args.update(overrides)
    out = {1: sum(args["parse_dims"]), 2: sum(args["parse_dims"]), 5: sum(args["parse_dims"])}.get(args["mode"],
                                                                                                 args["target_dim"])
    backbone = ViT(arch="small", embed_dim=48 if args.get("version", 2) == 2 else args["target_dim"], depth=1, num_heads=2, input_size=(64, 64), norm_eps=1e-5)
    head = HeatmapDeconvHead(out, 3, (16,), input_stride=16)
    return PGVLModel(backbone, head, **args)


def test_architecture_is_refitted_from_the_file(tmp_path: Path) -> None:
    """The AP-10K / AnimalPose case: a file whose fusion (two trees, mode 1 or 2), projection,
    head and context count differ from the configured model loads strictly after the refit."""
    torch.manual_seed(0)
    for mode, dims in ((1, (32, 16)), (2, (32, 16)), (3, (16,))):
        source = _tiny(parse_dims=dims, depths=(2,) * len(dims), splits=((2, 2),) * len(dims), mode=mode,
                       context_length=12)
        path = tmp_path / f"mode{mode}.pth"
        torch.save(mmcv_checkpoint(to_official(source.state_dict())), path)
        target = _tiny()
        report = posecore.load_weights(target, path, strict=True)
        assert report.clean, (mode, report.format())
        assert target.fusion.mode == (3 if mode == 3 else mode) and target.fusion.out_dim == source.fusion.out_dim
        assert target.contexts.shape == (1, 1, 32) and target.context_length == 12
        source.eval()
        target.eval()
        image = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(target({"image": image}), source({"image": image}))


def test_initial_weights_from_mae_and_clip(tmp_path: Path) -> None:
    """MAE (14 x 14 grid, class token, final ``norm``) + CLIP text (77 positions) -> the model's
    backbone and text tower; nothing else is touched, ``last_norm`` keeps its default."""
    from posecore_pgvl.init import initial_weights

    model = _tiny()
    reference = model.state_dict()
    mae = {f"blocks.0.{k}": torch.randn_like(v) for k, v in model.backbone.blocks[0].state_dict().items()}
    mae.update({"patch_embed.proj.weight": torch.randn(48, 3, 16, 16), "patch_embed.proj.bias": torch.randn(48),
                "cls_token": torch.randn(1, 1, 48), "pos_embed": torch.randn(1, 197, 48),
                "norm.weight": torch.randn(48), "norm.bias": torch.randn(48)})
    torch.save({"model": mae}, tmp_path / "mae.pth")
    clip = {k: torch.randn_like(v) for k, v in model.text_encoder.state_dict().items()}
    clip["positional_embedding"] = torch.randn(77, 32)
    clip["visual.proj"] = torch.randn(3, 3)
    torch.save(clip, tmp_path / "clip.pt")
    initial_weights(str(tmp_path / "mae.pth"), str(tmp_path / "clip.pt"), str(tmp_path / "init.pth"), (64, 64))
    report = posecore.load_weights(model, tmp_path / "init.pth", warn=False)
    assert not report.unexpected and not report.mismatched
    loaded = model.state_dict()
    torch.testing.assert_close(loaded["text_encoder.positional_embedding"], clip["positional_embedding"][:13])
    torch.testing.assert_close(loaded["backbone.blocks.0.attn.qkv.weight"], mae["blocks.0.attn.qkv.weight"])
    assert loaded["backbone.pos_embed"].shape == (1, 17, 48)
    torch.testing.assert_close(loaded["backbone.pos_embed"][:, :1], mae["pos_embed"][:, :1])
    torch.testing.assert_close(loaded["backbone.last_norm.weight"], reference["backbone.last_norm.weight"])
    assert all(k.startswith(("backbone.", "text_encoder.")) for k in set(reference) - set(report.missing))


def test_v1_checkpoints_load_into_a_version_1_model(tmp_path: Path) -> None:
    """The pre-Guided-Module layout (``pgvl.`` fusion with ``downt``/``downv`` nodes, ``my_up``
    text projection, no ``my_up1``) loads strictly with ``version: 1`` and is refused by v2."""
    torch.manual_seed(0)
    source = _tiny(version=1, parse_dims=(48, 32), depths=(2, 2), splits=((2, 2), (2, 2)), target_dim=48, mode=3)
    released = {("pgvl." + key[len("my."):] if key.startswith("my.") else key): tensor
                for key, tensor in to_official(source.state_dict()).items()}
    assert "my_up.weight" in released and not any(key.startswith("my_up1.") for key in released)
    assert any(".downt." in key for key in released) and not any("node_w" in key for key in released)
    path = tmp_path / "v1.pth"
    torch.save(mmcv_checkpoint(released), path)
    target = _tiny(version=1, parse_dims=(48, 32), depths=(2, 2), splits=((2, 2), (2, 2)), target_dim=48, mode=3)
    assert posecore.load_weights(target, path, strict=True).clean
    with pytest.raises(posecore.CheckpointError, match="version"):
        posecore.load_weights(_tiny(), path)
