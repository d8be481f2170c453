"""``poseanything_swinv2``: Pose Anything's backbone, a timm SwinV2 whose last stage is upsampled x2.

SwinV2 (Liu et al., "Swin Transformer V2", CVPR 2022) through ``timm``: the final LayerNorm'd
stage ``(B, h, w, C)`` becomes NCHW and is upsampled x2, bilinearly (the released Tiny and Small
models: 8x8 -> 16x16 at 256 px) or by a learned ``ConvTranspose2d(C, C, 2, stride 2)`` (the
legacy SwinV2-B model at 224 px: 7x7 -> 14x14). timm builds the same blocks as the official code,
with the same stochastic-depth schedule (linear in the block index over all blocks).

Pre-trained initialisation reads the files the released configs name: the official supervised
SwinV2 (``{'model': ...}``, e.g. ``swinv2_tiny_patch4_window16_256.pth``) and SimMIM
(``{'model': {'encoder.*', 'decoder.*'}}``, e.g. ``swinv2_small_1k_500k.pth``), or ``"timm"`` for
timm's own weights of the model (from its local cache: nothing is downloaded here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, Literal

import timm
import torch
import torch.nn.functional as F
from torch import nn

import posecore

__all__ = ["SwinV2Backbone", "convert_swinv2_pretraining", "load_swinv2_pretrained", "swinv2_pretrained_state_dict"]


class SwinV2Backbone(nn.Module):
    """A timm SwinV2's normalised last stage, upsampled x2: ``(B, 3, H, W) -> (B, C, H / 16, W / 16)``.

    Args:
        model_name: a timm SwinV2 (``swinv2_tiny_window16_256``, ``swinv2_small_window16_256``,
            ``swinv2_base_window12_192``, ...).
        img_size: input size in pixels (square).
        window_size: attention window, when it differs from the model name's (legacy B: 14).
        pretrained_window_sizes: per stage, the window the continuous position bias was
            pre-trained at (legacy B: 12, 12, 12, 6); ``None``: the model name's.
        upsample: ``"bilinear"`` (fixed, the released Tiny/Small) or ``"deconv"`` (learned, legacy B).
        drop_path_rate: stochastic depth (0.2 Tiny, 0.3 Small, 0.1 legacy B).
        pretrained: a SwinV2 pre-training file (official or SimMIM), ``"timm"``, or ``None``.
        model_kwargs: further ``timm.create_model`` arguments (``embed_dim``, ``depths``, ...).

    Attributes:
        out_channels: C, the last stage's channels (768 for T and S, 1024 for B).
    """

    def __init__(
        self,
        model_name: str = "swinv2_tiny_window16_256",
        img_size: int = 256,
        window_size: int | None = None,
        pretrained_window_sizes: tuple[int, ...] | None = None,
        upsample: Literal["bilinear", "deconv"] = "bilinear",
        drop_path_rate: float = 0.2,
        pretrained: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if upsample not in ("bilinear", "deconv"):
            raise ValueError(f"SwinV2Backbone.upsample must be 'bilinear' or 'deconv'; got {upsample!r}")
        kwargs = dict(model_kwargs or {})
        if window_size is not None:
            kwargs["window_size"] = window_size
        if pretrained_window_sizes is not None:
            kwargs["pretrained_window_sizes"] = tuple(pretrained_window_sizes)
        self.swin = timm.create_model(model_name, pretrained=pretrained == "timm", num_classes=0, img_size=img_size,
                                      drop_path_rate=drop_path_rate, **kwargs)
        channels = int(self.swin.num_features)
        self.upsample = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2) if upsample == "deconv" else None
        self.out_channels: int = channels
        self.stride: int = 16
        if pretrained not in (None, "timm"):
            load_swinv2_pretrained(self.swin, pretrained)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> features (B, C, H / 16, W / 16)."""
        features = self.swin.forward_features(images).permute(0, 3, 1, 2)
        if self.upsample is not None:
            return self.upsample(features)
        return F.interpolate(features, scale_factor=2, mode="bilinear", align_corners=False)


def swinv2_pretrained_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official or SimMIM SwinV2 pre-training state_dict -> timm's SwinV2 keys, without the
    classifier: SimMIM's ``encoder.`` prefix stripped and its decoder and mask token dropped,
    ``rpe_mlp`` renamed ``cpb_mlp``, buffers dropped, ``downsample`` moved to the next stage."""
    from timm.models.swin_transformer_v2 import checkpoint_filter_fn

    encoder = {}
    for key, value in state_dict.items():
        if key.startswith("decoder.") or key.endswith("mask_token"):
            continue
        encoder[key.removeprefix("encoder.").replace("rpe_mlp", "cpb_mlp")] = value
    # timm's filter reads the model's patch kernel to resize a foreign one; a SwinV2 pre-training
    # file has the 4x4 patches of the model it initialises, so the file's own kernel stands in.
    patch = encoder.get("patch_embed.proj.weight", torch.empty(0, 0, 4, 4))
    model = SimpleNamespace(patch_embed=SimpleNamespace(proj=SimpleNamespace(weight=patch)))
    filtered = checkpoint_filter_fn(encoder, model)
    return {key: value for key, value in filtered.items() if not key.startswith("head.")}


_SWINV2_BLOCK = re.compile(r"^(encoder\.)?layers\.\d+\.blocks\.\d+\.attn\.(cpb_mlp|rpe_mlp)\.")


def _is_swinv2_pretraining(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(_SWINV2_BLOCK.match(key) for key in state_dict)


def _dropped_reason(key: str) -> str | None:
    if key.startswith("decoder.") or key.endswith("mask_token"):
        return "SimMIM's reconstruction decoder and mask token, used only in pre-training"
    if key.startswith("head."):
        return "the SwinV2 ImageNet classifier, never used by Pose Anything"
    if key.rsplit(".", 1)[-1] in ("relative_position_index", "relative_coords_table", "attn_mask"):
        return "a SwinV2 buffer that timm recomputes"
    return None


def convert_swinv2_pretraining(state_dict: Mapping[str, torch.Tensor]) -> posecore.ConvertedStateDict:
    """A SwinV2 pre-training file (official supervised or SimMIM) -> a Pose Anything model's
    backbone, ``backbone.swin.*``: what ``train.init_weights`` of the MP-100 presets reads, through
    posecore's one loading path (the head keeps its initialisation, as in the released training)."""
    converted = posecore.ConvertedStateDict(
        {"backbone.swin." + key: value for key, value in swinv2_pretrained_state_dict(state_dict).items()})
    for key in state_dict:
        reason = _dropped_reason(key.removeprefix("encoder."))
        if reason is not None:
            converted.dropped[key] = reason
    return converted


convert_swinv2_pretraining.matches = _is_swinv2_pretraining  # type: ignore[attr-defined]


def load_swinv2_pretrained(model: nn.Module, path: str) -> None:
    """Initialise a timm SwinV2 from a pre-training file (official or SimMIM) through posecore's
    loading path; warns with the keys that did not fit."""
    posecore.load_weights(model, path, swinv2_pretrained_state_dict)
