"""ViTPose++'s mixture-of-experts ViT: routing, the split equivalence, shapes read from files,
parity with Hugging Face transformers' VitPose (num_experts / part_features), and its GFLOPs."""

from __future__ import annotations

import pytest
import torch
from posecore_posebh.model import PoseBHModel
from posecore_posebh.vit_moe import ExpertMlp, ViTMoE, merge_expert, read_moe_shapes

from posecore.models import HeatmapDeconvHead, ViT

TINY = {"arch": "small", "embed_dim": 32, "depth": 2, "num_heads": 4, "input_size": (48, 64)}


def _moe(**overrides: object) -> ViTMoE:
    torch.manual_seed(0)
    return ViTMoE(**{**TINY, "num_experts": 3, "part_features": 8, **overrides}).eval()


def test_expert_layout_uses_the_original_names_and_p_from_the_arch() -> None:
    vit = _moe()
    state = vit.state_dict()
    assert tuple(state["blocks.0.mlp.fc2.weight"].shape) == (24, 128)  # D - P shared rows
    assert tuple(state["blocks.1.mlp.experts.2.weight"].shape) == (8, 128)
    with torch.device("meta"):
        assert ViTMoE("small").part_features == 96  # the released S file, not its config's 192
        assert ViTMoE("base").part_features == 192 and ViTMoE("huge").part_features == 320
    assert vit.layer_id("blocks.1.mlp.experts.2.weight") == 2  # experts decay with their block


def test_each_sample_takes_its_own_expert_in_any_batch_order() -> None:
    vit = _moe()
    images = torch.randn(4, 3, 64, 48)
    index = torch.tensor([2, 0, 2, 1])
    with torch.no_grad():
        mixed = vit(images, dataset_index=index)  # not grouped: the scatter path
        alone = torch.cat([vit(images[i:i + 1], dataset_index=index[i:i + 1]) for i in range(4)])
        order = torch.argsort(index, stable=True)
        grouped = vit(images[order], dataset_index=index[order])[torch.argsort(order)]  # the slice path
    torch.testing.assert_close(mixed, alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(grouped, alone, rtol=0, atol=1e-5)
    assert not torch.allclose(vit(images[:1], dataset_index=torch.tensor([0])),
                              vit(images[:1], dataset_index=torch.tensor([1])))
    torch.testing.assert_close(vit(images[:2]), vit(images[:2], dataset_index=torch.zeros(2, dtype=torch.long)))
    with pytest.raises(ValueError, match="dataset index 3 has no expert"):
        vit(images[:1], dataset_index=torch.tensor([3]))


def test_one_dataset_of_the_moe_vit_is_the_plain_vit_with_its_expert_merged() -> None:
    moe = _moe()
    plain = ViT(**TINY).eval()
    plain.load_state_dict(merge_expert(moe.state_dict(), 1, prefix=""), strict=True)
    images = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(plain(images), moe(images, dataset_index=torch.tensor([1, 1])), rtol=0, atol=1e-5)


def test_shapes_are_read_from_the_tensors() -> None:
    vit = _moe(depth=3)
    state = {f"backbone.{k}": v for k, v in vit.state_dict().items()}
    assert read_moe_shapes(state) == read_moe_shapes(vit.state_dict())
    shapes = read_moe_shapes(state)
    assert (shapes.embed_dim, shapes.depth, shapes.num_experts, shapes.part_features) == (32, 3, 3, 8)
    with pytest.raises(Exception, match="not a ViTPose\\+\\+"):
        read_moe_shapes(ViT(**TINY).state_dict())


def test_expert_width_is_validated() -> None:
    with pytest.raises(Exception, match="part_features must be in 1..31"):
        ExpertMlp(32, 128, part_features=32)


# ---------------------------------------------------------------------------------------------
# Hugging Face transformers' VitPose with experts


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator)
                tensor.copy_(noise.abs() + 0.5 if name.endswith("running_var") else tensor + 0.05 * noise)
    return model.eval()


def test_hf_vitpose_with_experts_gives_the_same_heatmaps_per_dataset() -> None:
    from posecore._checkpoint import convert_state_dict
    from posecore._plugins import get_host

    transformers = pytest.importorskip("transformers")
    backbone = transformers.VitPoseBackboneConfig(
        image_size=[64, 48], patch_size=[16, 16], hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        layer_norm_eps=1e-6, out_indices=[2], num_experts=2, part_features=16,
    )
    torch.manual_seed(0)
    hf = _randomised(transformers.VitPoseForPoseEstimation(transformers.VitPoseConfig(backbone_config=backbone,
                                                                                     num_labels=5,
                                                                                     use_simple_decoder=False)))
    ours = PoseBHModel(ViTMoE("small", embed_dim=64, depth=2, num_heads=4, num_experts=2, part_features=16,
                              input_size=(48, 64)),
                       [HeatmapDeconvHead(64, 5), HeatmapDeconvHead(64, 3)], dataset_names=("a", "b"),
                       input_size=(48, 64)).eval()
    name, converted = convert_state_dict(hf.state_dict(), converter="vitpose-hf", registries=get_host().registries)
    state = {k.replace("head.", "heads.0.", 1) if k.startswith("head.") else k: v for k, v in converted.items()}
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected and all(key.startswith("heads.1.") for key in missing)
    assert any(".mlp.experts.1." in key for key in state)
    images = torch.randn(3, 3, 64, 48)
    index = torch.tensor([1, 0, 1])
    with torch.no_grad():
        expected = hf(pixel_values=images, dataset_index=index).heatmaps
        heatmaps = ours.heads[0](ours.features(images, index))
    assert heatmaps.shape == expected.shape == (3, 5, 16, 12)
    assert (heatmaps - expected).abs().max() <= 1e-4


# ---------------------------------------------------------------------------------------------
# complexity


def test_vitpose_plus_b_backbone_gflops_are_vitpose_b_s() -> None:
    """Each sample runs one expert, so ViTPose++-B's backbone costs ViT-B's 17.1 GFLOPs at 256x192
    (ViTPose paper, Table 1), to the multiply-accumulate."""
    from posecore.analysis import measure_complexity

    torch.manual_seed(0)
    vit = ViTMoE("base", input_size=(192, 256))

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = vit

        def forward(self, batch: dict) -> torch.Tensor:
            return self.backbone(batch["image"], dataset_index=batch["dataset_index"])

    complexity = measure_complexity(Wrapper(), {"image": torch.randn(1, 3, 256, 192),
                                                "dataset_index": torch.tensor([3])})
    attention = 12 * 2 * 192 * 192 * 768
    linear_and_patch = 12 * 192 * 768 * (3 * 768 + 768 + 2 * 3072) + 192 * 768 * 3 * 16 * 16
    assert complexity.macs == attention + linear_and_patch
    assert complexity.macs / 1e9 == pytest.approx(17.1, rel=0.03)
