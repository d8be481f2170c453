"""``posecore.models.attention``: one result, fused or written out, and the written-out way exactly
where it is the faster one (bf16 training on the CPU); timm's attention in the ViT follows it."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from posecore.models import ViT, attention
from posecore.models._attention import ViTAttention

FUSED_CPU_KERNELS = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math")


def _reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    """The definition in float64."""
    query, key, value = (t.double() for t in (query, key, value))
    return ((query @ key.transpose(-2, -1)) * scale).softmax(-1) @ value


def _ran_fused(run) -> bool:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return any(any(kernel in event.key for kernel in FUSED_CPU_KERNELS) for event in prof.key_averages())


@pytest.mark.parametrize("value_width", [8, 16, 20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_and_written_out_give_the_definition_and_its_gradients(dtype: torch.dtype, value_width: int) -> None:
    """Keys 16 wide; values narrower, as wide, wider (HEViTPose's heads: the fused kernel gets
    them zero-padded). With grad in bf16 the attention is written out, otherwise fused."""
    torch.manual_seed(0)
    query, key = torch.randn(2, 3, 40, 16), torch.randn(2, 3, 24, 16)
    value = torch.randn(2, 3, 24, value_width)
    expected = _reference(query, key, value, 0.3)
    leaves = [t.to(dtype, copy=True).requires_grad_() for t in (query, key, value)]
    out = attention(*leaves, scale=0.3)
    tolerance = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {"rtol": 1e-5, "atol": 1e-5}
    assert out.dtype == dtype and out.shape == (2, 3, 40, value_width)
    torch.testing.assert_close(out.double(), expected, **tolerance)
    weights = torch.randn_like(expected)
    (out.double() * weights).sum().backward()
    references = [t.detach().double().requires_grad_() for t in (query, key, value)]
    (_reference(*references, 0.3) * weights).sum().backward()
    for leaf, reference in zip(leaves, references, strict=True):
        torch.testing.assert_close(leaf.grad.double(), reference.grad, **{k: 4 * v for k, v in tolerance.items()})
    with torch.no_grad():
        torch.testing.assert_close(attention(query.to(dtype), key.to(dtype), value.to(dtype), scale=0.3).double(),
                                   expected, **tolerance)


def test_only_bf16_training_on_the_cpu_writes_attention_out() -> None:
    query = torch.randn(2, 2, 32, 16)
    for dtype, grad, fused in ((torch.float32, True, True), (torch.bfloat16, False, True),
                               (torch.bfloat16, True, False)):
        leaf = query.to(dtype, copy=True).requires_grad_(grad)
        assert _ran_fused(lambda leaf=leaf: attention(leaf, leaf, leaf)) == fused, (dtype, grad)
    frozen = query.to(torch.bfloat16)  # a frozen part: no gradient wanted, so the faster forward
    assert _ran_fused(lambda: attention(frozen, frozen, frozen))


def test_the_vit_writes_attention_out_when_training_under_cpu_bf16_autocast() -> None:
    torch.manual_seed(0)
    vit = ViT(embed_dim=32, depth=1, num_heads=2, patch_size=8, patch_padding=0, input_size=(32, 32))
    images = torch.randn(2, 3, 32, 32)

    def run(bf16: bool, grad: bool):
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16), torch.set_grad_enabled(grad):
            return vit(images)

    assert _ran_fused(lambda: run(False, True)) and _ran_fused(lambda: run(True, False))
    assert not _ran_fused(lambda: run(True, True))
    fp32 = run(False, False)
    written_out, fused = run(True, True).float(), run(True, False).float()
    torch.testing.assert_close(written_out, fp32, rtol=0.02, atol=0.02)  # bf16 rounding
    torch.testing.assert_close(written_out, fused, rtol=0.002, atol=0.002)  # the same products, other kernels
    vit.requires_grad_(False)  # frozen: the fused forward again
    assert _ran_fused(lambda: run(True, True))


def test_setting_fused_attn_fixes_the_choice_and_none_returns_it_to_the_rule() -> None:
    """timm's idiom (``attn.fused_attn = False``) still works; a directly built module follows
    the rule, not timm's environment switch."""
    torch.manual_seed(0)
    module = ViTAttention(32, num_heads=2, qkv_bias=True)
    tokens = torch.randn(2, 12, 32)

    def run() -> torch.Tensor:
        with torch.autocast("cpu", torch.bfloat16):
            return module(tokens)

    assert not _ran_fused(run)  # bf16 training: written out
    module.fused_attn = True
    assert _ran_fused(run)
    module.fused_attn = None
    assert not _ran_fused(run)
    module.fused_attn = False
    with torch.no_grad():
        assert not _ran_fused(run)  # fixed: written out even where the rule would fuse
