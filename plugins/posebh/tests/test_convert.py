"""Loading the released files: ``vitpose+_*.pth`` (ViTPose++) and PoseBH's ``base.pth``.

The files are built here with exactly the original keys and shapes (written down from the
original repositories, not from this plugin's models), saved as mmcv saves them (a dict with
``state_dict`` and ``meta``), and loaded through posecore's loader: every key must find its
place. Then the split (``tools/model_split.py``) and prototype removal (``tools/remove_proto.py``)
converters.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from posecore_posebh.model import PoseBHTransferModel, cluster_keypoints
from posecore_posebh.proto_head import PrototypeHead

import posecore
from posecore import load_weights
from posecore._checkpoint import convert_state_dict
from posecore._plugins import get_host
from posecore.data import load_metainfo
from posecore.engine._builder import build_model
from posecore.models import HeatmapDeconvHead, TopdownHeatmapModel, ViT

#: The released datasets' keypoint counts, head 0 being ``keypoint_head``.
RELEASED_KEYPOINTS = (17, 14, 16, 17, 17, 133)


def _bn(prefix: str, channels: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": torch.rand(channels) + 0.5, f"{prefix}.bias": torch.randn(channels) * 0.1,
            f"{prefix}.running_mean": torch.randn(channels) * 0.1, f"{prefix}.running_var": torch.rand(channels) + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(1000)}


def _w(*shape: int) -> torch.Tensor:
    return torch.randn(*shape) * 0.02


def original_vitpose_plus(width: int, depth: int, expert: int, cls_token: bool = True) -> dict[str, torch.Tensor]:
    """``vitpose+_*.pth``'s state_dict: the MoE ViT and six heads, keys and shapes as released."""
    torch.manual_seed(0)
    state = {"backbone.patch_embed.proj.weight": _w(width, 3, 16, 16), "backbone.patch_embed.proj.bias": _w(width),
             "backbone.pos_embed": _w(1, 193, width)}
    if cls_token:
        state["backbone.cls_token"] = _w(1, 1, width)
    for i in range(depth):
        block = f"backbone.blocks.{i}"
        state.update({
            f"{block}.norm1.weight": torch.ones(width), f"{block}.norm1.bias": _w(width),
            f"{block}.attn.qkv.weight": _w(3 * width, width), f"{block}.attn.qkv.bias": _w(3 * width),
            f"{block}.attn.proj.weight": _w(width, width), f"{block}.attn.proj.bias": _w(width),
            f"{block}.norm2.weight": torch.ones(width), f"{block}.norm2.bias": _w(width),
            f"{block}.mlp.fc1.weight": _w(4 * width, width), f"{block}.mlp.fc1.bias": _w(4 * width),
            f"{block}.mlp.fc2.weight": _w(width - expert, 4 * width), f"{block}.mlp.fc2.bias": _w(width - expert),
        })
        for j in range(6):
            state[f"{block}.mlp.experts.{j}.weight"] = _w(expert, 4 * width)
            state[f"{block}.mlp.experts.{j}.bias"] = _w(expert)
    state.update({"backbone.last_norm.weight": torch.ones(width), "backbone.last_norm.bias": _w(width)})
    for d, keypoints in enumerate(RELEASED_KEYPOINTS):
        head = "keypoint_head" if d == 0 else f"associate_keypoint_heads.{d - 1}"
        state.update({f"{head}.deconv_layers.0.weight": _w(width, 256, 4, 4), **_bn(f"{head}.deconv_layers.1", 256),
                      f"{head}.deconv_layers.3.weight": _w(256, 256, 4, 4), **_bn(f"{head}.deconv_layers.4", 256),
                      f"{head}.final_layer.weight": _w(keypoints, 256, 1, 1), f"{head}.final_layer.bias": _w(keypoints)})
    return state


def original_proto_head(width: int, keypoints: int = 214, clusters: int = 96, trained_clusters: bool = True
                        ) -> dict[str, torch.Tensor]:
    """PoseBH's ``proto_head.*`` keys and shapes (KptProtoHead, res neck, head kernel 3)."""
    torch.manual_seed(1)
    head = "proto_head"
    bank = torch.nn.functional.normalize(torch.randn(keypoints, 3, 64), dim=-1)
    state = {
        f"{head}.deconv_layers.0.weight": _w(width, 256, 4, 4), **_bn(f"{head}.deconv_layers.1", 256),
        f"{head}.deconv_layers.3.weight": _w(256, 256, 4, 4), **_bn(f"{head}.deconv_layers.4", 256),
        f"{head}.neck.conv1.weight": _w(64, 256, 3, 3), f"{head}.neck.conv1.bias": _w(64), **_bn(f"{head}.neck.bn1", 64),
        f"{head}.neck.conv2.weight": _w(64, 64, 3, 3), f"{head}.neck.conv2.bias": _w(64), **_bn(f"{head}.neck.bn2", 64),
        f"{head}.neck.downsample.0.weight": _w(64, 256, 1, 1), **_bn(f"{head}.neck.downsample.1", 64),
        f"{head}.head.0.weight": _w(64, 64, 3, 3), f"{head}.head.0.bias": _w(64), **_bn(f"{head}.head.1", 64),
        f"{head}.head.3.weight": _w(64, 64, 1, 1), f"{head}.head.3.bias": _w(64),
        f"{head}.kpt_prototype.prototypes": bank,
    }
    if trained_clusters:  # each cluster: three sub-prototypes copied from the bank, as CPS builds them
        picks = torch.randperm(keypoints * 3)[: clusters * 3].reshape(clusters, 3)
        state[f"{head}.cluster_prototype.prototypes"] = bank.reshape(-1, 64)[picks]
    else:
        state[f"{head}.cluster_prototype.prototypes"] = torch.nn.functional.normalize(torch.randn(clusters, 3, 64), dim=-1)
    return state


def _save_mmcv(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save({"meta": {"epoch": 100, "iter": 12345, "mmcv_version": "1.4.8", "CLASSES": None,
                         "fp16": {"loss_scaler": {"scale": 16384.0, "growth_factor": 2.0}}},
                "state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def vitpose_plus_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vitpose+_small.pth: D 384, 12 blocks, P 96 (fc2 288 rows), as released (its config says 192)."""
    return _save_mmcv(original_vitpose_plus(384, 12, 96), tmp_path_factory.mktemp("weights") / "vitpose+_small.pth")


def test_vitpose_plus_small_loads_into_its_preset_with_every_key_placed(vitpose_plus_small: Path) -> None:
    model = build_model(posecore.get_preset("vitpose+-s-mdt-256x192"), get_host().registries)
    report = load_weights(model, vitpose_plus_small, strict=True)
    assert report.converter == "posebh-mmpose0x"
    assert report.clean and (report.missing, report.unexpected, report.mismatched) == ((), (), ())
    assert report.dropped == (("backbone.cls_token", "ViTPose's forward never uses a class token"),)
    model.eval()
    batch = {"image": torch.randn(1, 3, 256, 192), "dataset_index": torch.tensor([5]),
             "meta": [load_metainfo("coco_wholebody")]}
    result = model.predict(batch, flip_test=True)  # the WholeBody expert and head
    assert tuple(result.keypoints.shape) == (1, 133, 2) and torch.isfinite(result.keypoints).all()


def test_the_expert_width_is_read_from_the_file_not_the_config(vitpose_plus_small: Path) -> None:
    """A model built with ViTPose++-S's configured P = 192 takes the file's P = 96 on load (fc2
    and experts rebuilt before the keys are compared), and then predicts what the preset does."""
    from posecore.config import apply_overrides

    as_configured = build_model(apply_overrides(posecore.get_preset("vitpose+-s-mdt-256x192"),
                                                ["model.backbone.part_features=192"]), get_host().registries)
    assert as_configured.backbone.part_features == 192
    report = load_weights(as_configured, vitpose_plus_small, strict=True)
    assert report.clean and as_configured.backbone.part_features == 96
    assert tuple(as_configured.backbone.blocks[0].mlp.experts[3].weight.shape) == (96, 4 * 384)
    preset = build_model(posecore.get_preset("vitpose+-s-mdt-256x192"), get_host().registries)
    load_weights(preset, vitpose_plus_small, strict=True)
    batch = {"image": torch.randn(2, 3, 256, 192), "dataset_index": torch.tensor([3, 3])}
    with torch.no_grad():
        torch.testing.assert_close(as_configured.eval()(batch), preset.eval()(batch))


@pytest.mark.parametrize(("size", "width", "depth", "expert"),
                         [("b", 768, 12, 192), ("l", 1024, 24, 256), ("h", 1280, 32, 320)])
def test_vitpose_plus_base_large_huge_keys_and_shapes_match_their_presets(size: str, width: int, depth: int,
                                                                        expert: int) -> None:
    """vitpose+_{base,large,huge}.pth, on the meta device (no memory, no arithmetic): after the
    recognised conversion every released key has its place in the preset's model, with its shape."""
    with torch.device("meta"):
        state = original_vitpose_plus(width, depth, expert)
        model = build_model(posecore.get_preset(f"vitpose+-{size}-mdt-256x192"), get_host().registries)
    expected = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    name, converted = convert_state_dict(state, expected=model.state_dict(), registries=get_host().registries)
    assert name == "posebh-mmpose0x" and list(converted.dropped) == ["backbone.cls_token"]
    assert {key: tuple(tensor.shape) for key, tensor in converted.items()} == expected


def test_posebh_base_loads_into_every_posebh_b_preset(tmp_path: Path) -> None:
    state = {**original_vitpose_plus(768, 12, 192, cls_token=False), **original_proto_head(768)}
    path = _save_mmcv(state, tmp_path / "base.pth")
    model = build_model(posecore.get_preset("posebh-b-aic-256x192"), get_host().registries)
    report = load_weights(model, path, strict=True)
    assert report.converter == "posebh-mmpose0x" and report.clean and not report.dropped
    assert len(model.state_dict()) == len(state) + 1  # + the clusters' keypoints, recovered from the tensors
    clusters = model.proto_head.cluster_prototype
    assert clusters.ready and tuple(clusters.prototypes.shape) == (96, 3, 64)
    model.eval()
    batch = {"image": torch.randint(0, 255, (1, 3, 256, 192), dtype=torch.uint8),
             "meta": [load_metainfo("aic")]}
    result = model.predict(batch, flip_test=True)  # model.dataset = aic: the AIC expert and head
    assert tuple(result.keypoints.shape) == (1, 14, 2) and torch.isfinite(result.scores).all()
    with torch.no_grad():
        aic = model.heads[1](model.backbone(model.normalizer(batch["image"]), dataset_index=torch.tensor([1])))
        assert (aic - model(batch)).abs().max() == 0


def test_cluster_keypoints_are_recovered_or_marked_as_placeholders() -> None:
    trained = original_proto_head(16, keypoints=10, clusters=4)
    bank, clusters = trained["proto_head.kpt_prototype.prototypes"], trained["proto_head.cluster_prototype.prototypes"]
    keypoints = cluster_keypoints(bank, clusters)
    for cluster, keypoint in zip(clusters, keypoints.tolist(), strict=True):
        assert any(torch.allclose(cluster[0], vector) for vector in bank[keypoint])
    placeholder = original_proto_head(16, keypoints=10, clusters=4, trained_clusters=False)
    assert cluster_keypoints(bank, placeholder["proto_head.cluster_prototype.prototypes"]).tolist() == [-1] * 4


# ---------------------------------------------------------------------------------------------
# split and prototype removal


def _tiny_original() -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """A tiny multi-dataset file in the original layout (D 32, 2 blocks, P 8, two heads, proto head)."""
    from posecore_posebh.model import PoseBHModel
    from posecore_posebh.vit_moe import ViTMoE

    torch.manual_seed(0)
    model = PoseBHModel(ViTMoE("small", embed_dim=32, depth=2, num_heads=2, num_experts=2, part_features=8),
                        [HeatmapDeconvHead(32, 5), HeatmapDeconvHead(32, 3)],
                        PrototypeHead(32, [5, 3], num_clusters=4), dataset_names=("a", "b"), cluster_options=(2, 4))
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.add_(0.05 * torch.randn_like(tensor))
    renamed = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("heads.0."):
            key = "keypoint_head." + key[len("heads.0."):]
        elif key.startswith("heads.1."):
            key = "associate_keypoint_heads.0." + key[len("heads.1."):]
        if key != "proto_head.cluster_prototype.keypoints":
            renamed[key] = tensor
    return renamed, model


@pytest.mark.parametrize("dataset", [0, 1])
def test_split_gives_the_plain_vitpose_of_one_dataset(dataset: int) -> None:
    from posecore_posebh.model import split_aic, split_coco

    original, moe = _tiny_original()
    converted = (split_coco if dataset == 0 else split_aic)(original)
    plain = TopdownHeatmapModel(ViT("small", embed_dim=32, depth=2, num_heads=2), HeatmapDeconvHead(32, (5, 3)[dataset]))
    proto = {k: v for k, v in converted.items() if k.startswith("proto_head.")}
    assert proto and all(k in original for k in proto)  # kept, as the original tool keeps it
    plain.load_state_dict({k: v for k, v in converted.items() if not k.startswith("proto_head.")}, strict=True)
    assert set(converted.dropped) == {k for k in original if (".experts." in k) or
                                      k.startswith("keypoint_head." if dataset else "associate_keypoint_heads.")}
    plain.eval()
    moe.eval()
    images = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        expected = moe.heads[dataset](moe.backbone(images, dataset_index=torch.full((2,), dataset)))
        torch.testing.assert_close(plain({"image": images}), expected, rtol=0, atol=1e-5)
    # The posecore layout splits the same way.
    ours = {k: v for k, v in moe.state_dict().items()}
    again = (split_coco if dataset == 0 else split_aic)(ours)
    assert all(torch.equal(again[k], v) for k, v in converted.items())


def test_split_refuses_a_file_that_is_already_split() -> None:
    from posecore_posebh.model import split_coco

    original, _ = _tiny_original()
    once = split_coco(original)
    with pytest.raises(posecore.CheckpointError, match="no experts"):
        split_coco(dict(once))


def _official_split(original: dict[str, torch.Tensor], dataset: int) -> dict[str, torch.Tensor]:
    """What ViTPose++'s ``tools/model_split.py`` writes for ``dataset`` (its behaviour, described):
    every ``fc2`` takes the expert's rows and the experts stay in (its removal tests the key list,
    not the key); for dataset 0 every head stays, for another that dataset's head becomes
    ``keypoint_head`` and the associate heads go."""
    written = dict(original)
    for key in original:
        if ".mlp.fc2." in key:
            written[key] = torch.cat([original[key], original[key.replace(".fc2.", f".experts.{dataset}.")]])
    if dataset:
        own = f"associate_keypoint_heads.{dataset - 1}."
        for key in original:
            if key.startswith("associate_keypoint_heads."):
                del written[key]
                if key.startswith(own):
                    written["keypoint_head." + key[len(own):]] = original[key]
    return written


@pytest.mark.parametrize("dataset", [0, 1])
def test_split_recognises_the_official_split_output(dataset: int) -> None:
    """An official split file loads as what it is: fc2 not merged a second time, its keypoint_head
    the head, the experts it still holds dropped; the same model as splitting the original."""
    from posecore_posebh.model import mmpose0x, split_aic, split_coco

    original, _ = _tiny_original()
    split = (split_coco, split_aic)[dataset]
    official = _official_split(original, dataset)
    expected, converted = split(original), split(official)
    assert set(converted) == set(expected)
    assert all(torch.equal(converted[key], tensor) for key, tensor in expected.items())
    assert tuple(converted["backbone.blocks.1.mlp.fc2.weight"].shape) == (32, 128)  # D rows, not D + P
    assert {k for k in converted.dropped if ".experts." in k} == {k for k in original if ".experts." in k}
    other = (split_aic, split_coco)[dataset]
    with pytest.raises(posecore.CheckpointError, match=f"already split .*holds expert {dataset}"):
        other(official)
    with pytest.raises(posecore.CheckpointError, match="tools/model_split.py output"):
        mmpose0x(official)  # one dataset's model is not the six-head model


def test_split_then_remove_proto_initialises_the_transfer_model(tmp_path: Path) -> None:
    from posecore_posebh.model import remove_proto, split_coco

    original, moe = _tiny_original()
    no_proto = remove_proto(split_coco(original))
    assert list(no_proto.dropped) == ["proto_head.kpt_prototype.prototypes"]
    path = tmp_path / "coco_no_proto.pth"
    torch.save({"state_dict": dict(no_proto)}, path)
    torch.manual_seed(3)
    transfer = PoseBHTransferModel(ViT("small", embed_dim=32, depth=2, num_heads=2), HeatmapDeconvHead(32, 21),
                                   PrototypeHead(32, [21], hard_assignment=True))
    with pytest.warns(UserWarning, match="wrong shape"):
        report = load_weights(transfer, path)
    assert report.converter is None  # posecore's own names: backbone.*, head.*, proto_head.*
    assert {k for k, _, _ in report.mismatched} == {"head.final_layer.weight", "head.final_layer.bias"}
    assert report.missing == ("proto_head.kpt_prototype.prototypes",)  # fresh prototypes for the 21 hand joints
    assert set(report.unexpected) == {"proto_head.cluster_prototype.prototypes"}
    torch.testing.assert_close(transfer.proto_head.neck.conv1.weight, moe.proto_head.neck.conv1.weight)


def test_posecore_convert_splits_vitpose_plus_for_the_core_vitpose_preset(vitpose_plus_small: Path,
                                                                         tmp_path: Path) -> None:
    target = tmp_path / "vitpose+_small_coco.pth"
    result = subprocess.run([sys.executable, "-m", "posecore", "convert", "--converter", "posebh-split-coco",
                             str(vitpose_plus_small), str(target), "--preset", "vitpose-s-coco-256x192", "--strict"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "0 missing, 0 unexpected, 0 wrong shape" in result.stdout
    written = torch.load(target, weights_only=True)["state_dict"]
    original = torch.load(vitpose_plus_small, weights_only=True)["state_dict"]
    torch.testing.assert_close(written["backbone.blocks.3.mlp.fc2.weight"],
                               torch.cat([original["backbone.blocks.3.mlp.fc2.weight"],
                                          original["backbone.blocks.3.mlp.experts.0.weight"]]))
    assert torch.equal(written["head.final_layer.weight"], original["keypoint_head.final_layer.weight"])


def test_recognition_prefers_the_posebh_layout_over_the_core_one() -> None:
    original, moe = _tiny_original()
    name, converted = convert_state_dict(original, expected=moe.state_dict(), registries=get_host().registries)
    assert name == "posebh-mmpose0x" and set(converted) == set(moe.state_dict())


# ---------------------------------------------------------------------------------------------
# Hugging Face ViTPose++


def test_a_hugging_face_vitpose_plus_folder_loads_into_the_named_datasets_head(tmp_path: Path) -> None:
    """transformers' VitPoseForPoseEstimation with experts (one head) loads into the multi-dataset
    model through posecore.load_weights, its head as the named dataset's; with that dataset chosen
    the model predicts the heatmaps transformers does for that dataset index."""
    from posecore_posebh.model import PoseBHModel
    from posecore_posebh.vit_moe import ViTMoE

    transformers = pytest.importorskip("transformers")
    backbone = transformers.VitPoseBackboneConfig(
        image_size=[64, 48], patch_size=[16, 16], hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        layer_norm_eps=1e-6, out_indices=[2], num_experts=2, part_features=16,
    )
    torch.manual_seed(0)
    hf = transformers.VitPoseForPoseEstimation(transformers.VitPoseConfig(backbone_config=backbone, num_labels=3,
                                                                          use_simple_decoder=False))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, tensor in hf.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator)
                tensor.copy_(noise.abs() + 0.5 if key.endswith("running_var") else tensor + 0.05 * noise)
    hf.eval().save_pretrained(tmp_path / "vitpose-plus-tiny")
    ours = PoseBHModel(ViTMoE("small", embed_dim=64, depth=2, num_heads=4, num_experts=2, part_features=8,
                              input_size=(48, 64)),
                       [HeatmapDeconvHead(64, 5), HeatmapDeconvHead(64, 3)], dataset_names=("a", "b"), dataset="b",
                       input_size=(48, 64))
    with pytest.warns(UserWarning, match="missing"):
        report = load_weights(ours, tmp_path / "vitpose-plus-tiny", converter="posebh-hf-aic")  # dataset 1
    assert report.converter == "posebh-hf-aic" and not report.unexpected and not report.mismatched
    assert report.missing and all(key.startswith("heads.0.") for key in report.missing)
    assert ours.backbone.part_features == 16  # from the file's experts
    images = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        expected = hf(pixel_values=images, dataset_index=torch.tensor([1, 1])).heatmaps
        heatmaps = ours.eval()({"image": images})
    assert heatmaps.shape == expected.shape == (2, 3, 16, 12)
    assert (heatmaps - expected).abs().max() <= 1e-4
    plain = {k: v for k, v in hf.state_dict().items() if ".experts." not in k}
    with pytest.raises(posecore.CheckpointError, match="no experts"):
        get_host().registries.converters.get("posebh-hf-coco").resolve()(plain)
