"""PoseBH's keypoint prototypes: a non-parametric bank of unit vectors, learned by EMA, never by gradient.

Jeong et al., CVPR 2025, "PoseBH: Prototypical Multi-Dataset Training Beyond Human Pose Estimation";
original code: https://github.com/uyoung-jeong/PoseBH (``mmpose/models/heads/kpt_proto_module.py``,
``mmpose/utils/cps_hook.py``), which adapts ProtoSeg (Zhou et al., CVPR 2022).

Every keypoint of every training dataset has ``M`` (3) sub-prototypes in a shared ``D``-dimensional
(64) embedding space; the union keypoint set is the concatenation of the datasets' keypoints
(17 + 14 + 16 + 17 + 17 + 133 = 214), keypoint ``k`` of dataset ``d`` being global keypoint
``offset_d + k``. A pixel embedding's score for a keypoint is the largest ``|cos|`` with its
sub-prototypes. Learning a batch of labelled pixels (:meth:`KeypointPrototypes.learn`):

1. each pixel is assigned to a sub-prototype of its keypoint by a Sinkhorn-Knopp equipartition
   (:func:`sinkhorn_assign`), the assignment for the update drawn by a hard Gumbel-softmax;
2. the CE targets are those assignments, over the logits of the pixel's dataset block;
3. pixels whose best keypoint over the whole bank is their own keypoint update their
   sub-prototype: ``p <- momentum p + (1 - momentum) normalise(sum_pixels q w^2 e)``.

``legacy_indexing`` reproduces the released code's dataset-offset bugs in step 1-3 (logit block at
column ``offset_d`` instead of ``offset_d * M``, Sinkhorn on the similarities of global keypoint
``k`` instead of ``offset_d + k``, the correctness test comparing a local label with a global
index); by default every index is the intended, offset-correct one.

The prototypes are buffers, not parameters: they are in the state_dict (``prototypes``), never
in an optimiser and never frozen or thawed by a training stage. Every prototype computation runs
with autocast off (:func:`full_precision`), as the original's ``KptPrototype.forward`` does: under
fp16 the cosines, the Sinkhorn input ``exp(sim / 0.05)`` and the best-keypoint argmax would change.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ClusterPrototypes", "ClusterResult", "KeypointPrototypes", "cluster_prototypes", "full_precision",
           "sinkhorn_assign"]


def full_precision(tensor: torch.Tensor) -> AbstractContextManager:
    """Autocast off on ``tensor``'s device, whatever mixed precision the trainer runs: the original
    disables it around every prototype and self-supervision computation."""
    return torch.autocast(tensor.device.type, enabled=False)


def sinkhorn_assign(similarity: torch.Tensor, iterations: int = 3, epsilon: float = 0.05,
                    hard_sample: bool = True, groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Equipartition pixels over ``M`` sub-prototypes (SwAV / ProtoSeg's Sinkhorn-Knopp), for each
    group (keypoint) of pixels separately, all groups at once.

    Per group of ``n`` pixels: ``T = exp(similarity / epsilon)`` scaled to total mass 1, then
    ``iterations`` times: each sub-prototype's mass to ``1 / M``, each pixel's to ``1 / n``;
    finally ``x n``, so each pixel's row sums to 1.

    Args:
        similarity: (N, M) pixel-to-sub-prototype scores.
        groups: (N,) the group (keypoint) of each pixel; one group when ``None``.

    Returns:
        assignment (N, M): a hard one-hot Gumbel-softmax sample (tau 0.5) with the transport plan
        as its logits, as the original draws it (or the plan itself with ``hard_sample=False``);
        index (N,): the plan's argmax, the CE target.
    """
    count, subs = similarity.shape
    groups = torch.zeros(count, dtype=torch.long, device=similarity.device) if groups is None else groups
    size = int(groups.max()) + 1 if count else 0

    def group_sum(values: torch.Tensor) -> torch.Tensor:  # (N, ...) -> (groups, ...) summed per group
        return values.new_zeros(size, *values.shape[1:]).index_add_(0, groups, values)

    plan = torch.exp(similarity.float() / epsilon)
    plan = plan / group_sum(plan.sum(dim=1))[groups, None]
    pixels = group_sum(torch.ones(count, device=similarity.device))[groups, None]  # n of each pixel's group
    for _ in range(iterations):
        plan = plan / group_sum(plan)[groups] / subs
        plan = plan / plan.sum(dim=1, keepdim=True) / pixels
    plan = plan * pixels
    index = plan.argmax(dim=1)
    if hard_sample:
        plan = F.gumbel_softmax(plan, tau=0.5, hard=True)
    return plan, index


class KeypointPrototypes(nn.Module):
    """``M`` unit prototypes per keypoint of several datasets, with EMA learning.

    Args:
        num_keypoints: K of each dataset, in dataset-index order.
        num_sub_prototypes: M.
        dim: D, the embedding width.
        momentum: EMA factor of the update (0.999).
        hard_assignment: weight each pixel's update by its correctness (0/1) instead of its target
            heatmap value (the transfer configs' ``hard_cluster``).
        legacy_indexing: reproduce the released dataset-offset bugs (see the module docstring).

    Attributes:
        frozen: no EMA update while set (the training stages' ``freeze_prototypes``).
    """

    def __init__(self, num_keypoints: Sequence[int], num_sub_prototypes: int = 3, dim: int = 64,
                 momentum: float = 0.999, hard_assignment: bool = False, legacy_indexing: bool = False) -> None:
        super().__init__()
        self.num_keypoints = tuple(int(k) for k in num_keypoints)
        if not self.num_keypoints or min(self.num_keypoints) < 1:
            raise ValueError(f"KeypointPrototypes.num_keypoints must be positive counts; got {num_keypoints}")
        if num_sub_prototypes < 1 or dim < 1:
            raise ValueError(f"KeypointPrototypes needs num_sub_prototypes >= 1 and dim >= 1; got "
                             f"{num_sub_prototypes} and {dim}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"KeypointPrototypes.momentum must be in [0, 1); got {momentum}")
        self.num_sub_prototypes = num_sub_prototypes
        self.dim = dim
        self.momentum = momentum
        self.hard_assignment = hard_assignment
        self.legacy_indexing = legacy_indexing
        self.frozen = False
        bank = torch.zeros(sum(self.num_keypoints), num_sub_prototypes, dim)
        nn.init.trunc_normal_(bank, std=0.02, a=-2.0, b=2.0)
        self.register_buffer("prototypes", F.normalize(bank, dim=-1))

    @property
    def offsets(self) -> list[int]:
        """Global index of each dataset's first keypoint."""
        return [sum(self.num_keypoints[:d]) for d in range(len(self.num_keypoints))]

    @property
    def total_keypoints(self) -> int:
        return int(self.prototypes.shape[0])

    def block(self, dataset: int) -> slice:
        """The global keypoints of ``dataset``."""
        start = self.offsets[dataset]
        return slice(start, start + self.num_keypoints[dataset])

    # ------------------------------------------------------------------ scores

    def sub_scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """embeddings (N, D) -> ``|cos|`` with every sub-prototype, (N, J, M), fp32 (autocast off)."""
        with full_precision(embeddings):
            features = F.normalize(embeddings.float(), dim=-1)
            return torch.einsum("nd,jmd->njm", features, F.normalize(self.prototypes.float(), dim=-1)).abs()

    def heatmaps(self, embeddings: torch.Tensor, dataset: int | None = None) -> torch.Tensor:
        """Prototype heatmaps: embeddings (B, D, H, W) -> per-keypoint max ``|cos|`` clamped to
        [1e-4, 1 - 1e-4], (B, J, H, W), or (B, K_d, H, W) for one dataset; fp32."""
        batch, _, height, width = embeddings.shape
        flat = embeddings.permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1])
        scores = self.sub_scores(flat).amax(dim=2)
        if dataset is not None:
            scores = scores[:, self.block(dataset)]
        scores = scores.clamp(1e-4, 1.0 - 1e-4)
        return scores.reshape(batch, height, width, -1).permute(0, 3, 1, 2)

    # ------------------------------------------------------------------ learning

    def learn(self, embeddings: torch.Tensor, labels: torch.Tensor, confidences: torch.Tensor,
              dataset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and CE targets for labelled pixels of ``dataset``, updating the bank unless frozen.

        Args:
            embeddings: (N, D) pixel embeddings (gradients flow into them through the logits).
            labels: (N,) local keypoint ids of ``dataset``.
            confidences: (N,) target heatmap values (the update weights; wrong pixels get 0).

        Returns:
            logits (N, K_d * M): ``|cos|`` with the dataset's sub-prototypes, keypoint-major;
            targets (N,): ``M * label + assigned sub-prototype``, -1 where a keypoint had no pixel.
        """
        with full_precision(embeddings):
            return self._learn(embeddings, labels, confidences, dataset)

    def _learn(self, embeddings: torch.Tensor, labels: torch.Tensor, confidences: torch.Tensor,
               dataset: int) -> tuple[torch.Tensor, torch.Tensor]:
        subs, count = self.num_sub_prototypes, self.num_keypoints[dataset]
        offset = self.offsets[dataset]
        features = F.normalize(embeddings.float(), dim=-1)
        scores = self.sub_scores(embeddings)  # (N, J, M)
        flat = scores.reshape(len(features), -1)
        if self.legacy_indexing:  # the released code starts the block at column offset_d, not offset_d * M
            logits = flat[:, offset: offset + count * subs]
        else:
            logits = flat[:, offset * subs: (offset + count) * subs]
        best = scores.detach().amax(dim=2).argmax(dim=1)  # the best keypoint over the whole bank
        correct = best == (labels if self.legacy_indexing else labels + offset)
        weights = torch.where(correct, confidences.float(), torch.zeros_like(confidences, dtype=torch.float32))
        if self.hard_assignment:
            weights = correct.float()
        # The released code runs Sinkhorn on the similarities of global keypoint k, not offset_d + k.
        columns = labels if self.legacy_indexing else labels + offset
        with torch.no_grad():
            rows = torch.arange(len(labels), device=labels.device)
            assignment, index = sinkhorn_assign(scores[rows, columns].detach(), groups=labels)
        targets = index + subs * labels
        if not self.frozen and self.training and len(labels):
            self._update(features.detach(), labels, assignment, weights, offset, count)
        return logits, targets

    @torch.no_grad()
    def _update(self, features: torch.Tensor, labels: torch.Tensor, assignment: torch.Tensor, weights: torch.Tensor,
                offset: int, count: int) -> None:
        """EMA of each sub-prototype toward the normalised ``sum_pixels q w^2 e`` of its pixels."""
        weighted = assignment * weights[:, None]  # (N, M)
        contributions = weighted[:, :, None] * (features * weights[:, None])[:, None, :]  # (N, M, D)
        update = contributions.new_zeros(count, *contributions.shape[1:]).index_add_(0, labels, contributions)
        mass = weighted.new_zeros(count, weighted.shape[1]).index_add_(0, labels, weighted)
        received = mass != 0  # (K_d, M): sub-prototypes that got a pixel of non-zero weight
        if not bool(received.any()):
            return
        block = self.prototypes[offset: offset + count]
        moved = self.momentum * block + (1.0 - self.momentum) * F.normalize(update, dim=-1)
        bank = self.prototypes.clone()
        bank[offset: offset + count] = torch.where(received[..., None], moved, block)
        self.prototypes.copy_(F.normalize(bank, dim=-1))

    def synchronise(self) -> None:
        """Average the bank over the processes of a distributed run (each updated it from its own
        batch), as the original does after every loss computation."""
        if self.frozen or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return
        world = torch.distributed.get_world_size()
        if world > 1:
            torch.distributed.all_reduce(self.prototypes)
            self.prototypes.div_(world)

    def extra_repr(self) -> str:
        return (f"keypoints={list(self.num_keypoints)}, sub_prototypes={self.num_sub_prototypes}, dim={self.dim}, "
                f"momentum={self.momentum}, legacy_indexing={self.legacy_indexing}")


class ClusterPrototypes(KeypointPrototypes):
    """CPS's cluster prototypes: ``C`` clusters of ``M`` keypoint sub-prototypes, always frozen.

    Built as a placeholder of ``num_clusters`` random clusters (so the key exists in every
    checkpoint, as in the original) until :meth:`assign` gives it a clustering. Besides
    ``prototypes`` (C, M, D) it keeps ``keypoints`` (C,): the global keypoint each cluster stands
    for, -1 while it is a placeholder. Loading a state_dict takes the stored C, so a run resumes
    whatever cluster count the clustering picked.
    """

    def __init__(self, num_clusters: int, num_sub_prototypes: int = 3, dim: int = 64) -> None:
        super().__init__([num_clusters], num_sub_prototypes, dim)
        self.frozen = True
        self.register_buffer("keypoints", torch.full((num_clusters,), -1, dtype=torch.long))

    @property
    def ready(self) -> bool:
        """Whether the bank holds a clustering (not the placeholder)."""
        return bool((self.keypoints >= 0).all()) and self.keypoints.numel() > 0

    @torch.no_grad()
    def assign(self, result: ClusterResult) -> None:
        """Take the clusters of :func:`cluster_prototypes`."""
        self.prototypes = result.prototypes.detach().clone().to(self.prototypes.device)
        self.keypoints = result.keypoints.detach().clone().to(self.keypoints.device)
        self.num_keypoints = (int(self.prototypes.shape[0]),)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        stored = state_dict.get(prefix + "prototypes")
        if stored is not None and stored.shape != self.prototypes.shape:
            self.prototypes = torch.empty_like(stored, device=self.prototypes.device)
            self.keypoints = torch.full((stored.shape[0],), -1, dtype=torch.long, device=self.keypoints.device)
            self.num_keypoints = (int(stored.shape[0]),)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ClusterResult:
    """The clustering CPS starts from.

    Attributes:
        prototypes: (C, M, D) each cluster's M nearest keypoint sub-prototypes.
        keypoints: (C,) the global keypoint owning each cluster's nearest sub-prototype.
        error: the least-squares reconstruction error of the bank from the centroids.
    """

    def __init__(self, prototypes: torch.Tensor, keypoints: torch.Tensor, error: float) -> None:
        self.prototypes, self.keypoints, self.error = prototypes, keypoints, error


def _soft_kmeans(bank: torch.Tensor, clusters: int, iterations: int, beta: float,
                 legacy_sort: bool) -> ClusterResult:
    joints, subs, dim = bank.shape
    flat = F.normalize(bank.reshape(joints * subs, dim), dim=-1)
    centres = flat[[i * subs for i in range(clusters)]]  # the first sub-prototype of keypoints 0..C-1
    for _ in range(iterations):
        distance = (1.0 - flat @ F.normalize(centres, dim=-1).t()) * 0.5  # (J M, C)
        assign = torch.softmax(-beta * distance, dim=1)
        centres = (assign.t() @ flat) / assign.sum(dim=0)[:, None]
    distance = (1.0 - flat @ F.normalize(centres, dim=-1).t()) * 0.5
    if legacy_sort:
        # The released code ranks the clusters of each prototype and reads the first M rows of that
        # ranking as if they were prototype indices of each cluster.
        nearest = torch.argsort(distance, dim=1)[:subs, :].t()  # (C, M) of cluster indices
    else:
        nearest = torch.argsort(distance, dim=0)[:subs, :].t()  # (C, M): each cluster's M nearest prototypes
    solution = torch.linalg.lstsq(centres.t(), flat.t()).solution
    error = float(((flat.t() - centres.t() @ solution) ** 2).sum())
    return ClusterResult(flat[nearest], torch.div(nearest[:, 0], subs, rounding_mode="floor"), error)


def cluster_prototypes(bank: torch.Tensor, options: Sequence[int] = (64, 96, 128), iterations: int = 500,
                       beta: float = 20.0, legacy_sort: bool = False) -> ClusterResult:
    """Cluster a (J, M, D) bank for CPS: soft k-means (cosine distance ``(1 - cos) / 2``, softmax
    assignment at ``beta``) for every cluster count of ``options`` below J, keeping the count with
    the lowest ``error * (C / J)^2``. ``legacy_sort`` reproduces the released nearest-prototype bug."""
    bank = bank.detach().float()
    joints = bank.shape[0]
    best: ClusterResult | None = None
    best_score = float("inf")
    for clusters in options:
        if clusters >= joints:
            continue
        result = _soft_kmeans(bank, clusters, iterations, beta, legacy_sort)
        score = result.error * (clusters / joints) ** 2
        if score < best_score:
            best, best_score = result, score
    if best is None:
        raise ValueError(f"cluster_prototypes: every cluster count of {list(options)} is >= the {joints} keypoints; "
                         "give smaller options")
    return best
