"""Which samples each process sees, epoch by epoch: deterministic, sharded and resumable.

The order of epoch ``e`` is a pure function of ``(seed, e)``, so a resumed run replays exactly
the batches an uninterrupted run would have seen: skipping the first ``n`` indices of an epoch is
all that mid-epoch resumption needs. Shards are interleaved (``rank::world``) after padding the
epoch to a multiple of the world size with its first indices, as torch's DistributedSampler does;
evaluation drops those repeats again by sample index.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[int]):
    """Indices into a concatenation of datasets of ``sizes``, for one process.

    Args:
        sizes: the length of each concatenated dataset.
        shuffle: permute each epoch (training); otherwise dataset order (evaluation).
        seed: base of every epoch's permutation.
        num_replicas, rank: the process group; each process gets every ``num_replicas``-th index.
        ratios: per-dataset sampling weights (multi-dataset training). Each epoch still has
            ``sum(sizes)`` samples; slot ``j`` comes from dataset ``d`` with probability
            ``ratios[d] / sum(ratios)``, and each dataset is walked through a fresh permutation
            of its own (without replacement until it is exhausted, then again).
    """

    def __init__(self, sizes: Sequence[int], *, shuffle: bool, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 ratios: Sequence[float] | None = None) -> None:
        if not sizes or min(sizes) < 0 or sum(sizes) == 0:
            raise ValueError(f"EpochSampler needs datasets with samples; got sizes {list(sizes)}")
        if ratios is not None and len(ratios) != len(sizes):
            raise ValueError(f"EpochSampler: {len(ratios)} sampling ratios for {len(sizes)} datasets")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"EpochSampler: rank {rank} is not in 0..{num_replicas - 1}")
        self.sizes = [int(size) for size in sizes]
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.ratios = None if ratios is None else np.asarray(ratios, dtype=np.float64) / float(sum(ratios))
        self.epoch = 0
        self.skip = 0

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Serve epoch ``epoch``, leaving out this process's first ``skip`` indices (already trained on)."""
        self.epoch = epoch
        self.skip = skip

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """The whole epoch's order, before sharding."""
        if not self.shuffle:
            return np.arange(self.total)
        rng = np.random.default_rng((self.seed, epoch))
        if self.ratios is None:
            return rng.permutation(self.total)
        offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        choice = rng.choice(len(self.sizes), size=self.total, p=self.ratios)
        indices = np.empty(self.total, dtype=np.int64)
        for dataset, size in enumerate(self.sizes):
            slots = np.flatnonzero(choice == dataset)
            if len(slots) == 0:
                continue
            if size == 0:
                raise ValueError(f"EpochSampler: dataset {dataset} is empty but has sampling ratio {self.ratios[dataset]:g}")
            rounds = math.ceil(len(slots) / size)
            walk = np.concatenate([rng.permutation(size) for _ in range(rounds)])[: len(slots)]
            indices[slots] = walk + offsets[dataset]
        return indices

    def shard(self, epoch: int) -> np.ndarray:
        """This process's indices of ``epoch``, padded so every process has the same number."""
        indices = self.epoch_indices(epoch)
        per_process = math.ceil(len(indices) / self.num_replicas)
        padding = per_process * self.num_replicas - len(indices)
        if padding:
            indices = np.concatenate([indices, np.resize(indices, padding)])
        return indices[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard(self.epoch)[self.skip :].tolist())

    def __len__(self) -> int:
        return math.ceil(self.total / self.num_replicas) - self.skip
