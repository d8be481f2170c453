"""Training for real: the losses go down, and a multi-dataset run with the phase switch goes through
the engine (per-dataset codecs, sampling ratios, stages, CPS and CSS) end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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

INPUT, HEATMAP = (48, 64), (12, 16)
LIMBS = [6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("synthetic"))


def _config(cache: str, epochs: int = 2) -> ExperimentConfig:
    codec = {"type": "udp_heatmap", "input_size": list(INPUT), "heatmap_size": list(HEATMAP), "sigma": 1.0}
    msra = {**codec, "type": "msra_heatmap"}
    return ExperimentConfig(
        name="posebh-train-test",
        model={
            "type": "posebh",
            "backbone": {"type": "posebh_vit_moe", "arch": "small", "embed_dim": 32, "depth": 1, "num_heads": 2,
                         "num_experts": 2, "part_features": 8, "patch_size": 8, "patch_padding": 0,
                         "input_size": list(INPUT)},
            "heads": [{"type": "heatmap_deconv", "in_channels": 32, "num_keypoints": k, "deconv_channels": [16],
                       "input_stride": 8} for k in (17, len(LIMBS))],
            "proto_head": {"type": "posebh_proto_head", "in_channels": 32, "num_keypoints": [17, len(LIMBS)],
                           "embed_dim": 16, "deconv_channels": [16], "neck_channels": 8, "num_clusters": 4,
                           "momentum": 0.9, "input_stride": 8},
            "dataset_names": ["people", "limbs"],
            "cluster_options": [4, 8],
            "cluster_iterations": 20,
            "css_threshold": 0.05,
            "input_size": list(INPUT),
        },
        codec=codec,
        data=DataConfig(
            train=[{"type": "synthetic_people", "split": "train", "num_images": 16, "cache_dir": cache},
                   {"type": "posebh_keypoint_subset", "name": "limbs", "keypoints": LIMBS, "codec": msra,
                    "dataset": {"type": "synthetic_people", "split": "train", "num_images": 12, "seed": 1,
                                "cache_dir": cache}}],
            val=[{"type": "synthetic_people", "split": "val", "num_images": 6, "cache_dir": cache}],
            sampling_ratios=(0.5, 0.5), batch_size=8, eval_batch_size=16, num_workers=0, input_size=INPUT,
        ),
        train=TrainConfig(
            epochs=epochs,
            optimizer=OptimizerConfig(type="adamw", lr=2e-3, weight_decay=1e-4),
            schedule=ScheduleConfig(type="constant", warmup_iters=0),
            stages=(StageConfig(start_epoch=0, options={"freeze_prototypes": False, "cps": False, "css": False}),
                    StageConfig(start_epoch=1, trainable=("heads.*", "proto_head.*"), lr=1e-3,
                                options={"freeze_prototypes": True, "cps": True, "css": True})),
            val_interval=1, log_interval=1,
        ),
        eval=EvalConfig(metrics=[{"type": "coco_ap", "metainfo": "coco"}], main_metric="AP", flip_test=True),
        plugins=("posebh",),
    )


def test_a_few_hundred_steps_drive_every_loss_down(cache: str) -> None:
    config = _config(cache)
    model, batch = model_and_batch(config, (0, 1, 2, 3, -1, -2))
    assert isinstance(batch["heatmaps"], list)  # 17 and 12 keypoints: the model pads them itself
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    bank = model.proto_head.kpt_prototype
    start = bank.prototypes.clone()
    history = loss_history(model, batch, optimizer, 250)
    first, last = history[0], history[-1]
    # The heatmap heads and the prototype heatmaps fit the targets ...
    for name in ("loss_heatmap_people", "loss_heatmap_limbs", "loss_phm"):
        assert last[name] < 0.6 * first[name], (name, first[name], last[name])
    assert sum(last.values()) < 0.5 * sum(first.values())
    # ... while the pixel-prototype contrast, a cross-entropy over |cos| logits in [0, 1] with no
    # temperature (as the original), cannot fall far below log(classes) and stays about flat in
    # so short a run; the bank itself follows the embeddings by EMA.
    assert all(torch.isfinite(torch.tensor(step["loss_proto"])) for step in history)
    assert (bank.prototypes - start).norm(dim=-1).amax() > 0.1


def test_a_multi_dataset_run_switches_phases_and_evaluates(cache: str, tmp_path: Path) -> None:
    seen: dict[str, torch.Tensor] = {}

    class Watch(Callback):
        def on_epoch_end(self, trainer):
            if trainer.state.epoch == 1:  # the first phase is over
                seen["prototypes"] = trainer.model.proto_head.kpt_prototype.prototypes.clone()

    trainer = Trainer(_config(cache), tmp_path, registries=get_host().registries, quiet=True, num_prediction_images=0,
                      callbacks=[Watch()])
    result = trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    assert steps and all("loss_cps" not in r for r in steps if r["epoch"] == 0)
    assert all({"loss_cps", "loss_css", "loss_proto", "loss_phm"} <= set(r) for r in steps if r["epoch"] == 1)
    assert 0.0 <= result.main_value <= 1.0
    state = torch.load(tmp_path / "checkpoints" / "latest.pth", weights_only=True)
    assert torch.equal(state["model"]["proto_head.kpt_prototype.prototypes"], seen["prototypes"])  # frozen in phase 2
    assert (state["model"]["proto_head.cluster_prototype.keypoints"] >= 0).all()
    assert {n.split(".")[0] for n, p in trainer.model.named_parameters() if p.requires_grad} == {"heads", "proto_head"}
