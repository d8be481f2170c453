"""The keypoint prototype bank: Sinkhorn assignment, EMA learning with the right dataset offsets
(and the released code's wrong ones under ``legacy_indexing``), freezing, and CPS clustering."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from posecore_posebh.prototypes import ClusterPrototypes, KeypointPrototypes, cluster_prototypes, sinkhorn_assign


def _bank(**kwargs: object) -> KeypointPrototypes:
    torch.manual_seed(0)
    return KeypointPrototypes([3, 2], num_sub_prototypes=2, dim=8, **kwargs)


def test_the_bank_is_unit_buffers_not_parameters() -> None:
    bank = _bank()
    assert tuple(bank.prototypes.shape) == (5, 2, 8)
    assert list(bank.parameters()) == [] and "prototypes" in bank.state_dict()
    torch.testing.assert_close(bank.prototypes.norm(dim=-1), torch.ones(5, 2))
    assert bank.offsets == [0, 3] and bank.block(1) == slice(3, 5)


def test_sinkhorn_spreads_pixels_evenly_over_the_sub_prototypes() -> None:
    torch.manual_seed(0)
    similarity = torch.rand(30, 3) * 0.1
    similarity[:, 0] += 0.5  # every pixel prefers sub-prototype 0 ...
    plan, index = sinkhorn_assign(similarity, hard_sample=False)
    torch.testing.assert_close(plan.sum(dim=1), torch.ones(30))
    assert plan.sum(dim=0).max() / plan.sum(dim=0).min() < 1.5  # ... but each gets about a third of them
    assert torch.equal(index, plan.argmax(dim=1))
    hard, _ = sinkhorn_assign(similarity)
    assert set(hard.unique().tolist()) <= {0.0, 1.0} and torch.equal(hard.sum(dim=1), torch.ones(30))


def test_scores_and_heatmaps_are_the_best_absolute_cosine() -> None:
    bank = _bank()
    embedding = -3.0 * bank.prototypes[4, 1]  # opposite direction: |cos| = 1
    scores = bank.sub_scores(embedding[None])
    assert scores[0, 4, 1] == pytest.approx(1.0)
    maps = bank.heatmaps(embedding.view(1, 8, 1, 1).expand(1, 8, 2, 3))
    assert tuple(maps.shape) == (1, 5, 2, 3) and maps.max() == pytest.approx(1 - 1e-4)
    assert tuple(bank.heatmaps(torch.randn(2, 8, 4, 4), dataset=1).shape) == (2, 2, 4, 4)


def test_learning_uses_the_dataset_block_and_moves_the_right_prototype() -> None:
    bank = _bank(momentum=0.9).train()
    before = bank.prototypes.clone()
    target = bank.prototypes[3 + 1].mean(dim=0)  # between dataset 1 keypoint 1's sub-prototypes
    pixels = target + 0.01 * torch.randn(6, 8)
    logits, targets = bank.learn(pixels, torch.ones(6, dtype=torch.long), torch.ones(6), dataset=1)
    assert tuple(logits.shape) == (6, 2 * 2)  # K_1 = 2 keypoints x M = 2
    expected = (F.normalize(pixels, dim=-1) @ before.reshape(10, 8)[6:10].t()).abs()
    torch.testing.assert_close(logits, expected)  # offset 3 x M 2 = column 6, scored before the update
    assert set(targets.tolist()) <= {2, 3}  # local keypoint 1 -> columns 2, 3
    moved = (bank.prototypes - before).norm(dim=-1) > 1e-6
    assert moved[4].any() and not moved[[0, 1, 2, 3]].any()  # only global keypoint 3 + 1
    torch.testing.assert_close(bank.prototypes.norm(dim=-1), torch.ones(5, 2))


def test_the_ema_step_is_momentum_times_old_plus_the_weighted_mean() -> None:
    bank = KeypointPrototypes([1], num_sub_prototypes=1, dim=4, momentum=0.75).train()
    pixels = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    confidences = torch.tensor([0.5, 1.0])
    bank.prototypes[0, 0] = F.normalize(torch.tensor([1.0, 1.0, 0.1, 0.0]), dim=0)  # both pixels "correct"
    old = bank.prototypes[0, 0].clone()
    bank.learn(pixels, torch.zeros(2, dtype=torch.long), confidences, dataset=0)
    features = F.normalize(pixels, dim=-1)
    mean = F.normalize((confidences[:, None] ** 2 * features).sum(0), dim=0)  # weight w^2, as the original
    torch.testing.assert_close(bank.prototypes[0, 0], F.normalize(0.75 * old + 0.25 * mean, dim=0))


def test_frozen_or_evaluating_banks_do_not_move() -> None:
    bank = _bank()
    pixels, labels = torch.randn(5, 8), torch.zeros(5, dtype=torch.long)
    before = bank.prototypes.clone()
    bank.frozen = True
    bank.learn(pixels, labels, torch.ones(5), dataset=0)
    bank.frozen = False
    bank.eval()
    bank.learn(pixels, labels, torch.ones(5), dataset=0)
    assert torch.equal(bank.prototypes, before)


def test_legacy_indexing_reproduces_the_released_offset_bugs() -> None:
    right, legacy = _bank(), _bank(legacy_indexing=True)
    for bank in (right, legacy):
        bank.train()
    pixels = right.prototypes[3 + 1, 0].expand(4, 8).clone()  # exactly dataset 1, keypoint 1, sub 0
    labels = torch.ones(4, dtype=torch.long)
    logits, targets = right.learn(pixels, labels, torch.ones(4), dataset=1)
    old_logits, old_targets = legacy.learn(pixels, labels, torch.ones(4), dataset=1)
    scores = right.sub_scores(pixels).reshape(4, -1)
    # Intended: the block starts at column offset * M = 6; released: at column offset = 3.
    assert logits[0, 2] == pytest.approx(1.0) and torch.equal(targets, torch.full((4,), 2))
    assert torch.allclose(old_logits, legacy.sub_scores(pixels).reshape(4, -1)[:, 3:7])
    assert not torch.allclose(old_logits, scores[:, 6:10])
    # Released: a local label is compared with the global best keypoint, so these correct pixels
    # count as wrong and the bank does not learn from them.
    assert torch.equal(legacy.prototypes, _bank().prototypes)
    assert not torch.equal(right.prototypes, _bank().prototypes)


def _grouped_bank(groups: int = 4, per_group: int = 3) -> torch.Tensor:
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(groups, 16), dim=-1)
    bank = centres.repeat_interleave(per_group, 0)[:, None, :] + 0.02 * torch.randn(groups * per_group, 3, 16)
    return F.normalize(bank, dim=-1)


def test_clusters_are_each_centroids_nearest_prototypes() -> None:
    bank = _grouped_bank()
    result = cluster_prototypes(bank, options=(4, 6), iterations=50)
    flat = bank.reshape(-1, 16)
    clusters = result.prototypes
    assert clusters.shape[1:] == (3, 16) and clusters.shape[0] in (4, 6)
    for cluster, keypoint in zip(clusters, result.keypoints.tolist(), strict=True):
        rows = [int(torch.argmax(flat @ vector)) for vector in cluster]
        assert all(torch.allclose(flat[row], vector) for row, vector in zip(rows, cluster, strict=True))
        owner_groups = {row // 3 // 3 for row in rows}
        assert len(owner_groups) == 1  # all three come from one group of near-identical keypoints
        assert keypoint == rows[0] // 3


def test_legacy_clustering_takes_cluster_ranks_as_prototype_indices() -> None:
    bank = _grouped_bank()
    right = cluster_prototypes(bank, options=(4,), iterations=50)
    legacy = cluster_prototypes(bank, options=(4,), iterations=50, legacy_sort=True)
    flat = bank.reshape(-1, 16)
    # The released code reads indices < C (cluster ranks) as prototype indices: only the first C
    # prototypes of the flat bank can ever be chosen.
    chosen = {int(torch.argmax(flat @ vector)) for vector in legacy.prototypes.reshape(-1, 16)}
    assert chosen <= set(range(4))
    assert not torch.equal(right.prototypes, legacy.prototypes)


def test_too_few_keypoints_for_every_cluster_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="every cluster count of \\[64\\] is >= the 12 keypoints"):
        cluster_prototypes(_grouped_bank(), options=(64,))


def test_a_cluster_bank_takes_the_loaded_size() -> None:
    placeholder = ClusterPrototypes(96, 3, 16)
    assert not placeholder.ready and placeholder.frozen
    trained = ClusterPrototypes(96, 3, 16)
    trained.assign(cluster_prototypes(_grouped_bank(), options=(4,), iterations=10))
    assert trained.ready and tuple(trained.prototypes.shape) == (4, 3, 16)
    placeholder.load_state_dict(trained.state_dict())
    assert placeholder.ready and torch.equal(placeholder.keypoints, trained.keypoints)
