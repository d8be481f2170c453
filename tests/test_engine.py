"""The engine: sampling, schedules, parameter groups, stages, and whole training runs on the CPU."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from posecore._errors import CheckpointError, ConfigError
from posecore._plugins import get_host
from posecore.config import (
    ExperimentConfig,
    OptimizerConfig,
    ParamGroupRule,
    ScheduleConfig,
    StageConfig,
    apply_overrides,
    load_config,
)
from posecore.engine._builder import build_model
from posecore.engine._ema import ModelEMA
from posecore.engine._evaluation import evaluate, predict_dataset
from posecore.engine._optim import apply_stage, build_param_groups, lr_factor, stage_at
from posecore.engine._sampling import EpochSampler
from posecore.engine._state import load_train_state
from posecore.engine._trainer import Callback, Trainer, TrainingDiverged, _check_shardable

# ------------------------------------------------------------------------------------ sampling


def test_epoch_sampler_is_a_function_of_seed_and_epoch():
    a, b = EpochSampler([7, 5], shuffle=True, seed=3), EpochSampler([7, 5], shuffle=True, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    assert sorted(a) == list(range(12))
    b.set_epoch(5)
    assert list(a) != list(b)


def test_epoch_sampler_shards_cover_the_epoch_and_pad_evenly():
    shards = [EpochSampler([10], shuffle=True, seed=1, num_replicas=3, rank=r) for r in range(3)]
    for shard in shards:
        shard.set_epoch(2)
    lists = [list(s) for s in shards]
    assert [len(x) for x in lists] == [4, 4, 4]  # 10 padded to 12
    assert set().union(*map(set, lists)) == set(range(10))
    whole = EpochSampler([10], shuffle=True, seed=1).epoch_indices(2)
    assert lists[0][:4] == list(whole[0::3][:4])


def test_epoch_sampler_skip_resumes_mid_epoch():
    sampler = EpochSampler([20], shuffle=True, seed=0)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.set_epoch(1, skip=8)
    assert list(sampler) == full[8:] and len(sampler) == 12


def test_epoch_sampler_ratios_follow_the_weights():
    sampler = EpochSampler([100, 100], shuffle=True, seed=0, ratios=[3.0, 1.0])
    indices = sampler.epoch_indices(0)
    from_first = np.mean(indices < 100)
    assert len(indices) == 200 and 0.68 < from_first < 0.82
    first = indices[indices < 100]
    assert len(set(first.tolist())) == 100  # walked without replacement before repeating


def test_epoch_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sampling ratios"):
        EpochSampler([3, 4], shuffle=True, ratios=[1.0])
    with pytest.raises(ValueError, match="rank 2"):
        EpochSampler([3], shuffle=False, num_replicas=2, rank=2)


# ------------------------------------------------------------------------------------ schedules


def test_lr_factor_warmup_then_steps():
    schedule = ScheduleConfig(type="step", warmup_iters=10, warmup_ratio=0.1, milestones=(2, 3), gamma=0.5)
    assert lr_factor(schedule, 0, 5, 20, 1.0) == pytest.approx(0.1)
    assert lr_factor(schedule, 5, 5, 20, 1.0) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(schedule, 10, 5, 20, 1.0) == pytest.approx(0.5)  # epoch 2: first milestone
    assert lr_factor(schedule, 15, 5, 20, 1.0) == pytest.approx(0.25)


def test_lr_factor_cosine_reaches_min_lr():
    schedule = ScheduleConfig(type="cosine", warmup_iters=0, min_lr=1e-4)
    assert lr_factor(schedule, 0, 10, 100, 1e-2) == pytest.approx(1.0)
    assert lr_factor(schedule, 50, 10, 100, 1e-2) == pytest.approx((1e-2 + 1e-4) / 2 / 1e-2)
    assert lr_factor(schedule, 100, 10, 100, 1e-2) * 1e-2 == pytest.approx(1e-4)


# ------------------------------------------------------------------------------------ param groups


class _Layered(nn.Module):
    """A toy 'backbone' with layer ids, inside a model with a head, like a ViT pose model."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.embed = nn.Linear(2, 2)
        self.backbone.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
        self.backbone.num_layers = 2
        self.backbone.layer_id = lambda name: int(name.split(".")[1]) + 1 if name.startswith("blocks") else 0
        self.backbone.pos = nn.Parameter(torch.zeros(1, 3, 2))
        self.backbone.no_weight_decay = lambda: {"pos"}
        self.head = nn.Linear(2, 2)


def test_param_groups_layer_decay_and_no_decay():
    groups = build_param_groups(_Layered(), OptimizerConfig(lr=1.0, weight_decay=0.1, layer_decay=0.5))
    scale = {name: (g["lr_scale"], g["weight_decay"]) for g in groups for name in g["names"]}
    assert scale["head.weight"] == (1.0, 0.1)
    assert scale["head.bias"] == (1.0, 0.0)
    assert scale["backbone.blocks.1.weight"] == (0.5, 0.1)
    assert scale["backbone.blocks.0.weight"] == (0.25, 0.1)
    assert scale["backbone.embed.weight"] == (0.125, 0.1)
    assert scale["backbone.pos"][1] == 0.0


def test_decay_exemptions_none_decays_biases_norms_and_listed_unless_a_rule_says_otherwise():
    config = OptimizerConfig(lr=1.0, weight_decay=0.1, decay_exemptions="none",
                             param_groups=(ParamGroupRule("backbone.*", lr_mult=0.1), ParamGroupRule("*bias", decay_mult=0.0)))
    decay = {name: g["weight_decay"] for g in build_param_groups(_Layered(), config) for name in g["names"]}
    assert decay["backbone.pos"] == 0.1  # listed in no_weight_decay(), decayed all the same (mmcv 1.x)
    assert decay["backbone.blocks.0.weight"] == 0.1 and decay["head.weight"] == 0.1
    assert decay["head.bias"] == 0.0  # the rule, not the convention
    with pytest.raises(ValueError, match="decay_exemptions"):
        OptimizerConfig(decay_exemptions="biases")


def test_param_group_rules_first_match_wins():
    config = OptimizerConfig(weight_decay=0.1, param_groups=(ParamGroupRule("backbone.*", lr_mult=0.1),
                                                              ParamGroupRule("*", lr_mult=0.0)))
    groups = build_param_groups(_Layered(), config)
    scale = {name: g["lr_scale"] for g in groups for name in g["names"]}
    assert scale["backbone.blocks.0.weight"] == pytest.approx(0.1) and scale["head.weight"] == 0.0


def test_layer_decay_needs_a_layered_module():
    with pytest.raises(ConfigError, match="layer_decay"):
        build_param_groups(nn.Linear(2, 2), OptimizerConfig(layer_decay=0.75))


def test_stages_freeze_by_glob():
    model = _Layered()
    counts = apply_stage(model, StageConfig(start_epoch=0, trainable=("head.*",)))
    assert counts == {"trainable": 2, "frozen": 7}
    assert not model.backbone.embed.weight.requires_grad and model.head.weight.requires_grad
    with pytest.raises(ConfigError, match="matches no parameter"):
        apply_stage(model, StageConfig(start_epoch=0, trainable=("nothing.*",)))
    stages = (StageConfig(start_epoch=0), StageConfig(start_epoch=3))
    assert stage_at(stages, 2)[0] == 0 and stage_at(stages, 3)[0] == 1


# ------------------------------------------------------------------------------------ whole runs


def _batches_per_epoch(cache: str) -> int:
    from posecore.data._synthetic import synthetic_people

    return len(synthetic_people("train", num_images=24, cache_dir=cache)) // 8


def _fit(config: ExperimentConfig, output, **kwargs):
    return Trainer(config, output, registries=get_host().registries, quiet=True, num_prediction_images=2, **kwargs).fit()


def test_run_writes_everything_a_user_looks_at(synthetic_cache, tiny_config, tmp_path):
    result = _fit(tiny_config(), tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["main_metric"] == "AP" and metrics["AP"] == result.main_value
    assert {"AP", "AR", "PCK@0.2/instance"} <= set(metrics)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "eval"] == [1, 2]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 2 * _batches_per_epoch(synthetic_cache)
    assert all(math.isfinite(r["loss"]) and r["images_per_s"] > 0 for r in train)
    assert all(r["loss"] == pytest.approx(r["loss_heatmap"]) for r in train)  # one loss term: the same mean
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_config(tmp_path / "config.yaml") == tiny_config()
    pictures = sorted(p.name for p in (tmp_path / "predictions").iterdir())
    assert "overview.jpg" in pictures and len(pictures) == 3
    best = torch.load(tmp_path / "checkpoints" / "best.pth", weights_only=True)
    assert best["meta"]["preset"] == "engine-test" and "state_dict" in best
    assert (tmp_path / "tensorboard").is_dir()


class _Interrupt(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.state.optimizer_steps == self.at_step:
            raise KeyboardInterrupt


@pytest.mark.reliability
def test_resume_after_a_kill_mid_epoch_is_bit_exact(synthetic_cache, tiny_config, tmp_path):
    config = tiny_config(checkpoint_interval=2, ema_decay=0.9)
    whole = _fit(config, tmp_path / "whole")
    per_epoch = _batches_per_epoch(synthetic_cache)
    assert per_epoch >= 4
    stop = per_epoch + 3  # the third step of the second epoch; the last checkpoint was at an even step
    with pytest.raises(KeyboardInterrupt):
        _fit(config, tmp_path / "killed", callbacks=[_Interrupt(at_step=stop)])
    saved = load_train_state(tmp_path / "killed")
    last = stop - stop % 2
    assert (saved["epoch"], saved["batches_done"], saved["optimizer_steps"]) == (1, last - per_epoch, last)
    resumed = _fit(config, tmp_path / "killed", resume=tmp_path / "killed")
    final_a = load_train_state(tmp_path / "whole")
    final_b = load_train_state(tmp_path / "killed")
    for key, value in final_a["model"].items():
        assert torch.equal(value, final_b["model"][key]), key
    for key, value in final_a["ema"].items():
        assert torch.equal(value, final_b["ema"][key]), key
    assert resumed.tables == whole.tables


def test_ema_update_averages_floats_and_copies_counters():
    """``ema = decay * ema + (1 - decay) * weights`` for parameters and float buffers, step after
    step; integer buffers (BatchNorm's counter) are the model's; the model is never touched."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = ModelEMA(model, decay=0.75)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        model(torch.randn(8, 3))  # moves the running statistics and the batch counter
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        current = {k: v.clone() for k, v in model.state_dict().items()}
        ema.update(model)
        for key, value in current.items():
            expected[key] = 0.75 * expected[key] + 0.25 * value if value.is_floating_point() else value
            torch.testing.assert_close(ema.state_dict()[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)
            assert torch.equal(model.state_dict()[key], value), key
    assert int(ema.state_dict()["1.num_batches_tracked"]) == 2
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_weights_are_what_is_evaluated_and_saved_as_best(synthetic_cache, tiny_config, tmp_path):
    """With ``train.ema_decay`` the trainer averages after every optimiser step, evaluates the
    average (not the trained weights) and writes it to ``best.pth``."""
    decay = 0.8  # not 0.5: a formula with decay and 1 - decay swapped must not pass
    config = tiny_config(epochs=1, ema_decay=decay)
    snapshots: list[dict[str, torch.Tensor]] = []

    class Watch(Callback):
        def on_train_start(self, trainer):
            snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

        def on_step_end(self, trainer):
            snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

    trainer = Trainer(config, tmp_path, registries=get_host().registries, quiet=True, num_prediction_images=0,
                      callbacks=[Watch()])
    result = trainer.fit()
    assert len(snapshots) == 1 + _batches_per_epoch(synthetic_cache)
    expected = dict(snapshots[0])
    for weights in snapshots[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * v if v.is_floating_point() else v for k, v in weights.items()}
    for key, value in trainer.ema.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=key)

    best = torch.load(tmp_path / "checkpoints" / "best.pth", weights_only=True)["state_dict"]
    for key, value in trainer.ema.state_dict().items():
        assert torch.equal(best[key], value), key
    assert any(not torch.equal(best[k], v) for k, v in trainer.model.state_dict().items()), "best.pth is the average"

    (eval_set,) = trainer.eval_sets

    def predictions(model):
        return predict_dataset(model, eval_set.dataset, batch_size=config.data.eval_batch_size,
                               flip_test=config.eval.flip_test)

    evaluated = trainer.final_results[eval_set.label]
    averaged, trained = predictions(trainer.ema.module), predictions(trainer.model)
    np.testing.assert_array_equal(np.stack([r["keypoint_scores"] for r in evaluated]),
                                  np.stack([r["keypoint_scores"] for r in averaged]))
    assert not np.array_equal(np.stack([r["keypoint_scores"] for r in evaluated]),
                              np.stack([r["keypoint_scores"] for r in trained]))
    assert result.tables[eval_set.label] == evaluate(averaged, eval_set.metrics)


@pytest.mark.reliability
def test_resume_refuses_a_different_config(synthetic_cache, tiny_config, tmp_path):
    _fit(tiny_config(epochs=1), tmp_path)
    with pytest.raises(ConfigError, match=r"differs from the run's in train.seed: 0 -> 1\. A resumed run may change "
                                          r"only data.eval_batch_size"):
        Trainer(tiny_config(epochs=2, seed=1), tmp_path, registries=get_host().registries, resume=tmp_path, quiet=True)
    with pytest.raises(CheckpointError, match="does not exist"):
        Trainer(tiny_config(), tmp_path / "nowhere", registries=get_host().registries, resume=tmp_path / "nowhere",
                quiet=True)


class _Poison(Callback):
    """Makes every weight NaN after an optimiser step, as a diverging run would."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.state.optimizer_steps == self.at_step:
            with torch.no_grad():
                for parameter in trainer.model.head.parameters():
                    parameter.fill_(float("nan"))


@pytest.mark.reliability
def test_nan_loss_stops_with_the_step_and_keeps_the_good_checkpoint(synthetic_cache, tiny_config, tmp_path):
    config = tiny_config(checkpoint_interval=2)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch 4 \(optimiser step 4\).*loss_heatmap=nan") as error:
        _fit(config, tmp_path, callbacks=[_Poison(at_step=3)])
    assert str(tmp_path / "checkpoints" / "latest.pth") in str(error.value)
    kept = load_train_state(tmp_path)
    assert kept["optimizer_steps"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_epochs_zero_evaluates_the_untrained_model(synthetic_cache, tiny_config, tmp_path):
    result = _fit(apply_overrides(tiny_config(), ["train.epochs=0"]), tmp_path)
    assert 0.0 <= result.main_value < 0.05
    assert json.loads((tmp_path / "metrics.json").read_text())["AP"] == result.main_value


def test_stages_accumulation_and_bf16(synthetic_cache, tiny_config, tmp_path):
    """Stage freezing and lr, gradient accumulation, bf16 autocast and gradient clipping, each seen
    where it acts: the head's output dtype in training, and the gradients and lr the optimiser steps with."""
    stages = (StageConfig(start_epoch=0, trainable=("head.*",)), StageConfig(start_epoch=1, lr=5e-4))
    clip = 1e-3  # below every raw gradient norm of this run, so clipping always acts
    config = tiny_config(stages=stages, grad_accum_steps=4, mixed_precision="bf16", grad_clip=clip)
    frozen_before = None
    training_dtypes: set[torch.dtype] = set()
    steps: list[tuple[float, float]] = []  # (gradient norm, lr) seen by each optimiser step

    class Watch(Callback):
        def on_train_start(self, trainer):
            nonlocal frozen_before
            frozen_before = {k: v.clone() for k, v in trainer.model.backbone.state_dict().items()}

            def record_dtype(module, inputs, output):
                if module.training:
                    training_dtypes.add(output.dtype)

            def record_step(optimizer, args, kwargs):
                grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
                steps.append((float(norm), optimizer.param_groups[0]["lr"]))

            trainer.model.head.register_forward_hook(record_dtype)
            trainer.optimizer.optimizer.register_step_pre_hook(record_step)

        def on_epoch_end(self, trainer):
            if trainer.state.epoch == 1:  # stage 0: the backbone must not have moved
                for key, value in trainer.model.backbone.state_dict().items():
                    if value.is_floating_point() and "running" not in key:
                        assert torch.equal(value, frozen_before[key]), key

    _fit(config, tmp_path, callbacks=[Watch()])
    state = load_train_state(tmp_path)
    per_epoch = math.ceil(_batches_per_epoch(synthetic_cache) / 4)
    assert state["optimizer_steps"] == 2 * per_epoch
    assert training_dtypes == {torch.bfloat16}, "the training forward runs under bf16 autocast"
    assert len(steps) == state["optimizer_steps"]
    assert [norm for norm, _ in steps] == pytest.approx([clip] * len(steps), rel=1e-3), "gradients clipped to grad_clip"
    schedule, total = config.train.schedule, 2 * per_epoch  # stage 0 at the optimiser's 1e-3, stage 1 at its own 5e-4
    expected = [base * lr_factor(schedule, step, per_epoch, total, base)
                for step, base in enumerate([1e-3] * per_epoch + [5e-4] * per_epoch)]
    assert [lr for _, lr in steps] == pytest.approx(expected)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records if r["kind"] == "train"] == pytest.approx(expected)


@pytest.mark.reliability
def test_fp16_on_the_cpu_is_a_clear_error(synthetic_cache, tiny_config, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 is available with CUDA")
    with pytest.raises(ConfigError, match="fp16.*bf16"):
        Trainer(tiny_config(mixed_precision="fp16"), tmp_path, registries=get_host().registries)


def test_the_vit_trains_through_the_engine_with_layer_decay(synthetic_cache, tiny_config, tmp_path):
    """The core ViT (ViTPose's layout, tiny) with layer-wise lr decay groups: loss falls, AP is computed."""
    import attrs

    config = tiny_config(epochs=3, optimizer=OptimizerConfig(lr=2e-3, layer_decay=0.8))
    config = attrs.evolve(config, model={
        "type": "topdown_heatmap",
        "backbone": {"type": "vit", "embed_dim": 64, "depth": 2, "num_heads": 2, "patch_size": 8,
                     "patch_padding": 1, "input_size": [48, 64]},
        "head": {"type": "heatmap_deconv", "in_channels": 64, "num_keypoints": 17, "deconv_channels": [32],
                 "input_stride": 8},
        "input_size": [48, 64],
    })
    trainer = Trainer(config, tmp_path, registries=get_host().registries, quiet=True, num_prediction_images=0)
    result = trainer.fit()
    scales = sorted({round(group["lr_scale"], 6) for group in trainer.optimizer.param_groups})
    assert scales == [round(0.8 ** k, 6) for k in (3, 2, 1, 0)]  # embeddings, block 0, block 1, head
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert losses[-1] < losses[0] and 0.0 <= result.main_value <= 1.0


def test_a_compiled_run_trains_as_the_eager_one_and_keeps_the_checkpoint_keys(tiny_config, tmp_path):
    """``train.compile``: the model's parts through torch.compile (inductor's C++ backend on the
    CPU), the EMA copy evaluation runs included. Graphs are captured, the losses are the eager
    run's step by step to float rounding, and checkpoints an eager model loads."""
    from torch._dynamo.utils import counters

    losses = {}
    for compiled in (False, True):
        output = tmp_path / f"compile-{compiled}"
        torch._dynamo.reset()
        counters.clear()
        _fit(tiny_config(epochs=1, compile=compiled, ema_decay=0.9), output)
        assert (counters["stats"]["unique_graphs"] > 0) == compiled, "what train.compile compiles is what runs"
        records = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
        losses[compiled] = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses[True]) >= 3
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)
    saved = torch.load(tmp_path / "compile-True" / "checkpoints" / "best.pth", weights_only=True)["state_dict"]
    eager = torch.load(tmp_path / "compile-False" / "checkpoints" / "best.pth", weights_only=True)["state_dict"]
    assert saved.keys() == eager.keys()
    model = build_model(tiny_config(), get_host().registries)
    model.load_state_dict(saved)  # strict: an uncompiled model takes the compiled run's weights


def test_compile_parts_reaches_models_whose_loss_never_calls_the_model() -> None:
    """A model whose ``loss`` calls its parts directly (as PoseBH's does) is compiled through them."""
    from torch._dynamo.utils import counters

    from posecore.engine._trainer import compile_parts

    class Parts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 2)])

        def loss(self, x: torch.Tensor) -> torch.Tensor:
            return self.heads[1](self.heads[0](x)).square().mean()

    torch._dynamo.reset()
    counters.clear()
    model = Parts()
    expected = model.loss(torch.ones(3, 4))
    compile_parts(model)
    torch.testing.assert_close(model.loss(torch.ones(3, 4)), expected)
    assert counters["stats"]["unique_graphs"] == 2
    assert set(model.state_dict()) == {"heads.0.weight", "heads.0.bias", "heads.1.weight", "heads.1.bias"}


def test_compile_with_sharded_training_is_a_clear_error(tiny_config):
    """(Checked before the processes start; the two-process FSDP runs are in test_multiprocess.py.)"""
    with pytest.raises(ConfigError, match=r"train\.compile is not supported with sharded training"):
        _check_shardable(tiny_config(compile=True), num_processes=2)
