"""PGVL's pieces against hand computations, every preset's model forward and backward, and the
optimiser groups."""

from __future__ import annotations

import copy
import math

import attrs
import pytest
import torch
import torch.nn.functional as F
from posecore_pgvl.fusion import ParseGraphFusion, ScrambledSelfAttention
from posecore_pgvl.model import contrastive_loss, down_target_cells
from posecore_pgvl.text import tokenize

import posecore


def test_scrambled_self_attention_matches_the_original_layout() -> None:
    """Head-major sequence of h*N chunk tokens, one softmax over all of them, read back row-major."""
    torch.manual_seed(0)
    attention = ScrambledSelfAttention(8, 2)
    tokens = torch.randn(2, 3, 8)
    qkv = attention.qkv(tokens)  # (B, N, 3 * d): [q | k | v], each [head 0 | head 1]
    count, heads, width = 3, 2, 4
    sequences = []
    for part in range(3):
        chunked = qkv[..., part * 8:(part + 1) * 8]
        # item s of the sequence: head s // N, token s % N
        sequences.append(torch.stack([chunked[:, s % count, (s // count) * width:(s // count + 1) * width]
                                      for s in range(heads * count)], dim=1))
    query, key, value = sequences
    weights = (query @ key.transpose(1, 2) * width ** -0.5).softmax(dim=-1)
    mixed = weights @ value  # (B, h*N, d/h)
    expected = torch.stack([torch.cat([mixed[:, n * heads + j] for j in range(heads)], dim=-1) for n in range(count)], 1)
    torch.testing.assert_close(attention(tokens), attention.proj(expected))


def test_parse_graph_has_seven_nodes_and_the_original_widths() -> None:
    fusion = ParseGraphFusion()
    root = fusion.parse_layers[0][0]
    widths = [root.norm1.weight.numel()] + [c.norm1.weight.numel() for c in root.block] + \
             [g.norm1.weight.numel() for c in root.block for g in c.block]
    assert widths == [512, 256, 256, 128, 128, 128, 128]
    assert all(g.block is None for c in root.block for g in c.block)
    # the Guided Module's first source is the 512-wide root input at every level
    assert root.block[0].block[1].t_node_w.linear_transforms[0].weight.shape == (128, 512)
    assert sum(p.numel() for p in fusion.parameters()) == 22_876_188  # the released `my` module


def test_gates_and_residuals_by_hand() -> None:
    """A leaf node with the attentions zeroed: r = o, out = sigmoid(w) * G + r."""
    torch.manual_seed(0)
    fusion = ParseGraphFusion(parse_dims=(8,), depths=(0,), splits=((2,),), root_split=2, target_dim=8, mode=3,
                              cross_heads=2, dropout=0.0)
    node = fusion.parse_layers[0][0]
    for module in (node.self_attnt, node.self_attnv, node.cross_attnt, node.cross_attnv):
        for parameter in module.parameters():
            parameter.data.zero_()
    text, visual = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    out_t, out_v = node(text, visual, (text, visual))
    guided = node.t_node_w(text, (text, text))
    torch.testing.assert_close(out_t, torch.sigmoid(node.w) * guided + text)
    torch.testing.assert_close(out_v, torch.sigmoid(node.w1) * node.v_node_w(visual, (visual, visual)) + visual)


def _original_down_target(x: float, y: float, visible: float, grid: tuple[int, int], stride: float
                          ) -> tuple[list[tuple[int, int]], float]:
    """The original's _msra_generate_target_down, loop for loop, reduced to its 1.0 cells."""
    height, width = grid
    sigma = 2 / 4.0
    tmp = sigma * 3
    weight = visible
    mu_x, mu_y = int(x / stride + 0.5), int(y / stride + 0.5)
    ul = [int(mu_x - tmp), int(mu_y - tmp)]
    br = [int(mu_x + tmp + 1), int(mu_y + tmp + 1)]
    if ul[0] >= width or ul[1] >= height or br[0] < 0 or br[1] < 0:
        weight = 0
    cells = []
    if weight > 0.5:
        size = 2 * tmp + 1
        centre = size // 2
        target = torch.zeros(height, width)
        gx = torch.arange(0, size)[None]
        gy = gx.T
        g = torch.exp(-((gx - centre) ** 2 + (gy - centre) ** 2) / (2 * sigma ** 2))
        g_x = max(0, -ul[0]), min(br[0], width) - ul[0]
        g_y = max(0, -ul[1]), min(br[1], height) - ul[1]
        img_x = max(0, ul[0]), min(br[0], width)
        img_y = max(0, ul[1]), min(br[1], height)
        target[img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[int(g_y[0]):int(g_y[1]), int(g_x[0]):int(g_x[1])]
        cells = [(int(r), int(c)) for r, c in (target == 1).nonzero()]
    return cells, float(weight)


@pytest.mark.parametrize("cell", [-5, -4, -3, -2, -1, 0, 1, 2, 6, 10, 11, 12, 13, 14, 15])
def test_down_target_edge_cases_match_the_original(cell: int) -> None:
    grid, stride = (16, 12), 16.0
    for x, y, visible in ((cell * stride + 3.0, 100.0, 1.0), (90.0, cell * stride - 7.9, 1.0), (cell * 16.0, cell * 16.0, 0.0)):
        mask, weights = down_target_cells(torch.tensor([[[x, y]]]), torch.tensor([[visible]]), (192, 256), grid)
        cells, weight = _original_down_target(x, y, visible, grid, stride)
        assert weights.item() == weight, (x, y)
        assert [(int(r), int(c)) for r, c in mask[0, 0].nonzero()] == cells, (x, y)


def test_down_target_known_cells() -> None:
    """m = 0 and 1 peak one cell further in; m = W - 1 at W - 1; m = W has no peak but keeps its weight."""
    points = torch.tensor([[[0.0, 100.0], [16.0, 100.0], [11 * 16.0, 100.0], [12 * 16.0, 100.0]]])
    mask, weights = down_target_cells(points, torch.ones(1, 4), (192, 256), (16, 12))
    columns = [row.nonzero()[:, 1].tolist() for row in mask[0]]
    assert columns == [[1], [2], [11], []]
    assert weights.tolist() == [[1.0, 1.0, 1.0, 1.0]]


def test_contrastive_loss_by_hand() -> None:
    torch.manual_seed(0)
    visual = torch.randn(2, 4, 3, 3)
    text = torch.randn(2, 2, 4)
    mask = torch.zeros(2, 2, 3, 3)
    mask[0, 0, 1, 1] = mask[0, 1, 2, 0] = mask[1, 0, 0, 2] = 1  # keypoint (1, 1) has no cell: zero vector
    weights = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    scale = torch.tensor(math.log(1 / 0.07))
    total_v = total_t = 0.0
    for b in range(2):
        v = torch.stack([(visual[b] * mask[b, k]).sum(dim=(1, 2)) for k in range(2)])
        v = F.normalize(v, dim=-1)
        t = F.normalize(text[b], dim=-1)
        logits = scale.exp() * v @ t.T  # [k, j]
        for j in range(2):
            total_v += weights[b, j] * F.cross_entropy(logits[:, j][None], torch.tensor([j]))
            total_t += weights[b, j] * F.cross_entropy(logits[j][None], torch.tensor([j]))
    expected = (total_v / 4 + total_t / 4) / 2
    torch.testing.assert_close(contrastive_loss(visual, text, mask, weights, scale), expected)


def test_tokenize_matches_clip_and_refuses_long_prompts() -> None:
    tokens = tokenize(["left shoulder", "lose at the center of the face"], 12)
    assert tokens[0].tolist()[:4] == [49406, 1823, 8476, 49407] and tokens[0, 4:].eq(0).all()
    assert tokens[1].argmax().item() == 8  # end token after 7 words
    with pytest.raises(posecore.ConfigError, match="tokens"):
        tokenize(["lose at the center of the face"], 5)


def _small(model: dict, *, input_size: tuple[int, int]) -> dict:
    """A preset's model with one ViT block and one text layer, at a small input; widths kept."""
    model = copy.deepcopy(model)
    model["backbone"].update(depth=1, input_size=list(input_size))
    model["text_layers"] = 1
    model["input_size"] = list(input_size)
    return model


@pytest.mark.parametrize("dataset,size", [("crowdpose", "b"), ("mpii", "b"), ("ochuman", "b"), ("ap10k", "l"),
                                          ("animalpose", "b")])
def test_every_preset_model_forward_backward(dataset: str, size: str) -> None:
    torch.manual_seed(0)
    config = posecore.get_preset(f"pgvl-{size}-{dataset}-256x{'192' if dataset in ('crowdpose', 'ochuman') else '256'}")
    spec = _small(config.model.to_dict(), input_size=(64, 64))
    model = posecore.build_model(attrs.evolve(config, model=spec))
    batch = model.example_batch(2)
    losses = model.loss(batch)
    assert set(losses) == {"loss_heatmap", "loss_contrastive"}
    sum(losses.values()).backward()
    assert model.contexts.grad is not None and model.contexts.grad.abs().sum() > 0
    assert model.text_encoder.token_embedding.weight.grad is not None  # flows through the frozen-by-lr tower
    assert model.logit_scale.grad is not None
    width = {"ap10k": 1280, "animalpose": 768}.get(dataset, 512)
    assert model.fusion.out_dim == width == model.head.in_channels


def test_optimiser_groups_follow_the_original() -> None:
    from posecore.engine._optim import build_param_groups

    config = posecore.get_preset("pgvl-tiny-synthetic")
    with torch.device("meta"):
        model = posecore.build_model(posecore.get_preset("pgvl-b-crowdpose-256x192"))
    groups = build_param_groups(model, posecore.get_preset("pgvl-b-crowdpose-256x192").train.optimizer)
    scale = {name: group["lr_scale"] for group in groups for name in group["names"]}
    decay = {name: group["weight_decay"] for group in groups for name in group["names"]}
    assert scale["text_encoder.token_embedding.weight"] == 0.0
    assert scale["text_encoder.transformer.resblocks.3.ln_1.weight"] == 0.0
    assert scale["backbone.blocks.0.attn.qkv.weight"] == 0.1 and scale["backbone.last_norm.weight"] == 0.1
    assert scale["contexts"] == scale["prompt_encoder.transformer.resblocks.0.attn.in_proj_weight"] == 1.0
    assert scale["fusion.parse_layers.0.0.w"] == scale["head.final_layer.weight"] == scale["logit_scale"] == 1.0
    assert decay["backbone.blocks.0.attn.qkv.weight"] == decay["contexts"] == decay["visual_proj.weight"] == 1e-4
    assert decay["fusion.norm_layers_t.0.weight"] == 0.0
    # the released configs' mmcv constructor decays 1-D parameters and the position embedding too
    assert decay["backbone.last_norm.weight"] == decay["backbone.blocks.0.attn.qkv.bias"] == 1e-4
    assert decay["logit_scale"] == decay["backbone.pos_embed"] == decay["head.final_layer.bias"] == 1e-4
    assert config.train.optimizer.param_groups[0].lr_mult == 0.0
