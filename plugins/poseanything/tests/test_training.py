"""Training: the losses go down on real episodes, and the trainer runs the whole loop on the
synthetic creatures (class-balanced pairs re-drawn every epoch, evaluation on unseen categories)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from poseanything_helpers import TINY_SWIN, small_synthetic_config

import posecore
from posecore import CheckpointError
from posecore._plugins import get_host
from posecore.config import apply_overrides
from posecore.engine._builder import build_codec, build_train_set
from posecore.testing import loss_history, model_and_batch


def test_a_few_hundred_steps_drive_the_loss_down(synthetic_cache: str) -> None:
    model, batch = model_and_batch(small_synthetic_config(synthetic_cache), range(0, 48, 6))  # 8 episodes, 8 categories
    history = loss_history(model, batch, torch.optim.Adam(model.parameters(), lr=1e-3), 200)
    first, last = history[0], {name: np.mean([h[name] for h in history[-10:]]) for name in history[0]}
    assert sum(last.values()) < 0.5 * sum(first.values()), (first, last)
    assert last["l1_loss_layer2"] < 0.5 * first["l1_loss_layer2"] and last["proposal_loss"] < 0.5 * first["proposal_loss"]


def test_training_pairs_are_class_balanced_and_redrawn_every_epoch(synthetic_cache: str) -> None:
    config = small_synthetic_config(synthetic_cache)
    registries = get_host().registries
    train_set = build_train_set(config, registries, codec=build_codec(config, registries))
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
    from posecore.engine import Trainer

    config = small_synthetic_config(synthetic_cache, epochs=2, val_interval=1, log_interval=1)
    result = Trainer(config, tmp_path / "run", registries=get_host().registries, quiet=True,
                     num_prediction_images=2).fit()
    table = next(iter(result.tables.values()))
    assert set(table) >= {"PCK@0.2/instance", "mPCK/instance", "PCK@0.05/instance", "PCK@0.25/instance"}
    assert 0.0 <= table["PCK@0.2/instance"] <= 1.0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train = [record for record in log if record["kind"] == "train"]
    assert {"heatmap_loss", "proposal_loss", "l1_loss_layer0", "l1_loss_layer1", "l1_loss_layer2"} <= set(train[0])
    assert len([record for record in log if record["kind"] == "eval"]) == 2
    assert (tmp_path / "run" / "checkpoints" / "best.pth").exists()
    assert list((tmp_path / "run" / "predictions").glob("*.jpg"))


def test_a_preset_run_without_its_pretraining_file_says_what_to_download(tmp_path: Path, monkeypatch) -> None:
    """The MP-100 presets start from SwinV2 pre-training, as the released configs do: a run whose
    file is missing stops before any data is read and names the file, where to get it and the
    explicit way to train from scratch instead."""
    from posecore.engine import Trainer

    monkeypatch.chdir(tmp_path)  # no pretrained/ folder here
    config = posecore.get_preset("poseanything-small-1shot-split1")
    with pytest.raises(CheckpointError) as failure:
        Trainer(config, tmp_path / "run", registries=get_host().registries, data_root=tmp_path / "nowhere",
                quiet=True).fit()
    message = str(failure.value)
    assert "checkpoint not found: pretrained/swinv2_small_1k_500k.pth" in message
    assert "https://huggingface.co/zdaxie/SimMIM/" in message and "train.init_weights=null" in message


def test_the_trainer_starts_from_a_swinv2_pretraining_file(synthetic_cache: str, tmp_path: Path) -> None:
    """``train.init_weights`` naming a SwinV2 pre-training file (official layout: each stage's
    patch merging at the end of the stage) fills the backbone of the model the trainer builds."""
    from posecore.engine import Trainer

    torch.manual_seed(11)
    swin = posecore.build("backbones", TINY_SWIN).swin.state_dict()
    swin = {k: v for k, v in swin.items() if not k.endswith(("relative_position_index", "relative_coords_table"))}
    official = {re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m[1]) - 1}.downsample.", k): v
                for k, v in swin.items()}
    torch.save({"model": official}, tmp_path / "swinv2_pretraining.pth")
    config = apply_overrides(small_synthetic_config(synthetic_cache, epochs=0),
                             [f"model.backbone={json.dumps(TINY_SWIN)}",
                              f"train.init_weights={tmp_path / 'swinv2_pretraining.pth'}"])
    trainer = Trainer(config, tmp_path / "run", registries=get_host().registries, quiet=True, num_prediction_images=0)
    trainer.fit()
    loaded = trainer.model.state_dict()
    for key, value in swin.items():
        assert torch.equal(loaded["backbone.swin." + key].cpu(), value), key
