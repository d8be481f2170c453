"""``vit``: the plain Vision Transformer backbone of ViTPose.

Xu et al., NeurIPS 2022, "ViTPose: Simple Vision Transformer Baselines for Human Pose Estimation";
ViTPose++ (TPAMI 2023). Original code: https://github.com/ViTAE-Transformer/ViTPose.

The blocks are timm's pre-norm ``Block`` (scaled-dot-product attention, fused or written out,
whichever :mod:`posecore.models._attention` finds faster; drop-path), whose linear layers run
through oneDNN in CPU inference (:class:`InferenceLinear`). What ViTPose does differently from an
image-classification ViT, and this module reproduces:

* the patch embedding pads by 2, so a 256x192 crop still gives a 16x12 token grid (the padding is
  swallowed by the floor division);
* there is no class token, but the position embedding keeps its class slot and that slot's vector
  is added to every patch token, as the original does (every checkpoint trained from it relies on it);
* a final LayerNorm (``last_norm``), and the output is a ``(B, C, h, w)`` feature map.

Parameter names are the original ones (``patch_embed.proj``, ``pos_embed``,
``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``last_norm``), so original
ViTPose backbones load without renaming; the converters for mmpose 1.x and Hugging Face layouts live
beside this file in :mod:`posecore.models._vit_convert`.

Extension point: ``mlp_layer`` replaces every block's feed-forward network. An MLP whose ``forward``
accepts a ``dataset_index`` argument receives the per-sample index given to :meth:`ViT.forward`;
that is all ViTPose++ / PoseBH's mixture-of-experts FFN (shared ``fc1``/``fc2`` plus one expert
``Linear`` per dataset, picked per sample) needs::

    class MoEViT(ViT):
        def __init__(self, num_experts: int = 6, part_features: int = 192, **kwargs):
            super().__init__(mlp_layer=partial(MoEMlp, num_experts=num_experts,
                                               part_features=part_features), **kwargs)

    features = backbone(images, dataset_index=batch["dataset_index"])   # (B,) int64
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.checkpoint import checkpoint

from posecore._errors import ConfigError
from posecore.models._attention import ViTAttention

__all__ = ["VIT_ARCHS", "InferenceLinear", "PatchEmbed", "ViT", "ViTBlock"]

#: (embed_dim, depth, num_heads) of the four ViTPose sizes.
VIT_ARCHS: dict[str, tuple[int, int, int]] = {
    "small": (384, 12, 12),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}


class PatchEmbed(nn.Module):
    """Non-overlapping patches (with ViTPose's border padding) projected to tokens."""

    def __init__(self, patch_size: int, padding: int, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size, padding=padding)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """images (B, 3, H, W) -> tokens (B, h * w, C), contiguous, and the grid (h, w)."""
        patches = self.proj(images)
        # A transposed view would make every residual add and LayerNorm downstream strided (and
        # each LayerNorm copy its input): one copy here is cheaper.
        return patches.flatten(2).transpose(1, 2).contiguous(), (patches.shape[2], patches.shape[3])


_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class InferenceLinear(nn.Linear):
    """``nn.Linear`` whose gradient-free fp32 CPU forward runs through oneDNN.

    PyTorch's fp32 ``addmm`` goes through MKL's sgemm, which ran at half oneDNN's speed on the
    AMD EPYC of ``benchmarks/vit_inference.py``; this is the oneDNN kernel ``torch.compile``'s CPU
    freezing pass uses, here on the plain weight, so no packed copy is kept. Training, autograd, autocast, tracing, compiling and other
    devices or dtypes take ``F.linear``. Outputs agree with ``F.linear`` to fp32 rounding (~1e-6).
    """

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._eager_cpu_inference(inputs):
            return torch.ops.mkldnn._linear_pointwise(inputs, self.weight, self.bias, "none", [], "")
        return F.linear(inputs, self.weight, self.bias)

    def _eager_cpu_inference(self, inputs: torch.Tensor) -> bool:
        """fp32 on the CPU without autograd or autocast, and not being traced or compiled (an
        exported graph must hold the standard op; the compilers choose their own kernels)."""
        return (_ONEDNN_LINEAR and not torch.is_grad_enabled() and inputs.device.type == "cpu"
                and inputs.dtype == self.weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
                and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


class ViTBlock(Block):
    """timm's pre-norm transformer block, whose MLP may route each sample by its dataset index.

    The routing is decided once, from the MLP's signature: plain MLPs are called as ``mlp(x)``,
    MLPs with a ``dataset_index`` parameter as ``mlp(x, dataset_index=...)``.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.routed_mlp = "dataset_index" in inspect.signature(self.mlp.forward).parameters
        # Fused or written-out attention is chosen call by call (posecore.models._attention), not by
        # timm's switch fixed at build time; the re-class keeps timm's parameters and names.
        vars(self.attn).pop("fused_attn", None)
        self.attn.__class__ = ViTAttention
        for module in self.modules():
            if type(module) is nn.Linear:
                # Re-class in place: timm built them; parameters, names and hooks stay as they are.
                module.__class__ = InferenceLinear

    def forward(self, tokens: torch.Tensor, dataset_index: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, N, C), dataset_index (B,) or None -> tokens (B, N, C)."""
        tokens = tokens + self.drop_path1(self.ls1(self.attn(self.norm1(tokens))))
        hidden = self.norm2(tokens)
        if self.routed_mlp:
            hidden = self.mlp(hidden, dataset_index=dataset_index)
        elif dataset_index is not None:
            raise ValueError("ViT: dataset_index was given but this ViT's MLP has no experts to route to")
        else:
            hidden = self.mlp(hidden)
        return tokens + self.drop_path2(self.ls2(hidden))


class ViT(nn.Module):
    """ViTPose's plain ViT: images ``(B, 3, H, W)`` -> features ``(B, C, h, w)``.

    ``h = (H + 2 * patch_padding - patch_size) // patch_size + 1`` (16 x 12 for 256 x 192).

    Args:
        arch: ``"small"``, ``"base"``, ``"large"`` or ``"huge"`` (:data:`VIT_ARCHS`); sets the
            width, depth and heads unless those are given explicitly.
        embed_dim, depth, num_heads: override the arch (tiny test models, other sizes).
        input_size: ``(width, height)`` the position embedding is laid out for. Other input sizes
            work: the embedding is resized bicubically on the fly. Checkpoints must have been
            trained at this size to load (their ``pos_embed`` has this grid).
        patch_size: patch side in pixels.
        patch_padding: the patch convolution's padding (ViTPose: 2).
        mlp_ratio: hidden width of the MLP over ``embed_dim``.
        qkv_bias: bias on the query/key/value projection (ViTPose: on).
        drop_path_rate: stochastic depth of the last block; it rises linearly from 0 at the first.
        norm_eps: LayerNorm epsilon (ViTPose and mmpose: 1e-6; PGVL's MAE ViT: 1e-5).
        grad_checkpointing: recompute each block in the backward pass to save activation memory.
        mlp_layer: a factory for each block's MLP, called as timm's blocks call theirs
            (``in_features``, ``hidden_features``, ``act_layer``, ...). For code, not for YAML:
            plugins pass it from their own subclass (see the module docstring).

    Layer-wise lr decay (the trainer reads these): :attr:`num_layers` is the depth;
    :meth:`layer_id` gives 0 for the embeddings, ``i + 1`` for block ``i`` and
    ``num_layers + 1`` for the final norm.
    """

    def __init__(
        self,
        arch: str = "base",
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        input_size: tuple[int, int] = (192, 256),
        patch_size: int = 16,
        patch_padding: int = 2,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        grad_checkpointing: bool = False,
        mlp_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if arch not in VIT_ARCHS:
            raise ConfigError(f"vit.arch must be one of {', '.join(VIT_ARCHS)}; got {arch!r}")
        arch_dim, arch_depth, arch_heads = VIT_ARCHS[arch]
        embed_dim, depth, num_heads = embed_dim or arch_dim, depth or arch_depth, num_heads or arch_heads
        if embed_dim % num_heads:
            raise ConfigError(f"vit.embed_dim ({embed_dim}) must be a multiple of vit.num_heads ({num_heads})")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"vit.drop_path_rate must be in [0, 1); got {drop_path_rate}")
        width, height = input_size
        self.grid_size = tuple((side + 2 * patch_padding - patch_size) // patch_size + 1 for side in (height, width))
        if min(self.grid_size) < 1:
            raise ConfigError(f"vit.input_size {tuple(input_size)} is smaller than one patch of {patch_size} pixels")

        self.patch_embed = PatchEmbed(patch_size, patch_padding, 3, embed_dim)
        # Slot 0 is the class position of the pre-trained ViT; it is added to every token.
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size[0] * self.grid_size[1] + 1, embed_dim))
        norm_layer = _layer_norm(norm_eps)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            ViTBlock(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=rate,
                     norm_layer=norm_layer, mlp_layer=mlp_layer or Mlp)
            for rate in rates
        )
        self.last_norm = norm_layer(embed_dim)

        self.out_channels = embed_dim
        self.stride = patch_size
        self.num_layers = depth
        self.grad_checkpointing = grad_checkpointing
        self._init_weights()

    def _init_weights(self) -> None:
        """The original initialisation: truncated normal (std 0.02) for linear weights and the
        position embedding, zero biases; LayerNorms and the patch convolution keep PyTorch's."""
        trunc_normal_(self.pos_embed, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor, dataset_index: torch.Tensor | None = None) -> torch.Tensor:
        """images (B, 3, H, W); dataset_index (B,) int, for routed MLPs only -> features (B, C, h, w),
        in channels-last memory."""
        tokens, grid = self.patch_embed(images)
        tokens = tokens + self._position_embedding(grid)
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, dataset_index, use_reentrant=False)
            else:
                tokens = block(tokens, dataset_index)
        tokens = self.last_norm(tokens)
        # A view, no copy: (B, C, h, w) laid out channels-last, which convolution heads run fastest on.
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)

    def patch_positions(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, h * w, C): the position embedding's patch entries, resized bicubically to ``grid``
        if needed (mmpretrain-style ViTs, VLPose's, add only these)."""
        patches = self.pos_embed[:, 1:]
        if grid != self.grid_size:
            height, width = self.grid_size
            patches = patches.reshape(1, height, width, -1).permute(0, 3, 1, 2)
            patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
            patches = patches.flatten(2).transpose(1, 2)
        return patches

    def _position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, h * w, C): the patch positions plus the class slot, which ViTPose adds to every patch."""
        return self.patch_positions(grid) + self.pos_embed[:, :1]

    def layer_id(self, name: str) -> int:
        """Depth of parameter ``name`` (relative to this module) for layer-wise lr decay."""
        if name.startswith(("patch_embed.", "pos_embed")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layers + 1

    def no_weight_decay(self) -> set[str]:
        """Parameters trained without weight decay besides biases and norms (timm's convention)."""
        return {"pos_embed"}


def _layer_norm(eps: float) -> Callable[..., nn.Module]:
    def make(dim: int, **kwargs: object) -> nn.Module:
        return nn.LayerNorm(dim, eps=eps, **kwargs)

    return make
