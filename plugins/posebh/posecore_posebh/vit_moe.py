"""``posebh_vit_moe``: ViTPose++'s ViT with a partly shared, per-dataset feed-forward network.

Xu et al., TPAMI 2023, "ViTPose++: Vision Transformer for Generic Body Pose Estimation"; original
code: https://github.com/ViTAE-Transformer/ViTPose (``mmpose/models/backbones/vit_moe.py``).

The backbone is the core's plain ViT (:class:`posecore.models.ViT`) with each block's MLP
replaced by :class:`ExpertMlp`: ``fc1`` is shared; of the ``D`` output channels, the first
``D - P`` come from a shared ``fc2`` and the last ``P`` from one of ``num_experts`` expert
linears, chosen per sample by its dataset index (0 COCO, 1 AIC, 2 MPII, 3 AP-10K, 4 APT-36K,
5 COCO-WholeBody in the released models). Parameter names are the original ones
(``blocks.{i}.mlp.{fc1, fc2, experts.{j}}``), so ``vitpose+_*.pth`` files load as they are.

For one dataset ``d`` the block equals a plain ViT MLP whose ``fc2`` is the row concatenation
``[fc2; experts[d]]``; :func:`merge_expert` turns a state_dict into that plain layout (what
ViTPose++'s ``tools/model_split.py`` does), and :func:`read_moe_shapes` reads ``D``, the depth,
``P`` and the expert count from a state_dict's tensors: the released ViTPose++-S has
``P = 96`` although its config says 192 (ViTPose issues #73, #144), so shapes, not configs, decide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial

import attrs
import torch
from torch import nn

from posecore import ConfigError
from posecore.models import VIT_ARCHS, ViT

__all__ = ["EXPERT_WIDTHS", "ExpertMlp", "MoEShapes", "ViTMoE", "expert_width", "merge_expert", "read_moe_shapes"]

#: Expert width P of the released ViTPose++ checkpoints, by arch (S: the file's 96, not its config's 192).
EXPERT_WIDTHS: dict[str, int] = {"small": 96, "base": 192, "large": 256, "huge": 320}


class ExpertMlp(nn.Module):
    """``fc1`` -> GELU -> ``[fc2 (D - P channels); experts[d] (P channels)]``, ``d`` per sample.

    Only the chosen expert runs on each sample (the original runs all six and masks; the result is
    the same, the cost is one expert's), so a batch mixing datasets costs what a plain MLP costs;
    samples grouped by dataset (as :class:`~posecore_posebh.model.PoseBHModel` orders them) take
    contiguous slices instead of an index scatter.

    Args:
        in_features: D, the token width.
        hidden_features: the hidden width (4 D).
        act_layer: the activation (timm's blocks pass GELU).
        num_experts: one per training dataset.
        part_features: P, the expert width.
        default_expert: the expert of samples when no dataset index is given.
    """

    #: An expert trains only on its own dataset's samples, so a batch without them leaves it
    #: without a gradient (posecore's contract checks accept that for these parameters only).
    parameters_without_gradient = ("experts.*",)

    def __init__(self, in_features: int, hidden_features: int, act_layer: type[nn.Module] = nn.GELU,
                 num_experts: int = 6, part_features: int = 192, default_expert: int = 0,
                 **unused: object) -> None:
        super().__init__()
        if not 0 < part_features < in_features:
            raise ConfigError(f"posebh_vit_moe.part_features must be in 1..{in_features - 1} (the token width is "
                              f"{in_features}); got {part_features}")
        if num_experts < 1 or not 0 <= default_expert < num_experts:
            raise ConfigError(f"posebh_vit_moe: num_experts must be >= 1 and default_expert in 0..{num_experts - 1}; "
                              f"got {num_experts} and {default_expert}")
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features - part_features)
        self.experts = nn.ModuleList(nn.Linear(hidden_features, part_features) for _ in range(num_experts))
        self.part_features = part_features
        self.default_expert = default_expert

    def set_part_features(self, part_features: int) -> None:
        """Rebuild ``fc2`` and the experts for expert width ``part_features`` (fresh weights, to be
        loaded): the width a checkpoint's tensors give may differ from its config's."""
        in_features = self.fc2.out_features + self.part_features
        if not 0 < part_features < in_features:
            raise ConfigError(f"posebh_vit_moe: an expert width of {part_features} does not fit tokens of width "
                              f"{in_features}")
        hidden, like = self.fc1.out_features, self.fc2.weight
        self.fc2 = nn.Linear(hidden, in_features - part_features, device=like.device, dtype=like.dtype)
        self.experts = nn.ModuleList(nn.Linear(hidden, part_features, device=like.device, dtype=like.dtype)
                                     for _ in range(len(self.experts)))
        self.part_features = part_features

    def forward(self, tokens: torch.Tensor, dataset_index: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, N, D), dataset_index (B,) int or None (every sample: ``default_expert``) -> (B, N, D)."""
        hidden = self.act(self.fc1(tokens))
        shared = self.fc2(hidden)
        if dataset_index is None:
            return torch.cat([shared, self.experts[self.default_expert](hidden)], -1)
        index = dataset_index.to(device=tokens.device, dtype=torch.long).reshape(-1)
        if index.numel() != tokens.shape[0]:
            raise ValueError(f"ExpertMlp: {index.numel()} dataset indices for a batch of {tokens.shape[0]}")
        runs, counts = (values.tolist() for values in torch.unique_consecutive(index, return_counts=True))
        bad = [d for d in runs if not 0 <= d < len(self.experts)]
        if bad:
            raise ValueError(f"ExpertMlp: dataset index {bad[0]} has no expert (the model has {len(self.experts)}: "
                             f"0..{len(self.experts) - 1})")
        if len(runs) == len(set(runs)):  # each dataset's samples are contiguous: slices, no scatter
            parts = torch.split(hidden, counts)
            expert = torch.cat([self.experts[d](part) for d, part in zip(runs, parts, strict=True)])
        else:
            expert = shared.new_empty(*shared.shape[:-1], self.part_features)
            for d in set(runs):
                rows = index == d
                expert[rows] = self.experts[d](hidden[rows])
        return torch.cat([shared, expert], -1)


class ViTMoE(ViT):
    """ViTPose++'s backbone: images ``(B, 3, H, W)`` and a dataset index per sample -> ``(B, D, h, w)``.

    Everything but the MLP is :class:`posecore.models.ViT` (see its arguments; ``arch`` sets
    D, depth and heads), including layer ids for layer-wise lr decay, where experts belong to their
    block.

    Args:
        num_experts: experts per block, one per training dataset (6 in the released models).
        part_features: P, the expert width; default: the released checkpoint's for ``arch``
            (:data:`EXPERT_WIDTHS`).
        default_expert: the expert used when ``forward`` gets no dataset index (0: COCO).
    """

    def __init__(self, arch: str = "base", num_experts: int = 6, part_features: int | None = None,
                 default_expert: int = 0, embed_dim: int | None = None, depth: int | None = None,
                 num_heads: int | None = None, input_size: tuple[int, int] = (192, 256), patch_size: int = 16,
                 patch_padding: int = 2, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.0,
                 norm_eps: float = 1e-6, grad_checkpointing: bool = False) -> None:
        if arch not in VIT_ARCHS:
            raise ConfigError(f"posebh_vit_moe.arch must be one of {', '.join(VIT_ARCHS)}; got {arch!r}")
        part = part_features if part_features is not None else EXPERT_WIDTHS[arch]
        super().__init__(
            arch, embed_dim=embed_dim, depth=depth, num_heads=num_heads, input_size=input_size, patch_size=patch_size,
            patch_padding=patch_padding, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path_rate=drop_path_rate,
            norm_eps=norm_eps, grad_checkpointing=grad_checkpointing,
            mlp_layer=partial(ExpertMlp, num_experts=num_experts, part_features=part, default_expert=default_expert),
        )
        self.num_experts = num_experts
        self.part_features = part

    def set_part_features(self, part_features: int) -> None:
        """Every block's expert width (see :meth:`ExpertMlp.set_part_features`)."""
        for block in self.blocks:
            block.mlp.set_part_features(part_features)
        self.part_features = part_features


@attrs.frozen
class MoEShapes:
    """What a ViTPose++ state_dict's tensors say about its backbone."""

    embed_dim: int
    depth: int
    num_experts: int
    part_features: int


_EXPERT_KEY = re.compile(r"^(?:backbone\.)?blocks\.(\d+)\.mlp\.experts\.(\d+)\.weight$")
_BLOCK_KEY = re.compile(r"^(?:backbone\.)?blocks\.(\d+)\.")


def expert_width(state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """P, the rows of block 0's first expert (keys with or without ``backbone.``); ``None`` when
    the state_dict has no experts (a plain ViT, or a split file)."""
    return next((int(t.shape[0]) for key, t in state_dict.items() if (m := _EXPERT_KEY.match(key)) and m[1] == "0"),
                None)


def read_moe_shapes(state_dict: Mapping[str, torch.Tensor]) -> MoEShapes:
    """D from ``pos_embed``, the depth from the block indices, P and the expert count from
    ``blocks.0.mlp.experts.*`` (keys with or without ``backbone.``); a ``ConfigError`` when the
    file has no experts."""
    experts = {int(m[2]): tensor for key, tensor in state_dict.items() if (m := _EXPERT_KEY.match(key)) and m[1] == "0"}
    pos_embed = state_dict.get("backbone.pos_embed", state_dict.get("pos_embed"))
    if not experts or pos_embed is None:
        raise ConfigError("read_moe_shapes: no 'blocks.0.mlp.experts.*' or 'pos_embed' tensors: this is not a "
                          "ViTPose++ (mixture-of-experts) state_dict")
    depth = 1 + max(int(m[1]) for key in state_dict if (m := _BLOCK_KEY.match(key)))
    return MoEShapes(int(pos_embed.shape[-1]), depth, len(experts), int(experts[0].shape[0]))


def merge_expert(state_dict: Mapping[str, torch.Tensor], expert: int, prefix: str = "backbone.") -> dict[str, torch.Tensor]:
    """The plain-ViT state_dict of dataset ``expert``: every ``{prefix}blocks.{i}.mlp.fc2`` becomes the
    row concatenation of the shared ``fc2`` and ``experts[expert]``, and no expert tensor is kept.
    Keys outside the backbone pass through."""
    merged: dict[str, torch.Tensor] = {}
    pattern = re.compile(rf"^{re.escape(prefix)}blocks\.(\d+)\.mlp\.experts\.(\d+)\.(weight|bias)$")
    for key, tensor in state_dict.items():
        found = pattern.match(key)
        if found is None:
            merged.setdefault(key, tensor)
            continue
        if int(found[2]) != expert:
            continue
        fc2 = f"{prefix}blocks.{found[1]}.mlp.fc2.{found[3]}"
        if fc2 not in state_dict:
            raise ConfigError(f"merge_expert: {key} has no shared {fc2} to merge into")
        merged[fc2] = torch.cat([state_dict[fc2], tensor], 0)
    missing = [key for key in state_dict if pattern.match(key)]
    if missing and not any(int(m[2]) == expert for key in missing if (m := pattern.match(key))):
        count = 1 + max(int(m[2]) for key in missing if (m := pattern.match(key)))
        raise ConfigError(f"merge_expert: expert {expert} is not in the state_dict (it has experts 0..{count - 1})")
    return merged
