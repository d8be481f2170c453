"""Training for real: the heatmap loss goes down in a few hundred steps (both stages' parameter
sets), and a two-stage run through the engine switches the text mode and the trainable set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from posecore_vlpose.presets import HUMANART_TRAINABLE

from posecore._plugins import get_host
from posecore.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    OptimizerConfig,
    ScheduleConfig,
    StageConfig,
    TrainConfig,
)
from posecore.engine import Callback, Trainer
from posecore.testing import loss_history, model_and_batch

INPUT, HEATMAP = (32, 48), (8, 12)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("synthetic"))


def _config(cache: str, epochs: int = 2) -> ExperimentConfig:
    def styled(split: str, images: int) -> dict:
        return {"type": "vlpose_styled", "source": "cycle", "styles": ["cartoon", "sketch"],
                "dataset": {"type": "synthetic_people", "split": split, "num_images": images, "cache_dir": cache}}

    return ExperimentConfig(
        name="vlpose-train-test",
        model={"type": "vlpose",
               "backbone": {"type": "vlpose_vit", "arch": "small", "embed_dim": 32, "depth": 2, "num_heads": 2,
                            "patch_size": 8, "patch_padding": 1, "input_size": list(INPUT), "prompt_mode": "deep",
                            "prompt_tokens": 2},
               "num_keypoints": 17, "input_size": list(INPUT), "text_mode": "fixed",
               "prompts": {"cartoon": "a cartoon of a human", "sketch": "a pencil sketch of a human"},
               "text_vocab_size": 32, "text_width": 16, "text_layers": 1, "text_heads": 2, "text_intermediate": 32,
               "text_max_positions": 16, "matcher_heads": 2, "deconv_channels": [16], "freeze_main_branch": False},
        codec={"type": "udp_heatmap", "input_size": list(INPUT), "heatmap_size": list(HEATMAP), "sigma": 1.0},
        data=DataConfig(train=[styled("train", 12)], val=[styled("val", 4)], batch_size=8, eval_batch_size=8,
                        num_workers=0, input_size=INPUT),
        train=TrainConfig(
            epochs=epochs,
            optimizer=OptimizerConfig(type="adamw", lr=2e-3, weight_decay=1e-4, layer_decay=0.8),
            schedule=ScheduleConfig(type="constant", warmup_iters=0),
            stages=(StageConfig(start_epoch=0, trainable=("backbone.*", "matcher.*", "text_embed_proj.*", "head.*"),
                                options={"text_mode": "fixed"}),
                    StageConfig(start_epoch=1, trainable=HUMANART_TRAINABLE, options={"text_mode": "style"})),
            val_interval=1, log_interval=1,
        ),
        eval=EvalConfig(metrics=[{"type": "coco_ap", "metainfo": "coco"}], main_metric="AP", flip_test=True),
        plugins=("vlpose",),
    )


def test_a_few_hundred_steps_drive_the_loss_down(cache: str) -> None:
    model, batch = model_and_batch(_config(cache), 6)
    assert batch["style"] == ["cartoon", "sketch"] * 3
    model.on_stage(1, {"text_mode": "style"})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    # a model this small runs fastest on one thread, and a shared machine does not stall it
    history = [step["loss_heatmap"] for step in loss_history(model, batch, optimizer, 200, num_threads=1)]
    assert history[-1] < 0.5 * history[0], (history[0], history[-1])


def test_two_stage_run_switches_text_and_trainable_set(cache: str, tmp_path: Path) -> None:
    seen: list[tuple[str, set[str]]] = []

    class Watch(Callback):
        def on_epoch_end(self, trainer):
            model = trainer.model
            seen.append((model.text_mode, {n for n, p in model.named_parameters() if p.requires_grad}))

    trainer = Trainer(_config(cache), tmp_path, registries=get_host().registries, quiet=True, num_prediction_images=0,
                      callbacks=[Watch()])
    result = trainer.fit()
    assert 0.0 <= result.main_value <= 1.0
    mode0, trainable0 = seen[0]
    mode1, trainable1 = seen[1]
    assert mode0 == "fixed" and mode1 == "style"
    assert not any(n.startswith("text_encoder.") for n in trainable0 | trainable1)
    assert "backbone.blocks.0.attn.qkv.weight" in trainable0 and "head.deconv_layers.0.deconv0.weight" in trainable0
    assert {n.split(".")[0] for n in trainable1} == {"backbone", "matcher", "text_embed_proj", "head"}
    assert not any(".deconv0." in n or ".bn0." in n or n.startswith("backbone.blocks") for n in trainable1)
    assert {"backbone.prompt_embed", "backbone.deep_prompt_embed", "head.final_layer.weight"} <= trainable1
