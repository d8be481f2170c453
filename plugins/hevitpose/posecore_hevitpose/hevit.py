"""HEViTPose's backbone, RECONSTRUCTED: no code or weights were ever published.

Wu, Tan and Li, "HEViTPose: High-Efficiency Vision Transformer for Human Pose Estimation"
(arXiv 2311.13615; Sci. Rep. 2026). The authors' repository (T1sweet/HEViTPose) holds only a
README and figures, so this module follows the paper's network figure and its two parent designs:

* a three-stage pyramid at strides 4, 8 and 16 (``H/4 x W/4 x C1`` ... ``H/16 x W/16 x C3``);
* PVTv2's overlapping patch embedding (OPE) before each stage: a convolution whose kernel is
  larger than its stride, then LayerNorm; stage 1's "PEOW = 3" read as kernel 7, stride 4 (an
  overlap of 7 - 4 = 3 pixels, PVTv2's own stage-1 embedding); later stages kernel 3, stride 2;
* EfficientViT's "sandwich" block: ``x += DWConv(x); x += FFN(x); x += CGSR-MHA(x);
  x += DWConv(x); x += FFN(x)`` (depthwise 3x3 + BN; FFN 1x1 conv, BN, ReLU, 1x1 conv, BN);
* the Cascaded Group Spatial-Reduction Multi-Head Attention (CGSR-MHA): the channels are split
  into G groups; group g attends over its slice plus the previous group's *output* (EfficientViT's
  cascade); keys and values come from a spatially reduced copy of the group's input (PVTv2's SR:
  a convolution with kernel = stride = r, then LayerNorm), queries from the full-resolution one;
  Q, K and V are each a linear projection, LayerNorm and a per-head depthwise 3x3 convolution (the
  figure draws a convolution on all three, where EfficientViT has one on Q only); the heads'
  outputs are concatenated, projected back to the group width and layer-normed; the groups'
  outputs are concatenated and projected (ReLU + linear, as EfficientViT).

Every hyper-parameter the figure leaves open (widths, depths, groups, heads, key width, SR ratios,
FFN ratio, the embeddings' kernels) is an argument; ``posecore_hevitpose.search`` chose the
presets' values so that parameters and GFLOPs match the paper's table (see the plugin README).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from posecore.models import attention

__all__ = ["HEAD_CHANNELS", "HEVIT_ARCHS", "CGSRAttention", "HEViT", "HEViTBlock", "LayerNorm2d", "OverlapPatchEmbed"]

#: The presets' configurations (``posecore_hevitpose.search`` found them; README, "Configurations").
#: name -> keyword arguments of :class:`HEViT`.
HEVIT_ARCHS: dict[str, dict[str, tuple[int, ...]]] = {
    "T": {"widths": (32, 64, 160), "depths": (1, 3, 4), "groups": (2, 4, 4), "heads": (2, 2, 2), "sr_ratios": (8, 4, 2)},
    "S": {"widths": (128, 192, 224), "depths": (2, 3, 3), "groups": (4, 3, 2), "heads": (2, 2, 2), "sr_ratios": (8, 4, 2)},
    "B": {"widths": (192, 288, 384), "depths": (1, 2, 3), "groups": (4, 4, 4), "heads": (2, 2, 2), "sr_ratios": (8, 4, 2)},
}
#: The heatmap head's deconvolution width per configuration (mmpose's default is 256).
HEAD_CHANNELS = {"T": 256, "S": 128, "B": 128}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (a token's features), as PVTv2 applies it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The result keeps the channels-last strides of the permuted view: copying it back to
        # contiguous costs about a fifth of the CPU inference time, and the convolutions take either.
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class ConvBN(nn.Sequential):
    """Convolution without bias, then BatchNorm (EfficientViT's ``Conv2d_BN``); ``bn_weight_init`` 0
    makes a residual branch start as the identity."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 bn_weight_init: float = 1.0) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        nn.init.constant_(self[1].weight, bn_weight_init)
        nn.init.zeros_(self[1].bias)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """The convolution with the BatchNorm folded in, for inference (EfficientViT's deployment
        step; ``timm.utils.reparameterize_model`` calls it on every module that has it)."""
        return fuse_conv_bn_eval(self[0].eval(), self[1].eval())


class OverlapPatchEmbed(nn.Module):
    """PVTv2's overlapping patch embedding: Conv2d(kernel k > stride s, padding k // 2), LayerNorm.

    ``(B, C_in, H, W) -> (B, C_out, H / s, W / s)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2)
        self.norm = LayerNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class FeedForward(nn.Module):
    """EfficientViT's FFN: 1x1 conv C -> rC + BN, ReLU, 1x1 conv rC -> C + BN (weight 0: identity residual)."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        hidden = int(channels * ratio)
        self.pw1 = ConvBN(channels, hidden)
        self.act = nn.ReLU(inplace=True)
        self.pw2 = ConvBN(hidden, channels, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


class _GroupAttention(nn.Module):
    """One group of CGSR-MHA: ``h`` heads over a ``(B, c, H, W)`` slice, keys/values from its
    spatially reduced copy. Output ``(B, c, H, W)``."""

    def __init__(self, channels: int, heads: int, key_dim: int, sr_ratio: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"CGSRAttention: group width {channels} is not divisible by heads={heads}")
        self.heads, self.key_dim, self.value_dim = heads, key_dim, channels // heads
        self.scale = key_dim ** -0.5
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(channels, channels, sr_ratio, sr_ratio)
            self.sr_norm = LayerNorm2d(channels)
        q_width, v_width = heads * key_dim, channels
        self.q = nn.Conv2d(channels, q_width, 1)
        self.k = nn.Conv2d(channels, q_width, 1)
        self.v = nn.Conv2d(channels, v_width, 1)
        self.q_norm, self.k_norm, self.v_norm = LayerNorm2d(q_width), LayerNorm2d(q_width), LayerNorm2d(v_width)
        # One 3x3 depthwise convolution per channel is one per head for each head's slice.
        self.q_conv = nn.Conv2d(q_width, q_width, 3, 1, 1, groups=q_width)
        self.k_conv = nn.Conv2d(q_width, q_width, 3, 1, 1, groups=q_width)
        self.v_conv = nn.Conv2d(v_width, v_width, 3, 1, 1, groups=v_width)
        self.out = nn.Conv2d(channels, channels, 1)
        self.out_norm = LayerNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        kv = self.sr_norm(self.sr(x)) if self.sr_ratio > 1 else x
        q = self.q_conv(self.q_norm(self.q(x)))
        k = self.k_conv(self.k_norm(self.k(kv)))
        v = self.v_conv(self.v_norm(self.v(kv)))
        # (B, heads, tokens, dim) for scaled dot-product attention over the reduced tokens.
        q = q.reshape(batch, self.heads, self.key_dim, -1).transpose(-1, -2)
        k = k.reshape(batch, self.heads, self.key_dim, -1).transpose(-1, -2)
        v = v.reshape(batch, self.heads, self.value_dim, -1).transpose(-1, -2)
        attended = attention(q, k, v, scale=self.scale)  # values narrower or wider than keys
        attended = attended.transpose(-1, -2).reshape(batch, -1, height, width)
        return self.out_norm(self.out(attended))


class CGSRAttention(nn.Module):
    """Cascaded Group Spatial-Reduction Multi-Head Attention over ``(B, C, H, W)``.

    The channels split into ``groups`` slices X_1..X_G; group g reads ``X_g + out_{g-1}`` (group 1
    reads X_1), so every group refines what the previous one found; the outputs are concatenated,
    passed through ReLU and a linear (1x1) projection C -> C.

    Args:
        channels: C, divisible by ``groups``.
        groups: G.
        heads: attention heads per group (each of width C / G / heads for the values).
        key_dim: query/key width per head.
        sr_ratio: the spatial reduction of keys and values (kernel = stride = r); 1 for none.
    """

    def __init__(self, channels: int, groups: int, heads: int = 1, key_dim: int = 16, sr_ratio: int = 1) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"CGSRAttention: channels={channels} is not divisible by groups={groups}")
        self.groups = groups
        self.attns = nn.ModuleList(_GroupAttention(channels // groups, heads, key_dim, sr_ratio) for _ in range(groups))
        self.proj = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        previous = None
        for chunk, attn in zip(x.chunk(self.groups, dim=1), self.attns, strict=True):
            previous = attn(chunk if previous is None else chunk + previous)
            outputs.append(previous)
        return self.proj(torch.cat(outputs, dim=1))


class HEViTBlock(nn.Module):
    """The sandwich: DWConv, FFN, CGSR-MHA, DWConv, FFN, each a residual branch (with drop path)."""

    def __init__(self, channels: int, groups: int, heads: int, key_dim: int, sr_ratio: int, ffn_ratio: float,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.dw0 = ConvBN(channels, channels, 3, groups=channels, bn_weight_init=0.0)
        self.ffn0 = FeedForward(channels, ffn_ratio)
        self.attn = CGSRAttention(channels, groups, heads, key_dim, sr_ratio)
        self.dw1 = ConvBN(channels, channels, 3, groups=channels, bn_weight_init=0.0)
        self.ffn1 = FeedForward(channels, ffn_ratio)
        self.drop_path = drop_path

    def _residual(self, x: torch.Tensor, branch: nn.Module) -> torch.Tensor:
        out = branch(x)
        if self.training and self.drop_path > 0:
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) >= self.drop_path
            out = out * keep / (1 - self.drop_path)
        return x + out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for branch in (self.dw0, self.ffn0, self.attn, self.dw1, self.ffn1):
            x = self._residual(x, branch)
        return x


def _per_stage(name: str, values: Sequence[int] | int, stages: int) -> tuple[int, ...]:
    values = (values,) * stages if isinstance(values, int) else tuple(values)
    if len(values) != stages:
        raise ValueError(f"HEViT.{name} needs one value per stage ({stages}); got {list(values)}")
    return values


class HEViT(nn.Module):
    """HEViTPose's backbone (reconstructed, see the module docstring): ``(B, 3, H, W)`` images ->
    ``(B, C3, H / 16, W / 16)`` features.

    Args:
        arch: ``"T"``, ``"S"`` or ``"B"``: the presets' configuration; the arguments below that
            are given override it.
        widths: C_i per stage.
        depths: L_i, blocks per stage.
        groups: G_i, attention groups per stage.
        heads: attention heads per group, per stage.
        sr_ratios: r_i, the keys'/values' spatial reduction per stage (PVTv2: 8, 4, 2).
        key_dim: query/key width per head (EfficientViT: 16).
        ffn_ratio: hidden width of the FFNs over C (EfficientViT: 2).
        embed_kernels: the OPE kernel per stage (stage 1: 7 = stride 4 + PEOW 3).
        embed_strides: the OPE stride per stage (4, 2, 2: strides 4, 8, 16).
        drop_path_rate: stochastic depth, rising linearly over the blocks to this value.
    """

    def __init__(
        self,
        arch: str = "T",
        widths: Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        groups: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
        sr_ratios: Sequence[int] | None = None,
        key_dim: int = 16,
        ffn_ratio: float = 2.0,
        embed_kernels: Sequence[int] = (7, 3, 3),
        embed_strides: Sequence[int] = (4, 2, 2),
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if arch not in HEVIT_ARCHS:
            raise ValueError(f"HEViT.arch must be one of {sorted(HEVIT_ARCHS)}; got {arch!r}")
        preset = HEVIT_ARCHS[arch]
        widths = tuple(widths) if widths is not None else preset["widths"]
        stages = len(widths)
        depths = _per_stage("depths", depths if depths is not None else preset["depths"], stages)
        groups = _per_stage("groups", groups if groups is not None else preset["groups"], stages)
        heads = _per_stage("heads", heads if heads is not None else preset["heads"], stages)
        sr_ratios = _per_stage("sr_ratios", sr_ratios if sr_ratios is not None else preset["sr_ratios"], stages)
        embed_kernels = _per_stage("embed_kernels", embed_kernels, stages)
        embed_strides = _per_stage("embed_strides", embed_strides, stages)
        for i, (width, group, head) in enumerate(zip(widths, groups, heads, strict=True)):
            if width % group or (width // group) % head:
                raise ValueError(f"HEViT stage {i}: width {width} must split into groups={group} x heads={head}")
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.embeds = nn.ModuleList()
        self.stages = nn.ModuleList()
        in_channels, block = 3, 0
        for i in range(stages):
            self.embeds.append(OverlapPatchEmbed(in_channels, widths[i], embed_kernels[i], embed_strides[i]))
            self.stages.append(nn.Sequential(*(
                HEViTBlock(widths[i], groups[i], heads[i], key_dim, sr_ratios[i], ffn_ratio, rates[block + j])
                for j in range(depths[i]))))
            in_channels, block = widths[i], block + depths[i]
        self.out_channels = widths[-1]
        self.stride = 1
        for s in embed_strides:
            self.stride *= s
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # PVTv2's: truncated normal for linear maps, fan-out normal for convolutions; the BN
        # weights ConvBN set (zero on residual branches) stay.
        if isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            nn.init.normal_(module.weight, std=(2.0 / fan_out) ** 0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) -> features (B, C3, H / 16, W / 16)."""
        x = images
        for embed, stage in zip(self.embeds, self.stages, strict=True):
            x = stage(embed(x))
        return x
