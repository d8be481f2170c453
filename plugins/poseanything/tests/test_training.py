"""Training: the losses go down on real episodes, and the trainer runs the whole loop on the
synthetic creatures (class-balanced pairs re-drawn every epoch, evaluation on unseen categories)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from poseanything_helpers import small_synthetic_config

from posecore.data._sample import collate_samples
from posecore.engine._builder import build_codec, build_model, build_train_set


def test_a_few_hundred_steps_drive_the_loss_down(synthetic_cache: str) -> None:
    config = small_synthetic_config(synthetic_cache)
    torch.manual_seed(0)
    codec = build_codec(config)
    model = build_model(config, codec=codec).train()
    train_set = build_train_set(config, codec=codec)
    batch = collate_samples([train_set.dataset[i] for i in range(0, 48, 6)])  # 8 episodes, 8 categories
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(200):
        losses = model.loss(batch)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append({name: float(value.detach()) for name, value in losses.items()})
    first, last = history[0], {name: np.mean([h[name] for h in history[-10:]]) for name in history[0]}
    assert sum(last.values()) < 0.5 * sum(first.values()), (first, last)
    assert last["l1_loss_layer2"] < 0.5 * first["l1_loss_layer2"] and last["proposal_loss"] < 0.5 * first["proposal_loss"]


def test_training_pairs_are_class_balanced_and_redrawn_every_epoch(synthetic_cache: str) -> None:
    config = small_synthetic_config(synthetic_cache)
    train_set = build_train_set(config, codec=build_codec(config))
    [part] = train_set.parts
    dataset = part.dataset
    categories = [dataset.annotation(i)["category_id"] for i in range(len(dataset))]
    counts = np.unique(categories, return_counts=True)[1]
    assert len(counts) == 24 and counts.min() == counts.max(), "every category as often as the largest"
    first = [dataset.pair(i) for i in range(len(dataset))]
    train_set.set_epoch(1)
    second = [dataset.pair(i) for i in range(len(dataset))]
    assert first != second and [p[0] != p[1] for p in first] == [True] * len(first)


def test_the_trainer_runs_episodes_and_scores_unseen_categories(synthetic_cache: str, tmp_path: Path) -> None:
    from posecore.engine._trainer import Trainer

    config = small_synthetic_config(synthetic_cache, epochs=2, val_interval=1, log_interval=1)
    result = Trainer(config, tmp_path / "run", quiet=True, num_prediction_images=2).fit()
    table = next(iter(result.tables.values()))
    assert set(table) >= {"PCK@0.2/instance", "mPCK/instance", "PCK@0.05/instance", "PCK@0.25/instance"}
    assert 0.0 <= table["PCK@0.2/instance"] <= 1.0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train = [record for record in log if record["kind"] == "train"]
    assert {"heatmap_loss", "proposal_loss", "l1_loss_layer0", "l1_loss_layer1", "l1_loss_layer2"} <= set(train[0])
    assert len([record for record in log if record["kind"] == "eval"]) == 2
    assert (tmp_path / "run" / "checkpoints" / "best.pth").exists()
    assert list((tmp_path / "run" / "predictions").glob("*.jpg"))
