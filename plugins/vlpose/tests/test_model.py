"""The pieces, checked by hand: prompts in the ViT, the text table's exactness, the matcher, the
dual head's wiring and freezing, the style field, the layer-decay layer count."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from posecore_vlpose.datasets import StyledDataset
from posecore_vlpose.model import ORIGINAL_LAYER_COUNT, DualBranchHead, RelationMatcher, VLPoseModel, VLPoseViT
from posecore_vlpose.text import (
    BertTextEncoder,
    PromptTokenizer,
    WordPieceTokenizer,
    default_style_prompts,
    make_tokenizer,
    word_vocabulary,
)
from torch import nn

import posecore
from posecore.config import OptimizerConfig


def _tiny(**overrides: object) -> VLPoseModel:
    backbone = VLPoseViT(embed_dim=32, depth=2, num_heads=2, patch_size=8, patch_padding=1, input_size=(32, 48),
                         prompt_mode=overrides.pop("prompt_mode", "deep"), prompt_tokens=overrides.pop("prompt_tokens", 3))
    options = dict(num_keypoints=3, input_size=(32, 48), prompts={"cartoon": "a cartoon human",
                                                                   "sketch": "a quick pencil sketch of a human"},
                   text_vocab_size=32, text_width=16, text_layers=2, text_heads=2, text_intermediate=32,
                   text_max_positions=16, matcher_heads=2, deconv_channels=(8,))
    options.update(overrides)
    return VLPoseModel(backbone, **options)


def test_deep_prompts_replace_the_previous_ones_before_each_block() -> None:
    torch.manual_seed(0)
    vit = VLPoseViT(embed_dim=16, depth=3, num_heads=2, patch_size=8, patch_padding=1, input_size=(16, 24),
                    prompt_mode="deep", prompt_tokens=2).eval()
    images = torch.randn(2, 3, 24, 16)
    tokens, grid = vit.patch_embed(images)
    x = tokens + vit.pos_embed[:, 1:]  # no class slot added
    x = torch.cat([vit.prompt_embed.expand(2, -1, -1), x], 1)
    for i, block in enumerate(vit.blocks):
        if i:
            x = torch.cat([vit.deep_prompt_embed[i - 1].expand(2, -1, -1), x[:, 2:]], 1)
        x = block(x)
    expected = vit.last_norm(x[:, 2:]).transpose(1, 2).reshape(2, 16, *grid)
    torch.testing.assert_close(vit(images), expected)
    assert vit.deep_prompt_embed.shape == (2, 2, 16)


def test_shallow_prompts_stay_through_all_blocks() -> None:
    torch.manual_seed(0)
    vit = VLPoseViT(embed_dim=16, depth=2, num_heads=2, patch_size=8, patch_padding=1, input_size=(16, 24),
                    prompt_mode="shallow", prompt_tokens=2).eval()
    images = torch.randn(1, 3, 24, 16)
    tokens, grid = vit.patch_embed(images)
    x = torch.cat([vit.prompt_embed, tokens + vit.pos_embed[:, 1:]], 1)
    for block in vit.blocks:
        x = block(x)
    torch.testing.assert_close(vit(images), vit.last_norm(x[:, 2:]).transpose(1, 2).reshape(1, 16, *grid))
    assert not hasattr(vit, "deep_prompt_embed")


def test_frozen_stages_freeze_as_the_original() -> None:
    vit = VLPoseViT(embed_dim=16, depth=3, num_heads=2, prompt_mode="deep", prompt_tokens=2, frozen_stages=3)
    trainable = {n for n, p in vit.named_parameters() if p.requires_grad}
    assert trainable == {"prompt_embed", "deep_prompt_embed"}
    last_layer = VLPoseViT(embed_dim=16, depth=3, num_heads=2, frozen_stages=2)  # the "ll" configs
    trainable = {n.split(".")[0] + "." + n.split(".")[1] if n.startswith("blocks") else n.split(".")[0]
                 for n, p in last_layer.named_parameters() if p.requires_grad}
    assert trainable == {"blocks.2", "last_norm"}
    with pytest.raises(posecore.ConfigError, match="prompt_tokens"):
        VLPoseViT(embed_dim=16, depth=2, num_heads=2, prompt_mode="deep", prompt_tokens=0)


def test_cached_prompt_table_equals_per_batch_padding() -> None:
    """The brief's exactness claim: run once padded to the longest prompt, slice per batch."""
    torch.manual_seed(0)
    model = _tiny().eval()
    ids, lengths = model._tokens()
    for indices in ([0], [1, 0], [2, 2], [0, 1, 2]):
        index = torch.tensor(indices)
        length = int(lengths[index].max())
        rows = ids[index, :length]
        mask = (torch.arange(length)[None] < lengths[index][:, None]).long()
        with torch.no_grad():
            direct = model.text_encoder(rows, mask)
        torch.testing.assert_close(model.text_features(index), direct, rtol=0, atol=1e-6)
    assert model._cache is not None
    model.load_state_dict(model.state_dict())
    assert model._cache is None  # new weights: recomputed


def test_text_runs_live_with_dropout_in_training_and_needs_no_grad() -> None:
    torch.manual_seed(0)
    model = _tiny(text_dropout=0.5).train()
    index = torch.tensor([1, 1])
    first, second = model.text_features(index), model.text_features(index)
    assert not torch.equal(first, second) and not first.requires_grad
    model.live_text_in_train = False
    torch.testing.assert_close(model.text_features(index), model.text_features(index))


def test_bert_layer_matches_a_hand_computation() -> None:
    torch.manual_seed(0)
    bert = BertTextEncoder(vocab_size=10, width=8, layers=1, heads=2, intermediate=16, max_positions=6).eval()
    ids, mask = torch.tensor([[2, 5, 6, 3, 0]]), torch.tensor([[1, 1, 1, 1, 0]])
    emb = bert.embeddings
    h = emb.LayerNorm(emb.word_embeddings(ids) + emb.position_embeddings(torch.arange(5))[None])
    layer = bert.encoder.layer[0]
    att = layer.attention._modules["self"]
    q, k, v = (lin(h).view(1, 5, 2, 4).transpose(1, 2) for lin in (att.query, att.key, att.value))
    scores = q @ k.transpose(-1, -2) / 2.0 + (1 - mask[:, None, None, :].float()) * -10000.0
    a = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, 5, 8)
    h = layer.attention.output.LayerNorm(layer.attention.output.dense(a) + h)
    h = layer.output.LayerNorm(layer.output.dense(nn.functional.gelu(layer.intermediate.dense(h))) + h)
    torch.testing.assert_close(bert(ids, mask), h)


def test_tokenizers(tmp_path) -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "photo", "of", "human", "in", "ink", "paint", "##ing", "style", "."]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    tokenizer = WordPieceTokenizer(path)
    assert tokenizer("A photo of a Human in ink painting style.") == [2, 4, 5, 6, 4, 7, 8, 9, 10, 11, 12, 13, 3]
    assert tokenizer("zebra") == [2, 1, 3]
    words = PromptTokenizer(word_vocabulary(["a photo", "a sketch"]))
    assert words("a sketch") == [2, 4, 6, 3]
    with pytest.warns(UserWarning, match="vocab.txt"):
        make_tokenizer(str(tmp_path / "missing.txt"), ["a photo"], 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_tokenizer(str(path), ["a photo"], 100).vocab["##ing"] == 11


def test_default_prompts_cover_humanart_and_mention_human() -> None:
    prompts = default_style_prompts()
    assert len(prompts) == 19 and prompts["ink_painting"] == "a photo of a human in ink painting style"
    assert all("human" in sentence for sentence in prompts.values())


def test_matcher_is_concat_attention_with_post_norm() -> None:
    torch.manual_seed(0)
    matcher = RelationMatcher(8, heads=2, attn_drop=0.0).eval()
    image, text = torch.randn(1, 5, 8), torch.randn(1, 3, 8)
    keys = torch.cat([image, text], 1)
    q = matcher.q(image).view(1, 5, 2, 4).transpose(1, 2)
    k = matcher.k(keys).view(1, 8, 2, 4).transpose(1, 2)
    v = matcher.v(keys).view(1, 8, 2, 4).transpose(1, 2)
    out = ((q @ k.transpose(-1, -2) / math.sqrt(4)).softmax(-1) @ v).transpose(1, 2).reshape(1, 5, 8)
    torch.testing.assert_close(matcher(image, text), matcher.norm(matcher.proj(out) + image))


def test_dual_head_wiring_and_frozen_main_branch() -> None:
    torch.manual_seed(0)
    head = DualBranchHead(8, 3, (4, 4)).eval()
    for p in head.parameters():
        nn.init.normal_(p, std=0.3) if p.dim() > 1 else None
    e, r = torch.randn(1, 8, 3, 2), torch.randn(1, 8, 3, 2)
    b0, b1 = head.deconv_layers
    relu = torch.relu
    out0 = relu(b0.bn0(b0.deconv0(e + r))) + relu(b0.bn1(b0.deconv1(e)))
    out1 = relu(b1.bn0(b1.deconv0(out0))) + relu(b1.bn1(b1.deconv1(out0)))
    torch.testing.assert_close(head(e, r), head.final_layer(out1))
    frozen = {n for n, p in head.named_parameters() if not p.requires_grad}
    assert frozen == {f"deconv_layers.{i}.{m}.{w}" for i in (0, 1) for m, w in
                      (("deconv0", "weight"), ("bn0", "weight"), ("bn0", "bias"))}


def test_style_selects_the_prompt_and_unknown_styles_fail() -> None:
    torch.manual_seed(0)
    model = _tiny().eval()
    image = torch.randn(2, 3, 48, 32)
    a = model({"image": image, "style": ["cartoon", "sketch"]})
    b = model({"image": image, "style": ["cartoon", "cartoon"]})
    torch.testing.assert_close(a[0], b[0])
    model.head.final_layer.weight.data.normal_()
    model.matcher.v.weight.data.normal_()
    a = model({"image": image, "style": ["cartoon", "sketch"]})
    b = model({"image": image, "style": ["cartoon", "cartoon"]})
    assert not torch.allclose(a[1], b[1])
    with pytest.raises(posecore.DataError, match="no prompt for style"):
        model({"image": image, "style": ["cartoon", "mural"]})
    model.default_style = "sketch"
    torch.testing.assert_close(model({"image": image})[1], model({"image": image, "style": ["cartoon", "sketch"]})[1])
    model.on_stage(0, {"text_mode": "fixed"})
    torch.testing.assert_close(model({"image": image})[1], model({"image": image, "style": ["x", "y"]})[1])


def test_legacy_quirks_reproduce_the_twelve_layer_decay() -> None:
    from posecore.engine import Trainer  # noqa: F401 - the engine's optimiser groups (import check)
    from posecore.engine._optim import build_param_groups

    def scales(legacy: bool) -> dict[str, float]:
        backbone = VLPoseViT(embed_dim=16, depth=24, num_heads=2)
        model = VLPoseModel(backbone, legacy_quirks=legacy, text_vocab_size=32, text_width=16, text_layers=1,
                            text_heads=2, text_intermediate=16, text_max_positions=16, matcher_heads=2,
                            deconv_channels=(8,))
        groups = build_param_groups(model, OptimizerConfig(layer_decay=0.8))
        return {name: g["lr_scale"] for g in groups for name in g["names"]}

    legacy, fixed = scales(True), scales(False)
    assert ORIGINAL_LAYER_COUNT == 12
    # original: scale = rate ** (12 + 1 - layer_id); block 23 has id 24 -> 0.8 ** -11 (above 1: the bug)
    assert legacy["backbone.blocks.23.attn.qkv.weight"] == pytest.approx(0.8 ** -11)
    assert legacy["backbone.patch_embed.proj.weight"] == pytest.approx(0.8 ** 13)
    assert fixed["backbone.blocks.23.attn.qkv.weight"] == pytest.approx(0.8)
    assert fixed["backbone.patch_embed.proj.weight"] == pytest.approx(0.8 ** 25)
    assert legacy["matcher.q.weight"] == fixed["matcher.q.weight"] == 1.0


def test_corrected_mode_runs_frozen_blocks_without_drop_path() -> None:
    torch.manual_seed(0)
    for legacy in (True, False):
        backbone = VLPoseViT(embed_dim=16, depth=2, num_heads=2, patch_size=8, patch_padding=1, input_size=(32, 48),
                             drop_path_rate=0.5, prompt_mode="deep", prompt_tokens=2, frozen_stages=2)
        model = VLPoseModel(backbone, num_keypoints=3, input_size=(32, 48), text_mode="fixed", legacy_quirks=legacy,
                            text_vocab_size=64, text_width=16, text_layers=1, text_heads=2, text_intermediate=16,
                            text_max_positions=16, matcher_heads=2, deconv_channels=(8,)).train()
        model.loss(model.example_batch(2))
        assert all(block.training == legacy for block in backbone.blocks)


def test_styled_dataset_reads_the_parent_folder(tmp_path) -> None:
    class Inner(torch.utils.data.Dataset):
        meta = object()

        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> dict:
            return {"image_path": f"/d/HumanArt/images/2D_virtual_human/{['cartoon', 'mural', 'sketch'][index]}/{index}.jpg"}

    styled = StyledDataset(Inner(), source="parent_dir")
    assert [styled[i]["style"] for i in range(3)] == ["cartoon", "mural", "sketch"]
    cycled = StyledDataset(Inner(), source="cycle", styles=("a", "b"))
    assert [cycled[i]["style"] for i in range(3)] == ["a", "b", "a"]
    with pytest.raises(posecore.ConfigError):
        StyledDataset(Inner(), source="cycle")
