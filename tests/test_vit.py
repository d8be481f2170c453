"""The ``vit`` backbone, the ViTPose heads, the ViTPose presets and their parameter/GFLOP figures."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import posecore
from posecore._inference import prepare_for_inference
from posecore.models._heads import HeatmapDeconvHead, HeatmapSimpleHead
from posecore.models._vit import InferenceLinear, ViT

TINY = {"embed_dim": 32, "depth": 3, "num_heads": 4, "input_size": (48, 64)}


def _tiny(**overrides) -> ViT:
    torch.manual_seed(0)
    return ViT(**{**TINY, **overrides}).eval()


# ---------------------------------------------------------------------------------------------
# backbone


@pytest.mark.parametrize(("arch", "width", "depth", "heads"),
                         [("small", 384, 12, 12), ("base", 768, 12, 12), ("large", 1024, 24, 16), ("huge", 1280, 32, 16)])
def test_arch_sizes(arch: str, width: int, depth: int, heads: int) -> None:
    with torch.device("meta"):  # the sizes, without allocating ViT-H
        vit = ViT(arch)
    assert (vit.out_channels, len(vit.blocks), vit.blocks[0].attn.num_heads) == (width, depth, heads)
    assert vit.num_layers == depth and vit.stride == 16
    assert tuple(vit.pos_embed.shape) == (1, 16 * 12 + 1, width)  # 256x192 with ViTPose's padding 2
    assert tuple(vit.patch_embed.proj.weight.shape) == (width, 3, 16, 16) and vit.patch_embed.proj.padding == (2, 2)


def test_invalid_arguments_name_the_field() -> None:
    with pytest.raises(posecore.ConfigError, match="vit.arch must be one of small, base, large, huge; got 'giant'"):
        ViT("giant")
    with pytest.raises(posecore.ConfigError, match=r"vit.embed_dim \(30\) must be a multiple of vit.num_heads \(4\)"):
        ViT(embed_dim=30, num_heads=4, depth=1)
    with pytest.raises(posecore.ConfigError, match="vit.drop_path_rate"):
        ViT(embed_dim=32, num_heads=4, depth=1, drop_path_rate=1.0)


def test_feature_map_shape_and_padding() -> None:
    vit = _tiny()
    features = vit(torch.randn(2, 3, 64, 48))
    assert tuple(features.shape) == (2, 32, 4, 3)  # (64 + 4 - 16) // 16 + 1 = 4, (48 + 4 - 16) // 16 + 1 = 3
    assert features.is_contiguous(memory_format=torch.channels_last)  # the tokens, viewed without a copy


def test_the_class_slot_is_added_to_every_token() -> None:
    """A class-slot vector v is the same as adding v to the patch projection's bias."""
    vit = _tiny()
    shifted = _tiny()
    with torch.no_grad():
        slot = torch.randn(32)
        vit.pos_embed[0, 0] = slot
        shifted.pos_embed[0, 0] = 0.0
        shifted.patch_embed.proj.bias += slot
    images = torch.randn(2, 3, 64, 48)
    torch.testing.assert_close(vit(images), shifted(images), rtol=0, atol=1e-5)


def test_other_input_sizes_resize_the_position_embedding() -> None:
    """Running a 64x48 model on 128x96 crops equals a 128x96 model holding the bicubically
    resized embedding (slot 0 kept)."""
    small = _tiny()
    large = _tiny(input_size=(96, 128))
    state = small.state_dict()
    grid = state["pos_embed"][:, 1:].reshape(1, 4, 3, 32).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(8, 6), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    state["pos_embed"] = torch.cat([state["pos_embed"][:, :1], resized], 1)
    large.load_state_dict(state)
    images = torch.randn(1, 3, 128, 96)
    features = small(images)
    assert tuple(features.shape) == (1, 32, 8, 6)
    torch.testing.assert_close(features, large(images), rtol=0, atol=1e-5)


def test_drop_path_rises_linearly_and_only_acts_in_training() -> None:
    vit = _tiny(depth=5, drop_path_rate=0.4)
    rates = [getattr(block.drop_path1, "drop_prob", 0.0) for block in vit.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    images = torch.randn(8, 3, 64, 48)
    torch.testing.assert_close(vit(images), vit(images))
    vit.train()
    torch.manual_seed(1)
    first = vit(images)
    assert not torch.allclose(first, vit(images))


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients() -> None:
    plain, checkpointed = _tiny().train(), _tiny(grad_checkpointing=True).train()
    images = torch.randn(2, 3, 64, 48)
    outputs = [model(images) for model in (plain, checkpointed)]
    torch.testing.assert_close(outputs[0], outputs[1])
    for output in outputs:
        output.square().mean().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_layer_ids_for_layer_wise_lr_decay() -> None:
    vit = _tiny()
    assert vit.num_layers == 3
    ids = {name: vit.layer_id(name) for name, _ in vit.named_parameters()}
    assert ids["patch_embed.proj.weight"] == ids["pos_embed"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1 and ids["blocks.2.mlp.fc2.bias"] == 3
    assert ids["last_norm.weight"] == 4
    assert set(ids.values()) == {0, 1, 2, 3, 4}
    assert vit.no_weight_decay() == {"pos_embed"}


def test_the_trainer_builds_layer_decay_groups_from_it() -> None:
    optim = pytest.importorskip("posecore.engine._optim")
    from posecore.config import OptimizerConfig

    model = nn.ModuleDict({"backbone": _tiny(), "head": nn.Linear(32, 5)})
    groups = optim.build_param_groups(model, OptimizerConfig(lr=1e-3, weight_decay=0.1, layer_decay=0.5))
    scale = {name: group["lr_scale"] for group in groups for name in group["names"]}
    assert scale["backbone.pos_embed"] == scale["backbone.patch_embed.proj.weight"] == 0.5**4
    assert scale["backbone.blocks.0.attn.qkv.weight"] == 0.5**3
    assert scale["backbone.blocks.2.attn.qkv.weight"] == 0.5
    assert scale["backbone.last_norm.weight"] == scale["head.weight"] == 1.0
    decay = {name: group["weight_decay"] for group in groups for name in group["names"]}
    assert decay["backbone.pos_embed"] == 0.0 and decay["backbone.blocks.0.mlp.fc1.weight"] == 0.1


class ExpertMlp(Mlp):
    """A ViTPose++-style FFN: shared fc1/fc2 for the first channels, one expert per dataset for
    the last ``part`` channels, picked per sample."""

    def __init__(self, in_features: int, hidden_features: int, num_experts: int = 2, part: int = 8,
                 **kwargs: object) -> None:
        super().__init__(in_features, hidden_features, out_features=in_features - part, **kwargs)
        self.experts = nn.ModuleList(nn.Linear(hidden_features, part) for _ in range(num_experts))

    def forward(self, tokens: torch.Tensor, dataset_index: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.act(self.fc1(tokens))
        experts = torch.stack([expert(hidden) for expert in self.experts], 1)  # (B, E, N, part)
        index = torch.zeros(len(tokens), dtype=torch.long) if dataset_index is None else dataset_index
        chosen = experts[torch.arange(len(tokens)), index]
        return torch.cat([self.fc2(hidden), chosen], -1)


def test_a_plugin_swaps_the_mlp_and_routes_samples_by_dataset() -> None:
    vit = _tiny(mlp_layer=partial(ExpertMlp, num_experts=2, part=8))
    assert "blocks.1.mlp.experts.1.weight" in vit.state_dict()  # ViTPose++'s key names
    assert tuple(vit.state_dict()["blocks.0.mlp.fc2.weight"].shape) == (24, 128)
    images = torch.randn(1, 3, 64, 48).expand(2, -1, -1, -1)
    features = vit(images, dataset_index=torch.tensor([0, 1]))
    assert not torch.allclose(features[0], features[1])  # same image, different experts
    torch.testing.assert_close(features[0], vit(images[:1], dataset_index=torch.tensor([0]))[0])


def test_a_plain_vit_refuses_a_dataset_index() -> None:
    with pytest.raises(ValueError, match="dataset_index was given but this ViT's MLP has no experts"):
        _tiny()(torch.randn(1, 3, 64, 48), dataset_index=torch.tensor([0]))


class _Ops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def test_inference_linears_take_onednn_without_grad_and_match_f_linear() -> None:
    linear = _tiny().blocks[0].mlp.fc1
    assert type(linear) is InferenceLinear
    tokens = torch.randn(2, 12, 32)
    with torch.no_grad(), _Ops() as inference:
        fast = linear(tokens)
    with _Ops() as training:
        slow = linear(tokens)
    assert "mkldnn._linear_pointwise" in inference.names or not torch.backends.mkldnn.is_available()
    assert "mkldnn._linear_pointwise" not in training.names and slow.requires_grad
    torch.testing.assert_close(fast, F.linear(tokens, linear.weight, linear.bias), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# heads


def test_simple_head_layout_relu_first() -> None:
    head = HeatmapSimpleHead(32, 5)
    assert sorted(head.state_dict()) == ["final_layer.bias", "final_layer.weight"]
    assert tuple(head.final_layer.weight.shape) == (5, 32, 3, 3)
    heatmaps = head(torch.randn(2, 32, 4, 3))
    assert tuple(heatmaps.shape) == (2, 5, 16, 12)
    with torch.no_grad():
        head.final_layer.bias.copy_(torch.arange(5.0))
        negative = head(-torch.rand(1, 32, 4, 3) - 0.1)  # ReLU zeroes them before the conv
    torch.testing.assert_close(negative, torch.arange(5.0).view(1, 5, 1, 1).expand(1, 5, 16, 12))
    keypoints, scores = head.decode(heatmaps)
    assert tuple(keypoints.shape) == (2, 5, 2) and head.heatmap_stride == 4.0


def test_heads_start_from_the_original_small_initialisation() -> None:
    torch.manual_seed(0)
    for head in (HeatmapSimpleHead(64, 17), HeatmapDeconvHead(64, 17)):
        convolutions = [m for m in head.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert all(abs(m.weight.std().item() - 0.001) < 2e-4 for m in convolutions)
        assert all(m.bias is None or not m.bias.any() for m in convolutions)


@pytest.mark.parametrize("kernel", [4, 3, 2])
def test_the_folded_deconv_head_predicts_as_the_trained_one(kernel: int) -> None:
    """``reparameterize`` (called by ``load_model(fuse=True)`` through timm) folds each BatchNorm,
    with running statistics a few training steps gave it, into its deconvolution."""
    torch.manual_seed(0)
    head = HeatmapDeconvHead(32, 5, deconv_channels=(16, 8), deconv_kernel=kernel)
    optimizer = torch.optim.SGD(head.parameters(), lr=1.0)
    for _ in range(3):  # moves the BN weights, biases and running statistics off their defaults
        head(torch.randn(4, 32, 6, 5)).square().mean().backward()
        optimizer.step()
    features = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        expected = head.eval()(features)
        model = prepare_for_inference(nn.Sequential(head))
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.ConvTranspose2d))
        torch.testing.assert_close(model(features), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# presets and complexity


@pytest.mark.parametrize(("size", "arch", "drop_path", "layer_decay"),
                         [("s", "small", 0.1, 0.8), ("b", "base", 0.3, 0.75), ("l", "large", 0.5, 0.8),
                          ("h", "huge", 0.55, 0.85)])
def test_vitpose_presets(size: str, arch: str, drop_path: float, layer_decay: float) -> None:
    name = f"vitpose-{size}-coco-256x192"
    config = posecore.get_preset(name)
    assert config.name == name
    backbone = config.model.args["backbone"]
    assert (backbone["type"], backbone["arch"], backbone["drop_path_rate"]) == ("vit", arch, drop_path)
    assert config.model.args["head"]["type"] == "heatmap_deconv"
    assert config.codec.type == "udp_heatmap"
    assert config.codec.args == {"input_size": [192, 256], "heatmap_size": [48, 64], "sigma": 2.0}
    optimizer = config.train.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay, optimizer.layer_decay) == ("adamw", 5e-4, 0.1, layer_decay)
    assert config.train.epochs == 210 and config.train.schedule.milestones == (170, 200)
    assert config.train.schedule.warmup_iters == 500 and config.train.grad_clip == 1.0
    assert [metric.type for metric in config.eval.metrics] == ["coco_ap"] and config.eval.flip_test
    assert config.data.val[0].args["bbox_file"].endswith("COCO_val2017_detections_AP_H_56_person.json")
    from posecore._plugins import get_host

    published = get_host().registries.presets.get(name).published
    assert {result.metric for result in published} == {"AP"} and all(result.source for result in published)


def test_vitpose_b_params_and_gflops_match_the_paper() -> None:
    """ViTPose-B at 256x192: 86M parameters and 17.1 GFLOPs for the backbone (ViTPose paper,
    Table 1), with attention's QK^T and AV counted; the classic head adds 4.2M and 1.4 G."""
    from posecore.analysis import measure_complexity

    torch.manual_seed(0)
    model = posecore.build_model(posecore.get_preset("vitpose-b-coco-256x192"))
    complexity = measure_complexity(model, model.example_batch(1))
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    head_params = sum(p.numel() for p in model.head.parameters())
    assert backbone_params / 1e6 == pytest.approx(86.0, rel=0.03)
    assert complexity.macs_by_module["backbone"] / 1e9 == pytest.approx(17.1, rel=0.03)
    assert head_params / 1e6 == pytest.approx(4.2, rel=0.03)
    assert complexity.macs_by_module["head"] / 1e9 == pytest.approx(1.42, rel=0.03)
    # attention's two products are part of the count: 12 blocks x 2 x (192 x 192 x 768) MACs
    attention = 12 * 2 * 192 * 192 * 768
    linear_and_patch = 12 * 192 * 768 * (3 * 768 + 768 + 2 * 3072) + 192 * 768 * 3 * 16 * 16
    assert complexity.macs_by_module["backbone"] == attention + linear_and_patch
