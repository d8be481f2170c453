"""The architecture's pieces against hand-computed values, and the model's behaviour: padding,
batching, masking, the losses at initialisation, and forward/backward of every preset's model."""

from __future__ import annotations

import math

import pytest
import torch
from poseanything_helpers import TINY_SWIN, batch_of, episode, small_model
from posecore_poseanything.transformer import (
    GCNLayer,
    coordinate_sine_encoding,
    grid_sine_encoding,
    inverse_sigmoid,
    similarity_proposals,
    skeleton_adjacency,
)

import posecore
from posecore._plugins import get_host
from posecore.config import apply_overrides


def test_adjacency_is_symmetrised_masked_and_row_normalised() -> None:
    valid = torch.tensor([[True, True, True, False]])
    adjacency = skeleton_adjacency([[(0, 1), (2, 0), (3, 0), (1, 1)]], valid)
    assert adjacency.shape == (1, 2, 4, 4)
    assert torch.equal(adjacency[0, 0], torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0])))
    # links 0-1 and 0-2 both ways, the self-loop on 1; keypoint 3 is masked out with its link
    expected = torch.tensor([[0, 1 / 2, 1 / 2, 0], [1 / 2, 1 / 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert torch.allclose(adjacency[0, 1], expected)
    with pytest.raises(ValueError, match="0-based"):
        skeleton_adjacency([[(0, 4)]], valid)


def test_gcn_divides_neighbour_messages_by_the_senders_degree() -> None:
    layer = GCNLayer(1, 1)
    with torch.no_grad():
        layer.conv.weight.copy_(torch.tensor([[[1.0]], [[1.0]]]))  # kernel 0 (self), kernel 1 (neighbours)
        layer.conv.bias.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([[[1.0], [10.0], [100.0]]])  # (B, K, C)
    adjacency = skeleton_adjacency([[(0, 1), (0, 2)]], torch.ones(1, 3, dtype=torch.bool))
    out = layer(x, adjacency)[0, :, 0]
    # node 0 (degree 2) receives 10 and 100 whole, since each sender has degree 1; nodes 1 and 2
    # receive half of node 0's 1; the self kernel adds the node's own value and its bias 0.5
    assert torch.allclose(out, torch.tensor([1.5 + 110.0, 10.5 + 0.5, 100.5 + 0.5]))
    masked = layer(x, skeleton_adjacency([[(0, 1), (0, 2)]], torch.tensor([[True, True, False]])))[0, :, 0]
    assert torch.allclose(masked, torch.tensor([1.5 + 10.0, 10.5 + 1.0, 0.0]))  # a masked node outputs 0


def test_sine_encodings_follow_the_released_formulas() -> None:
    grid = grid_sine_encoding(16, 16, 128)
    assert grid.shape == (256, 256)
    i, j = 3, 5  # row 3, column 5
    y, x = (i + 1) / (16 + 1e-6) * 2 * math.pi, (j + 1) / (16 + 1e-6) * 2 * math.pi
    row = grid[i * 16 + j]
    for channel in (0, 1, 6, 7, 127):
        frequency = 10000 ** (2 * (channel // 2) / 128)
        wave = math.sin if channel % 2 == 0 else math.cos
        assert row[channel].item() == pytest.approx(wave(y / frequency), abs=1e-5)  # y first
        assert row[128 + channel].item() == pytest.approx(wave(x / frequency), abs=1e-5)
    point = coordinate_sine_encoding(torch.tensor([[0.25, 0.5]]), 128)[0]
    assert point[0].item() == pytest.approx(math.sin(0.5 * 2 * math.pi), abs=1e-5)
    assert point[128 + 1].item() == pytest.approx(math.cos(0.25 * 2 * math.pi), abs=1e-5)


def test_inverse_sigmoid_clamps_at_the_released_eps() -> None:
    assert inverse_sigmoid(torch.tensor([0.0]))[0].item() == pytest.approx(math.log(1e-3 / 1.0))
    assert inverse_sigmoid(torch.tensor([0.7]))[0].item() == pytest.approx(math.log(0.7 / 0.3), rel=1e-5)


def test_local_proposals_ignore_a_distant_second_peak() -> None:
    similarity = torch.zeros(1, 1, 16, 16)
    similarity[0, 0, 3, 5] = 6.0  # the peak at row 3, column 5
    similarity[0, 0, 3, 4] = 5.0  # its left neighbour
    similarity[0, 0, 12, 12] = 5.9  # far away
    local, global_ = similarity_proposals(similarity)
    weights = torch.tensor([math.exp(6.0), math.exp(5.0), 7.0])  # the 3x3 window: 7 cells at exp(0)
    expected_x = (5.5 * weights[0] + 4.5 * weights[1] + (4.5 * 2 + 5.5 * 2 + 6.5 * 3)) / (weights.sum() * 16)
    assert local[0, 0, 0].item() == pytest.approx(expected_x.item(), rel=1e-4)
    assert local[0, 0, 1].item() == pytest.approx(3.5 / 16, abs=0.01)
    assert global_[0, 0, 1].item() > 0.35, "the global soft-argmax is pulled towards the second peak"


def test_the_released_transposed_window_is_a_flag_that_matters_only_off_square() -> None:
    """The released code lays the one-hot peak out as (W, H) before pooling its 3x3 window: on a
    square grid the same window, on a 4 x 8 grid cells far from the peak (off by default)."""
    square = torch.randn(2, 3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(similarity_proposals(square),
                                                 similarity_proposals(square, original_transposed_window=True),
                                                 strict=True))
    wide = torch.zeros(1, 1, 4, 8)
    wide[0, 0, 1, 7] = 1.0  # a mild peak at row 1, the last column: every window cell weighs
    intended, _ = similarity_proposals(wide)
    released, _ = similarity_proposals(wide, original_transposed_window=True)
    # intended: the window's cells lie in columns 6-7 and rows 0-2, so x > 6 / 8 and y < 3 / 4
    assert intended[0, 0, 0].item() > 6 / 8 and intended[0, 0, 1].item() < 3 / 4
    # released: flat index 15 read on an (8, 4) layout wraps its window to the next row's first cells
    assert released[0, 0, 0].item() < intended[0, 0, 0].item() - 0.1
    model = small_model(original_transposed_window=True)
    assert model.head.transformer.proposal_generator.original_transposed_window
    assert not small_model().head.transformer.proposal_generator.original_transposed_window


def test_padding_to_100_slots_gives_the_same_predictions() -> None:
    """The model pads to the batch's widest category; the released code pads to 100 slots. Both
    give the same keypoints, because padded slots are masked out of attention and of the graph."""
    import numpy as np

    model = small_model(max_keypoints=100)
    query, supports = episode(model, 7, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)], missing=(2,))
    padded_supports = [{**s, "heatmaps": np.concatenate([s["heatmaps"], np.zeros((93, 16, 16), np.float32)]),
                        "keypoint_weights": np.concatenate([s["keypoint_weights"], np.zeros(93, np.float32)])}
                       for s in supports]
    narrow = model.predict(batch_of([(query, supports)]))
    wide = model.predict(batch_of([(query, padded_supports)]))
    assert narrow.keypoints.shape == (1, 7, 2) and wide.keypoints.shape == (1, 100, 2)
    assert torch.allclose(narrow.keypoints, wide.keypoints[:, :7], atol=1e-4)
    assert narrow.scores[0].tolist() == [1, 1, 0, 1, 1, 1, 1], "keypoint 2 is missing in the support"


def test_a_batch_of_categories_predicts_what_each_episode_predicts_alone() -> None:
    model = small_model()
    episodes = [episode(model, 5, [(0, 1), (1, 2)], seed=1), episode(model, 9, [(0, 8)], seed=2, shots=1),
                episode(model, 3, [], seed=3)]
    together = model.predict(batch_of(episodes))
    assert together.keypoints.shape == (3, 9, 2)
    for index, (query, supports) in enumerate(episodes):
        alone = model.predict(batch_of([(query, supports)]))
        k = alone.keypoints.shape[1]
        assert torch.allclose(together.keypoints[index, :k], alone.keypoints[0], atol=1e-4)
        assert torch.allclose(together.heatmaps[index, :k], alone.heatmaps[0], atol=1e-5)


def test_support_tokens_average_shots_and_drop_keypoints_missing_in_any_shot() -> None:
    model = small_model()
    _, supports = episode(model, 4, [(0, 1)], shots=2, missing=(1,))
    features = torch.randn(2, 1, model.backbone.out_channels, 4, 4)
    heatmaps = torch.stack([torch.as_tensor(s["heatmaps"])[None] for s in supports])
    weights = torch.stack([torch.as_tensor(s["keypoint_weights"])[None] for s in supports])
    tokens, valid = model.head.support_tokens(features, heatmaps, weights)
    assert valid.tolist() == [[True, False, True, True]]
    resized = torch.nn.functional.interpolate(features.flatten(0, 1), size=(16, 16), mode="bilinear",
                                              align_corners=False)
    maps = heatmaps.flatten(0, 1).flatten(2)
    pooled = (maps / (maps.sum(-1, keepdim=True) + 1e-8)) @ resized.flatten(2).transpose(1, 2)
    expected = model.head.query_proj(pooled.mean(0, keepdim=True) * valid[..., None].float())
    assert torch.allclose(tokens, expected, atol=1e-5)
    assert torch.allclose(tokens[0, 1], model.head.query_proj.bias), "a dropped keypoint's token is the bias alone"


def test_at_initialisation_every_layer_predicts_the_proposals() -> None:
    """The coordinate branches end in zeros, so each layer returns its reference point."""
    model = small_model()
    batch = batch_of([episode(model, 6, [(0, 1), (1, 2)], seed=4)])
    output = model.run_head(model.episodes(batch))
    for layer in output.predictions:
        assert torch.allclose(layer, output.proposals.clamp(1e-3, 1 - 1e-3), atol=1e-5)
    losses = model.train().loss(batch)
    assert set(losses) == {"heatmap_loss", "proposal_loss", "l1_loss_layer0", "l1_loss_layer1", "l1_loss_layer2"}
    assert losses["l1_loss_layer0"].item() == pytest.approx(losses["l1_loss_layer2"].item(), rel=1e-4)


def test_a_keypoint_missing_in_the_support_does_not_count_in_the_loss() -> None:
    model = small_model(dropout=0.0)
    query, supports = episode(model, 5, [(0, 1)], missing=(3,))
    batch = batch_of([(query, supports)])
    moved = batch_of([({**query, "keypoints": query["keypoints"] + [[0, 0], [0, 0], [0, 0], [50, 50], [0, 0]]},
                       supports)])
    torch.manual_seed(0)
    first = model.loss(batch)
    torch.manual_seed(0)
    second = model.loss(moved)
    assert all(torch.allclose(first[name], second[name]) for name in first)
    assert not torch.allclose(first["proposal_loss"], model.loss(batch_of([(
        {**query, "keypoints": query["keypoints"] + 20.0}, supports)]))["proposal_loss"])


def test_heatmap_loss_weight_scales_the_similarity_loss() -> None:
    one, two = small_model(heatmap_loss_weight=1.0, dropout=0.0), small_model(dropout=0.0)
    batch = batch_of([episode(one, 5, [(0, 1)])])
    assert two.loss(batch)["heatmap_loss"].item() == pytest.approx(2 * one.loss(batch)["heatmap_loss"].item(), rel=1e-5)


def test_swinv2_backbone_upsamples_the_normalised_last_stage() -> None:
    backbone = posecore.build("backbones", {**TINY_SWIN})
    images = torch.randn(2, 3, 64, 64)
    features = backbone(images)
    assert features.shape == (2, backbone.out_channels, 4, 4) and backbone.out_channels == 128
    last = backbone.swin.forward_features(images).permute(0, 3, 1, 2)
    assert torch.allclose(features, torch.nn.functional.interpolate(last, scale_factor=2, mode="bilinear"))
    deconv = posecore.build("backbones", {**TINY_SWIN, "upsample": "deconv"})
    assert isinstance(deconv.upsample, torch.nn.ConvTranspose2d) and deconv(images).shape == (2, 128, 4, 4)


@pytest.mark.parametrize(("model_name", "rate"), [("swinv2_tiny_window16_256", 0.2), ("swinv2_small_window16_256", 0.3)])
def test_timms_drop_path_schedule_is_the_released_per_block_one(model_name: str, rate: float) -> None:
    """The released SwinV2 spreads stochastic depth linearly over all blocks
    (``torch.linspace(0, rate, sum(depths))``); timm's schedule, split by stage, is the same."""
    with torch.device("meta"):
        backbone = posecore.build("backbones", {"type": "poseanything_swinv2", "model_name": model_name,
                                                "drop_path_rate": rate})
    blocks = [block for stage in backbone.swin.layers for block in stage.blocks]
    probabilities = [getattr(block.drop_path1, "drop_prob", 0.0) for block in blocks]
    assert probabilities == [x.item() for x in torch.linspace(0, rate, len(blocks))]


def _distinct_models() -> dict[str, list[str]]:
    """Preset names grouped by identical model spec (the splits of one cell share a model)."""
    import json

    groups: dict[str, list[str]] = {}
    for name in get_host().registries.presets.names("poseanything"):
        model = posecore.get_preset(name).model
        groups.setdefault(json.dumps([model.type, model.args], sort_keys=True, default=str), []).append(name)
    return groups


def test_presets_share_a_model_per_architecture_and_shot_count() -> None:
    groups = sorted(sorted(names) for names in _distinct_models().values())
    assert len(groups) == 7  # tiny/small/legacy B x 1/5-shot, the synthetic default
    assert all(len(names) == 5 for names in groups if names[0] != "poseanything-tiny-synthetic")


@pytest.mark.parametrize("names", sorted(_distinct_models().values()), ids=lambda names: names[0])
def test_every_presets_model_trains_and_predicts_at_a_small_input(names: list[str]) -> None:
    """Forward and backward of each distinct preset model, at 64x64 (56x56 for the 224-px legacy B,
    whose 14-token windows need a multiple of 56)."""
    config = posecore.get_preset(names[0])
    backbone = config.model.args["backbone"]
    size = 56 if backbone.get("window_size") == 14 else 64
    overrides = [f"model.input_size=[{size},{size}]"]
    if backbone["type"] == "poseanything_swinv2":
        overrides.append(f"model.backbone.img_size={size}")
    torch.manual_seed(0)
    model = posecore.build_model(apply_overrides(config, overrides))
    shots = model.num_shots
    batch = batch_of([episode(model, 8, [(0, 1), (1, 2), (2, 7)], shots=shots, seed=5, missing=(4,)),
                      episode(model, 5, [(0, 4)], shots=shots, seed=6)])
    losses = model.train().loss(batch)
    sum(losses.values()).backward()
    silent = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not silent, f"{names[0]}: parameters without gradient: {silent[:5]}"
    result = model.eval().predict(batch)
    assert result.keypoints.shape == (2, 8, 2) and torch.isfinite(result.keypoints).all()
