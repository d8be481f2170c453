"""Training for real in a plugin's tests: a model and a batch built as the trainer builds them,
and a few hundred optimiser steps whose losses the test then judges.

Every method plugin checks that its losses fall on a tiny synthetic set; what falls, how far, and
what else must hold (a frozen text tower, a prototype bank that moves) is the method's own, so
these helpers build and run, and leave every judgement to the test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from posecore._plugins import get_host
from posecore.config._experiment import ExperimentConfig
from posecore.data._sample import Batch, collate_samples
from posecore.engine._builder import build_codec, build_model, build_train_set
from posecore.engine._evaluation import move_to_device
from posecore.models._base import PoseModel

__all__ = ["loss_history", "model_and_batch"]


def model_and_batch(config: ExperimentConfig, samples: int | Sequence[int], *,
                    seed: int = 0) -> tuple[PoseModel, Batch]:
    """``config``'s model (built after ``torch.manual_seed(seed)``, in train mode) and a batch of
    its training samples (``samples``: their indices in the concatenated training sets, negative
    ones counting from the end, or how many from the start, at most all), each through its
    dataset's train pipeline with the experiment's codec, collated and made ready on the CPU
    (JPEGs ``data.jpeg_decode: device`` leaves encoded are decoded): what the trainer would feed
    it, without the data loader."""
    registries = get_host().registries
    codec = build_codec(config, registries)
    torch.manual_seed(seed)
    model = build_model(config, registries, codec=codec).train()
    dataset = build_train_set(config, registries, codec=codec).dataset
    indices = range(min(samples, len(dataset))) if isinstance(samples, int) else samples
    return model, move_to_device(collate_samples([dataset[index] for index in indices]), torch.device("cpu"))


def loss_history(model: PoseModel, batches: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                 optimizer: torch.optim.Optimizer, steps: int, *,
                 num_threads: int | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place (in train mode) for ``steps`` optimiser steps on ``batches`` (one
    batch, or a list taken in turn), each step on the sum of ``model.loss``'s terms; returns every
    step's terms.

    A non-finite loss stops with the step and the terms. ``num_threads`` runs on that many torch
    threads (restored after): a tiny model is often fastest on one, and immune to a busy machine.
    """
    cycle = [batches] if isinstance(batches, Mapping) else list(batches)
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    history: list[dict[str, float]] = []
    try:
        model.train()
        for step in range(steps):
            losses = model.loss(cycle[step % len(cycle)])
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            terms = {name: float(value.detach()) for name, value in losses.items()}
            if not all(math.isfinite(value) for value in terms.values()):
                raise AssertionError(f"step {step}: non-finite loss {terms}")
            history.append(terms)
    finally:
        torch.set_num_threads(threads)
    return history
