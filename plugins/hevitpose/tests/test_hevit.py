"""The reconstructed architecture: strides, the sandwich block, the cascaded group spatial-reduction
attention, and the presets' parameters and GFLOPs against the paper's table and figure."""

from __future__ import annotations

import pytest
import torch
from posecore_hevitpose.hevit import HEVIT_ARCHS, CGSRAttention, HEViT, HEViTBlock
from posecore_hevitpose.plugin import TABLE
from posecore_hevitpose.search import FIGURE_B, Candidate, count, search

import posecore
from posecore._plugins import get_host
from posecore.analysis import measure_complexity
from posecore.engine._builder import build_model

SMALL = {"widths": [16, 32, 32], "depths": [1, 1, 2], "groups": [1, 2, 2], "heads": [1, 1, 2], "sr_ratios": [4, 2, 1]}


def _meta_model(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(posecore.get_preset(name), get_host().registries)


def test_three_stages_at_strides_4_8_16_from_an_overlapping_embedding() -> None:
    backbone = HEViT(**SMALL).eval()
    assert [e.proj.kernel_size[0] for e in backbone.embeds] == [7, 3, 3]  # PEOW 3 = kernel 7 - stride 4
    assert [e.proj.stride[0] for e in backbone.embeds] == [4, 2, 2]
    x = torch.randn(2, 3, 64, 96)
    shapes = []
    for embed, stage in zip(backbone.embeds, backbone.stages, strict=True):
        x = stage(embed(x))
        shapes.append(tuple(x.shape))
    assert shapes == [(2, 16, 16, 24), (2, 32, 8, 12), (2, 32, 4, 6)]
    assert backbone.out_channels == 32 and backbone.stride == 16


def test_the_block_is_the_efficientvit_sandwich() -> None:
    block = HEViTBlock(32, groups=2, heads=1, key_dim=8, sr_ratio=2, ffn_ratio=2.0)
    assert [name for name, _ in block.named_children()] == ["dw0", "ffn0", "attn", "dw1", "ffn1"]
    assert block.dw0[0].groups == 32 and block.dw0[0].kernel_size == (3, 3)  # depthwise
    assert block.ffn0.pw1[0].out_channels == 64
    # Residual branches end in zero-initialised BN, so a fresh block starts near the identity
    # (the attention branch is the only one that is not zero at init).
    assert float(block.dw0[1].weight.abs().sum()) == 0 and float(block.ffn1.pw2[1].weight.abs().sum()) == 0


def test_fusing_for_inference_folds_every_batchnorm_and_keeps_the_outputs() -> None:
    from timm.utils import reparameterize_model

    backbone = HEViT(**SMALL)
    with torch.no_grad():  # trained-looking statistics and affine terms, so the folding matters
        for module in backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5), module.bias.uniform_(-0.2, 0.2)
    backbone.eval()
    fused = reparameterize_model(backbone)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules()) > 0  # the original is kept
    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), backbone(x), rtol=1e-3, atol=1e-3)  # fp32 rounding over 4 blocks


def test_keys_and_values_come_from_the_spatially_reduced_input_and_each_head_has_its_convs() -> None:
    attn = CGSRAttention(32, groups=2, heads=2, key_dim=8, sr_ratio=4)
    group = attn.attns[0]
    assert tuple(group.sr.weight.shape) == (16, 16, 4, 4) and group.sr.stride == (4, 4)
    for conv, width in ((group.q_conv, 16), (group.k_conv, 16), (group.v_conv, 16)):
        assert conv.groups == width and conv.kernel_size == (3, 3)
    seen = {}
    for name in ("q", "k"):
        getattr(group, name).register_forward_hook(lambda m, i, o, name=name: seen.update({name: o.shape}) or None)
    attn(torch.randn(1, 32, 16, 16))
    assert seen["q"][-2:] == (16, 16) and seen["k"][-2:] == (4, 4)


def test_each_group_reads_the_previous_groups_output() -> None:
    torch.manual_seed(0)
    attn = CGSRAttention(32, groups=2, heads=1, key_dim=8, sr_ratio=2).eval()
    x = torch.randn(1, 32, 8, 8)
    changed = x.clone()
    changed[:, :16] += 1.0  # only the first group's slice
    with torch.no_grad():
        outputs = {}
        for name, tensor in (("x", x), ("changed", changed)):
            captured = []
            handle = attn.attns[1].register_forward_hook(lambda m, i, o, captured=captured: captured.append(o))
            attn(tensor)
            handle.remove()
            outputs[name] = captured[0]
    # Group 2's own slice is unchanged, yet its output moves: it was fed group 1's output.
    assert not torch.allclose(outputs["x"], outputs["changed"])


@pytest.mark.parametrize("size", ["T", "S", "B"])
def test_presets_match_the_papers_params_and_gflops_within_3_percent(size: str) -> None:
    model = _meta_model(f"hevitpose-{size.lower()}-mpii-256x256")
    complexity = measure_complexity(model, {"image": torch.zeros(1, 3, 256, 256, device="meta")}, convention="modules")
    params, gflops, _, _ = TABLE[size]
    assert complexity.params / 1e6 == pytest.approx(params, rel=0.03)
    assert complexity.gflops == pytest.approx(gflops, rel=0.03)
    # the search's analytic count is exactly what posecore measures
    arch = HEVIT_ARCHS[size]
    candidate = Candidate(arch["widths"], arch["depths"], arch["groups"], arch["heads"],
                          model.head.final_layer.in_channels, arch["sr_ratios"])
    assert count(candidate) == (complexity.params, complexity.macs)


def test_hevit_b_follows_the_papers_gflops_against_input_curve() -> None:
    """The figure's curve within 5%, in mmcv's count; counting the attention products would miss it."""
    model = _meta_model("hevitpose-b-mpii-256x256")
    for side, published in FIGURE_B.items():
        image = {"image": torch.zeros(1, 3, side, side, device="meta")}
        assert measure_complexity(model, image, convention="modules").gflops == pytest.approx(published, rel=0.05), side
    every_product = measure_complexity(model, {"image": torch.zeros(1, 3, 960, 960, device="meta")}).gflops
    assert every_product > 1.3 * FIGURE_B[960]


def test_the_search_finds_the_presets() -> None:
    found = search("ratio")
    for size, (candidate, error, fits) in found.items():
        arch = HEVIT_ARCHS[size]
        assert (candidate.widths, candidate.depths, candidate.groups, candidate.heads, candidate.sr_ratios) == (
            arch["widths"], arch["depths"], arch["groups"], arch["heads"], arch["sr_ratios"])
        assert error <= 0.02 and fits > 1
