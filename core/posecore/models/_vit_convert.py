"""Converters from the ViTPose checkpoints people have to posecore's ``vit`` + heatmap head layout.

posecore's names are the original ViTPose ones for the backbone (``backbone.patch_embed.proj``,
``backbone.pos_embed`` (1, 1 + h*w, C) with the class slot first, ``backbone.blocks.{i}.{norm1,
attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``backbone.last_norm``) and
``head.deconv_layers.{0,1,3,4}`` / ``head.final_layer`` for the heads. Three layouts convert to it:

* ``vitpose-mmpose0x``: the original ViTPose / ViTPose++ repository (mmpose 0.x); the backbone's
  names are posecore's, the head is under ``keypoint_head.*``.
* ``vitpose-mmpose1x``: mmpose 1.x (mmpretrain's ``VisionTransformer``):
  ``backbone.layers.{i}.{ln1, attn, ln2, ffn.layers.0.0, ffn.layers.1}``, ``backbone.ln1``, a
  ``pos_embed`` without the class slot, the head under ``head.*``.
* ``vitpose-hf``: Hugging Face transformers' ``VitPoseForPoseEstimation``: ``backbone.embeddings``,
  separate query/key/value in ``backbone.encoder.layer.{i}``, ``head.deconv1`` / ``head.conv`` ...

Each converter is a callable ``(state_dict) -> ConvertedStateDict`` with ``matches(state_dict)``,
which :func:`posecore._checkpoint.load_weights` uses to recognise the layout by its key prefixes.
Keys a converter does not know pass through unchanged, so the key report shows them; ViTPose++
expert weights (``mlp.experts.{j}``) keep their names for a mixture-of-experts backbone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from posecore._checkpoint import ConvertedStateDict

__all__ = ["ViTPoseLayout", "hf", "mmpose0x", "mmpose1x"]

Rules = tuple[tuple[str, str], ...]


def _rename(key: str, rules: Rules) -> str:
    for pattern, replacement in rules:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return renamed
    return key


class ViTPoseLayout:
    """One foreign layout: recognised by key prefixes, converted by ordered renaming rules (the
    first matching regex renames a key) and a layout-specific fix-up."""

    def __init__(self, name: str, markers: tuple[str, ...], rules: Rules) -> None:
        self.name = name
        self.markers = markers
        self.rules = rules

    def matches(self, state_dict: Mapping[str, torch.Tensor]) -> bool:
        """Whether any key starts with one of this layout's marker prefixes."""
        return any(key.startswith(self.markers) for key in state_dict)

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> ConvertedStateDict:
        converted = ConvertedStateDict({_rename(key, self.rules): value for key, value in state_dict.items()})
        self.fix_up(converted)
        return converted

    def fix_up(self, converted: ConvertedStateDict) -> None:
        """Changes beyond renaming (merging, dropping, padding tensors); in place."""

    def __repr__(self) -> str:
        return f"<ViTPose layout {self.name!r}>"


class _Mmpose0x(ViTPoseLayout):
    """The original repository. Its ``backbone.cls_token`` (in some files) is never used by the
    model, and the files of ViTPose++'s ``model_split`` tool keep expert tensors whose selected
    copy is already inside ``fc2``; both are dropped, and reported."""

    def fix_up(self, converted: ConvertedStateDict) -> None:
        if "backbone.cls_token" in converted:
            del converted["backbone.cls_token"]
            converted.dropped["backbone.cls_token"] = "ViTPose's forward never uses a class token"
        fc2 = converted.get("backbone.blocks.0.mlp.fc2.weight")
        pos_embed = converted.get("backbone.pos_embed")
        if fc2 is None or pos_embed is None or fc2.shape[0] != pos_embed.shape[-1]:
            return  # no experts, or a real mixture-of-experts file: its experts are needed
        for key in [k for k in converted if ".mlp.experts." in k]:
            del converted[key]
            converted.dropped[key] = "left by ViTPose++'s model_split: fc2 already holds the selected expert"


class _Mmpose1x(ViTPoseLayout):
    """mmpretrain trains ViTPose without the class slot; an all-zero slot adds nothing, exactly."""

    def fix_up(self, converted: ConvertedStateDict) -> None:
        pos_embed = converted.get("backbone.pos_embed")
        if pos_embed is not None and "backbone.cls_token" not in converted:
            converted["backbone.pos_embed"] = torch.cat([pos_embed.new_zeros(1, 1, pos_embed.shape[-1]), pos_embed], 1)


class _HuggingFace(ViTPoseLayout):
    """transformers keeps query, key and value as three Linear layers; posecore (and timm) fuse them."""

    _SEPARATE = re.compile(r"^backbone\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")

    def fix_up(self, converted: ConvertedStateDict) -> None:
        parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        for key in list(converted):
            found = self._SEPARATE.match(key)
            if found:
                parts.setdefault((found[1], found[3]), {})[found[2]] = converted[key]
        for (block, kind), tensors in parts.items():
            if len(tensors) == 3:  # an incomplete triple stays unconverted, so the report shows it
                converted[f"backbone.blocks.{block}.attn.qkv.{kind}"] = torch.cat(
                    [tensors["query"], tensors["key"], tensors["value"]]
                )
                for name in ("query", "key", "value"):
                    del converted[f"backbone.encoder.layer.{block}.attention.attention.{name}.{kind}"]


mmpose0x = _Mmpose0x(
    "vitpose-mmpose0x",
    markers=("keypoint_head.", "associate_keypoint_heads."),
    rules=((r"^keypoint_head\.", "head."),),
)

mmpose1x = _Mmpose1x(
    "vitpose-mmpose1x",
    markers=("backbone.layers.", "backbone.patch_embed.projection."),
    rules=(
        (r"^backbone\.patch_embed\.projection\.", "backbone.patch_embed.proj."),
        (r"^backbone\.layers\.(\d+)\.ln1\.", r"backbone.blocks.\1.norm1."),
        (r"^backbone\.layers\.(\d+)\.ln2\.", r"backbone.blocks.\1.norm2."),
        (r"^backbone\.layers\.(\d+)\.attn\.", r"backbone.blocks.\1.attn."),
        (r"^backbone\.layers\.(\d+)\.ffn\.layers\.0\.0\.", r"backbone.blocks.\1.mlp.fc1."),
        (r"^backbone\.layers\.(\d+)\.ffn\.layers\.1\.", r"backbone.blocks.\1.mlp.fc2."),
        (r"^backbone\.ln1\.", "backbone.last_norm."),
    ),
)

hf = _HuggingFace(
    "vitpose-hf",
    markers=("backbone.embeddings.", "backbone.encoder.layer."),
    rules=(
        (r"^backbone\.embeddings\.patch_embeddings\.projection\.", "backbone.patch_embed.proj."),
        (r"^backbone\.embeddings\.position_embeddings$", "backbone.pos_embed"),
        (r"^backbone\.encoder\.layer\.(\d+)\.layernorm_before\.", r"backbone.blocks.\1.norm1."),
        (r"^backbone\.encoder\.layer\.(\d+)\.layernorm_after\.", r"backbone.blocks.\1.norm2."),
        (r"^backbone\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"backbone.blocks.\1.attn.proj."),
        (r"^backbone\.encoder\.layer\.(\d+)\.mlp\.", r"backbone.blocks.\1.mlp."),
        (r"^backbone\.layernorm\.", "backbone.last_norm."),
        (r"^head\.deconv1\.", "head.deconv_layers.0."),
        (r"^head\.batchnorm1\.", "head.deconv_layers.1."),
        (r"^head\.deconv2\.", "head.deconv_layers.3."),
        (r"^head\.batchnorm2\.", "head.deconv_layers.4."),
        (r"^head\.conv\.", "head.final_layer."),
    ),
)
