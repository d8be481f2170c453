"""Loading the released VLPose checkpoints (``..._kw1_vit-{S_dp50,B_dp20,L_dp10,H_dp5}.py`` models).

The state dicts are built here with the original keys and shapes, written down from the original
code (mmpretrain ``VisionTransformer`` + ``ViTPrompt``, ``VisionLanguageHeatmapHead``,
``ConcatAttentionMatcher``, ``text_embed_proj`` and LAVIS' ``BlipFeatureExtractor`` under
``text_encoder.``), not from this plugin's model; where the brief's key lists exist
(``shared/briefs/checkpoint-keys/keys_vlpose_*.txt``) they are compared with these. ViT-S is
fully materialised and saved as mmengine saves (``{"state_dict", "meta"}``); B, L and H are
checked on the meta device. Tensors the converter drops (the BLIP image tower, cross-attention)
are zero-stride views of the right shape, and the kept BERT matrices repeat one random row, so the
file stays small.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from posecore_vlpose.model import VLPoseModel, VLPoseViT

import posecore
from posecore import load_weights

#: size -> (width, depth, heads, deep prompt tokens)
RELEASED = {"s": (384, 12, 12, 50), "b": (768, 12, 12, 20), "l": (1024, 24, 16, 10), "h": (1280, 32, 16, 5)}
ARCH = {"s": "small", "b": "base", "l": "large", "h": "huge"}
BRIEF_KEYS = Path("/work/shared/briefs/checkpoint-keys")


def _shape_only(*shape: int) -> torch.Tensor:
    return torch.zeros(()).expand(shape)


def released_keys(size: str) -> dict[str, tuple[int, ...]]:
    """The model part of a released ``dp`` checkpoint: key -> shape (the text encoder apart)."""
    width, depth, _, tokens = RELEASED[size]
    keys: dict[str, tuple[int, ...]] = {
        "backbone.cls_token": (1, 1, width), "backbone.pos_embed": (1, 193, width),
        "backbone.patch_embed.projection.weight": (width, 3, 16, 16), "backbone.patch_embed.projection.bias": (width,),
    }
    for i in range(depth):
        layer = f"backbone.layers.{i}"
        for name, shape in (("ln1.weight", (width,)), ("ln1.bias", (width,)),
                            ("attn.qkv.weight", (3 * width, width)), ("attn.qkv.bias", (3 * width,)),
                            ("attn.proj.weight", (width, width)), ("attn.proj.bias", (width,)),
                            ("ln2.weight", (width,)), ("ln2.bias", (width,)),
                            ("ffn.layers.0.0.weight", (4 * width, width)), ("ffn.layers.0.0.bias", (4 * width,)),
                            ("ffn.layers.1.weight", (width, 4 * width)), ("ffn.layers.1.bias", (width,))):
            keys[f"{layer}.{name}"] = shape
    keys.update({"backbone.ln1.weight": (width,), "backbone.ln1.bias": (width,),
                 "backbone.prompt_embed": (1, tokens, width), "backbone.deep_prompt_embed": (depth - 1, tokens, width)})
    for stage, channels in ((0, width), (1, 256)):
        prefix = f"head.deconv_layers.{stage}"
        keys[f"{prefix}.deconv0.weight"] = (channels, 256, 4, 4)
        keys[f"{prefix}.deconv1.weight"] = (channels, 256, 4, 4)
        for bn in ("bn0", "bn1"):
            for name in ("weight", "bias", "running_mean", "running_var"):
                keys[f"{prefix}.{bn}.{name}"] = (256,)
            keys[f"{prefix}.{bn}.num_batches_tracked"] = ()
    keys.update({"head.final_layer.weight": (17, 256, 1, 1), "head.final_layer.bias": (17,)})
    for name in ("q", "k", "v", "proj"):
        keys[f"matcher.{name}.weight"] = (width, width)
        keys[f"matcher.{name}.bias"] = (width,)
    keys.update({"matcher.norm.weight": (width,), "matcher.norm.bias": (width,)})
    if width != 768:
        keys.update({"text_embed_proj.weight": (width, 768), "text_embed_proj.bias": (width,)})
    return keys


def blip_keys() -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """LAVIS ``blip_feature_extractor`` (base) under ``text_encoder.``: key -> shape, and the keys
    VLPose's text path uses (the BERT embeddings and self-attention layers)."""
    keys: dict[str, tuple[int, ...]] = {}
    used: set[str] = set()
    bert = "text_encoder.text_encoder"
    keys[f"{bert}.embeddings.position_ids"] = (1, 512)
    for name, shape in (("word_embeddings.weight", (30524, 768)), ("position_embeddings.weight", (512, 768)),
                        ("LayerNorm.weight", (768,)), ("LayerNorm.bias", (768,))):
        keys[f"{bert}.embeddings.{name}"] = shape
        used.add(f"{bert}.embeddings.{name}")
    for i in range(12):
        layer = f"{bert}.encoder.layer.{i}"
        for part in ("attention", "crossattention"):
            for proj in ("query", "key", "value"):
                keys[f"{layer}.{part}.self.{proj}.weight"] = (768, 768)
                keys[f"{layer}.{part}.self.{proj}.bias"] = (768,)
            keys.update({f"{layer}.{part}.output.dense.weight": (768, 768), f"{layer}.{part}.output.dense.bias": (768,),
                         f"{layer}.{part}.output.LayerNorm.weight": (768,), f"{layer}.{part}.output.LayerNorm.bias": (768,)})
        keys.update({f"{layer}.intermediate.dense.weight": (3072, 768), f"{layer}.intermediate.dense.bias": (3072,),
                     f"{layer}.output.dense.weight": (768, 3072), f"{layer}.output.dense.bias": (768,),
                     f"{layer}.output.LayerNorm.weight": (768,), f"{layer}.output.LayerNorm.bias": (768,)})
        used |= {k for k in keys if k.startswith(layer + ".") and ".crossattention." not in k}
    visual = "text_encoder.visual_encoder"
    keys.update({f"{visual}.cls_token": (1, 1, 768), f"{visual}.pos_embed": (1, 197, 768),
                 f"{visual}.patch_embed.proj.weight": (768, 3, 16, 16), f"{visual}.patch_embed.proj.bias": (768,)})
    for i in range(12):
        block = f"{visual}.blocks.{i}"
        keys.update({f"{block}.norm1.weight": (768,), f"{block}.norm1.bias": (768,),
                     f"{block}.attn.qkv.weight": (2304, 768), f"{block}.attn.qkv.bias": (2304,),
                     f"{block}.attn.proj.weight": (768, 768), f"{block}.attn.proj.bias": (768,),
                     f"{block}.norm2.weight": (768,), f"{block}.norm2.bias": (768,),
                     f"{block}.mlp.fc1.weight": (3072, 768), f"{block}.mlp.fc1.bias": (3072,),
                     f"{block}.mlp.fc2.weight": (768, 3072), f"{block}.mlp.fc2.bias": (768,)})
    keys.update({f"{visual}.norm.weight": (768,), f"{visual}.norm.bias": (768,),
                 "text_encoder.vision_proj.weight": (256, 768), "text_encoder.vision_proj.bias": (256,),
                 "text_encoder.text_proj.weight": (256, 768), "text_encoder.text_proj.bias": (256,),
                 "text_encoder.temp": ()})
    return keys, used


def released_model(size: str, prompt: str = "dp") -> VLPoseModel:
    """The released model of ``size`` as this plugin builds it (the presets' model)."""
    width, depth, _, tokens = RELEASED[size]
    backbone = VLPoseViT(arch=ARCH[size], prompt_mode="deep" if prompt == "dp" else "shallow", prompt_tokens=tokens,
                         frozen_stages=depth)
    return VLPoseModel(backbone, vocab_file=None, prompts={"cartoon": "a cartoon human", "sketch": "a sketch of a human"},
                       codec=posecore.build("codecs", {"type": "udp_heatmap", "input_size": [192, 256],
                                                        "heatmap_size": [48, 64]}))


@pytest.mark.parametrize("size", list(RELEASED))
def test_key_lists_match_the_brief(size: str) -> None:
    path = BRIEF_KEYS / f"keys_vlpose_{size}_dp{RELEASED[size][3]}.txt"
    if not path.is_file():
        pytest.skip("the brief's key lists are not on this machine")
    listed = {}
    for line in path.read_text().splitlines():
        name, _, shape = line.partition(" ")
        if name == "text_encoder.*":
            continue
        listed[name] = tuple(int(x) for x in shape.strip("() ").split(",") if x.strip())
    assert listed == released_keys(size)


def _state_dict(size: str, materialise: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    blip, used = blip_keys()
    state: dict[str, torch.Tensor] = {}
    for key, shape in {**released_keys(size), **blip}.items():
        if not materialise:
            state[key] = torch.empty(shape, device="meta", dtype=torch.long if key.endswith(("tracked", "_ids")) else None)
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("position_ids"):
            state[key] = torch.arange(512)[None]
        elif key.startswith("text_encoder.") and key not in used:
            state[key] = _shape_only(*shape)
        elif key.startswith("text_encoder.") and len(shape) == 2:
            # the BERT's matrices: rows repeat one random vector (a stride-0 view), so the file stays small
            state[key] = (0.02 * torch.randn(shape[-1])).expand(shape)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape) + 0.5
        elif key.endswith(("LayerNorm.weight", "ln1.weight", "ln2.weight", "norm.weight", "bn0.weight", "bn1.weight")):
            state[key] = 1 + 0.1 * torch.randn(shape)
        else:
            state[key] = 0.02 * torch.randn(shape)
    return state


def test_released_s_loads_strict_forward_decode(tmp_path: Path) -> None:
    state = _state_dict("s", materialise=True)
    path = tmp_path / "best_coco_AP_epoch_210.pth"
    torch.save({"meta": {"mmengine_version": "0.7.0", "epoch": 210}, "state_dict": state,
                "message_hub": {}}, path)
    model = released_model("s")
    report = load_weights(model, path, strict=True)
    assert report.converter == "vlpose-released"
    assert not report.missing and not report.unexpected and not report.mismatched
    dropped = {key for key, _ in report.dropped}
    assert "backbone.cls_token" in dropped
    assert all(key.startswith(("text_encoder.", "backbone.cls_token")) for key in dropped)
    # values landed where they belong
    loaded = model.state_dict()
    torch.testing.assert_close(loaded["backbone.blocks.3.mlp.fc1.weight"], state["backbone.layers.3.ffn.layers.0.0.weight"])
    torch.testing.assert_close(loaded["backbone.pos_embed"], state["backbone.pos_embed"])
    torch.testing.assert_close(loaded["text_encoder.encoder.layer.5.attention.self.key.weight"],
                               state["text_encoder.text_encoder.encoder.layer.5.attention.self.key.weight"])
    torch.testing.assert_close(loaded["head.deconv_layers.1.bn1.running_var"], state["head.deconv_layers.1.bn1.running_var"])
    model.eval()
    batch = {"image": torch.randint(0, 255, (1, 3, 256, 192), dtype=torch.uint8), "style": ["cartoon"]}
    heatmaps = model(batch)
    assert heatmaps.shape == (1, 17, 64, 48) and torch.isfinite(heatmaps).all()
    result = model.predict(batch)
    assert result.keypoints.shape == (1, 17, 2) and result.scores.shape == (1, 17)
    assert torch.isfinite(result.keypoints).all()


@pytest.mark.parametrize("size,prompt", [("b", "dp"), ("l", "dp"), ("h", "dp"), ("s", "sp"), ("h", "sp")])
def test_released_bigger_sizes_fit_exactly(size: str, prompt: str) -> None:
    """B/L/H dp on the meta device; the sp files are the same without ``deep_prompt_embed``."""
    state = _state_dict(size, materialise=False)
    if prompt == "sp":
        del state["backbone.deep_prompt_embed"]
    with torch.device("meta"):
        model = released_model(size, prompt)
    report = load_weights(model, {"meta": {}, "state_dict": state}, strict=True)
    assert report.converter == "vlpose-released"
    assert not report.missing and not report.unexpected and not report.mismatched


def test_vitpose_checkpoint_initialises_the_main_branch() -> None:
    """An mmpose 1.x ViTPose file (tiny stand-in of its layout) -> ViT + main branch + final layer."""
    width, depth = 32, 2
    torch.manual_seed(0)
    state = {"backbone.cls_token": torch.randn(1, 1, width), "backbone.pos_embed": torch.randn(1, 1 + 4 * 3, width),
             "backbone.patch_embed.projection.weight": torch.randn(width, 3, 16, 16),
             "backbone.patch_embed.projection.bias": torch.randn(width),
             "backbone.ln1.weight": torch.randn(width), "backbone.ln1.bias": torch.randn(width),
             "head.deconv_layers.0.weight": torch.randn(width, 8, 4, 4),
             "head.deconv_layers.3.weight": torch.randn(8, 8, 4, 4),
             "head.final_layer.weight": torch.randn(17, 8, 1, 1), "head.final_layer.bias": torch.randn(17)}
    for bn in (1, 4):
        state.update({f"head.deconv_layers.{bn}.{n}": torch.rand(8) for n in ("weight", "bias", "running_mean",
                                                                              "running_var")})
        state[f"head.deconv_layers.{bn}.num_batches_tracked"] = torch.tensor(5)
    for i in range(depth):
        layer = f"backbone.layers.{i}"
        state.update({f"{layer}.ln1.weight": torch.randn(width), f"{layer}.ln1.bias": torch.randn(width),
                      f"{layer}.attn.qkv.weight": torch.randn(3 * width, width), f"{layer}.attn.qkv.bias": torch.randn(3 * width),
                      f"{layer}.attn.proj.weight": torch.randn(width, width), f"{layer}.attn.proj.bias": torch.randn(width),
                      f"{layer}.ln2.weight": torch.randn(width), f"{layer}.ln2.bias": torch.randn(width),
                      f"{layer}.ffn.layers.0.0.weight": torch.randn(4 * width, width),
                      f"{layer}.ffn.layers.0.0.bias": torch.randn(4 * width),
                      f"{layer}.ffn.layers.1.weight": torch.randn(width, 4 * width),
                      f"{layer}.ffn.layers.1.bias": torch.randn(width)})
    backbone = VLPoseViT(embed_dim=width, depth=depth, num_heads=2, input_size=(48, 64), prompt_mode="deep",
                         prompt_tokens=2)
    model = VLPoseModel(backbone, deconv_channels=(8, 8), text_vocab_size=32, text_width=16, text_layers=1,
                        text_heads=2, text_intermediate=16, text_max_positions=32, matcher_heads=2)
    report = load_weights(model, {"state_dict": state, "meta": {}}, warn=False)
    assert report.converter == "vlpose-from-vitpose"
    assert not report.unexpected and not report.mismatched
    missing = set(report.missing)
    assert not any(".deconv0." in k or ".bn0." in k or k.startswith("backbone.blocks") for k in missing)
    assert all(k.startswith(("text_encoder.", "matcher.", "text_embed_proj.", "backbone.prompt_embed",
                             "backbone.deep_prompt_embed", "head.deconv_layers.0.deconv1", "head.deconv_layers.0.bn1",
                             "head.deconv_layers.1.deconv1", "head.deconv_layers.1.bn1")) for k in missing)
    torch.testing.assert_close(model.head.deconv_layers[1].bn0.running_mean, state["head.deconv_layers.4.running_mean"])
    torch.testing.assert_close(model.head.deconv_layers[0].deconv0.weight, state["head.deconv_layers.0.weight"])
