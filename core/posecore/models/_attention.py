"""Softmax attention through the faster of PyTorch's two ways for each call.

PyTorch's fused ``scaled_dot_product_attention`` is the faster way on GPUs, in fp32 and in every
forward-only pass. It loses in one case: bf16 training on the CPU, where its backward (which
converts and recomputes block by block) is 1.5-2x slower than writing the attention out as two
matrix products, which AMX runs, with the softmax between them. On the Xeon of ``benchmarks/``
(AMX), writing it out took the default presets' bf16 training steps from 185 to 140 ms (core
ViT; 247 in fp32), 177 to 148 (PoseBH; 206), 291 to 216 (VLPose; 337), 484 to 305 (PGVL; 375)
and 206 to 158 ms (HEViTPose; 180): bf16 became faster than fp32 for all of them. Forward-only,
the fused kernel stays faster (ViTPose-B's attention 12.4 against 26.0 ms at batch 32), so
inference keeps it. The written-out form keeps the (batch, heads, queries, keys) weights for the
backward, as attention did before fused kernels: memory grows with queries times keys. It also
rounds the scores to bf16 before the softmax, where the fused kernel keeps them in fp32: about
twice the error against an exact result (0.008 against 0.004 for unit-spread scores). Training
tolerates it (the other defaults' held-out metrics held or rose; PoseBH's needed a 13th epoch
to stay above 0.57); a model that does not can train in fp32.

:func:`attention` makes that choice per call, from the tensors; models built on timm's
``Attention`` get it through :class:`ViTAttention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention

__all__ = ["ViTAttention", "attention", "writes_out_attention"]


def writes_out_attention(device: torch.device, dtype: torch.dtype, needs_grad: bool) -> bool:
    """Whether attention on ``device`` in ``dtype`` runs written out rather than fused: bf16 on
    the CPU with autograd recording (``needs_grad``), where the fused backward is the slower."""
    return device.type == "cpu" and dtype == torch.bfloat16 and needs_grad and torch.is_grad_enabled()


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, scale: float | None = None,
              dropout_p: float = 0.0) -> torch.Tensor:
    """``softmax(query @ key^T * scale) @ value`` over the last two dimensions, as
    ``F.scaled_dot_product_attention`` computes it (no mask; ``scale`` defaults to the key width's
    inverse square root; ``dropout_p`` drops attention weights, so pass 0 outside training).

    ``value`` may be wider or narrower than the queries and keys: the fused CPU kernel needs one
    width, and without it falls back to a reference path 3-4x slower than the written-out one, so
    the narrower side is zero-padded and the padding cut from the result (zeros add nothing to the
    dot products or to the weighted sum; the scale stays the key width's).
    """
    key_width, value_width = query.shape[-1], value.shape[-1]
    scale = key_width**-0.5 if scale is None else scale
    needs_grad = query.requires_grad or key.requires_grad or value.requires_grad
    if writes_out_attention(query.device, query.dtype, needs_grad):
        weights = ((query * scale) @ key.transpose(-2, -1)).softmax(-1)
        return (F.dropout(weights, dropout_p) if dropout_p else weights) @ value
    if key_width == value_width:
        return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p, scale=scale)
    width = max(key_width, value_width)
    query, key = (F.pad(t, (0, width - key_width)) for t in (query, key))
    value = F.pad(value, (0, width - value_width))
    return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p, scale=scale)[..., :value_width]


class ViTAttention(Attention):
    """timm's ``Attention`` whose choice between its fused and its written-out path follows
    :func:`writes_out_attention` call by call, instead of being fixed when it is built: timm's
    ``fused_attn`` attribute becomes this property, and timm's forward runs unchanged. Setting
    ``fused_attn`` (timm's idiom) fixes the choice; setting it to ``None`` returns it to the rule.

    The rule reads the block's weights, not its input: a frozen block whose input still needs a
    gradient (frozen blocks after trainable ones) keeps the fused kernel, correct but slower.

    Built directly it takes timm's arguments; the ViT's blocks re-class the modules timm built
    (``module.__class__ = ViTAttention``), so parameter names and checkpoints are timm's.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # timm's sets fused_attn from its environment switch
        self.fused_attn = None

    @property  # type: ignore[override]
    def fused_attn(self) -> bool:
        chosen = vars(self).get("_fused_attn")
        if chosen is not None:
            return chosen
        weight = self.qkv.weight
        if weight.device.type != "cpu":
            return True
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else weight.dtype
        return not writes_out_attention(weight.device, dtype, weight.requires_grad)

    @fused_attn.setter
    def fused_attn(self, value: bool | None) -> None:
        vars(self)["_fused_attn"] = value
