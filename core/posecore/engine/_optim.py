"""Parameter groups, optimisers, the learning-rate schedule and staged freezing.

Everything here is a pure function of the config and the step, so nothing but the step counter
needs saving to resume a schedule exactly.

Parameter groups follow the conventions every method here trains with (timm, mmcv, BEiT):

* no weight decay on 1-D parameters (biases, norms) and on what a module lists in
  ``no_weight_decay()`` (ViT position embeddings), unless ``decay_exemptions`` is ``"none"``
  (mmcv 1.x's default constructor, which decays them);
* ``OptimizerConfig.param_groups`` rules (first match by glob wins) scale lr and decay;
* ``layer_decay``: a submodule exposing ``num_layers`` and ``layer_id(name)`` (the ViT
  backbone) gets ``lr * layer_decay ** (num_layers + 1 - layer_id)``; everything outside it
  (the heads) counts as layer ``num_layers + 1`` and trains at the full rate.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from posecore._errors import ConfigError
from posecore.config import OptimizerConfig, ScheduleConfig, StageConfig

__all__ = ["apply_stage", "build_optimizer", "build_param_groups", "lr_factor", "set_learning_rate", "stage_at"]


def _layer_decayed_module(model: nn.Module) -> tuple[str, nn.Module] | None:
    for name, module in model.named_modules():
        if callable(getattr(module, "layer_id", None)) and isinstance(getattr(module, "num_layers", None), int):
            return name, module
    return None


def _no_decay_names(model: nn.Module) -> set[str]:
    names: set[str] = set()
    for prefix, module in model.named_modules():
        listed = getattr(module, "no_weight_decay", None)
        if callable(listed):
            names |= {f"{prefix}.{name}" if prefix else name for name in listed()}
    return names


def build_param_groups(model: nn.Module, config: OptimizerConfig) -> list[dict[str, Any]]:
    """Groups of parameters sharing lr scale and weight decay; every parameter is included, frozen
    or not, so that a later stage can unfreeze it without rebuilding the optimiser."""
    decayed = _layer_decayed_module(model) if config.layer_decay is not None else None
    if config.layer_decay is not None and decayed is None:
        raise ConfigError(
            "train.optimizer.layer_decay is set but no submodule of the model has 'num_layers' and 'layer_id()' "
            "(the ViT backbones do); remove layer_decay or use such a backbone"
        )
    no_decay = _no_decay_names(model) if config.decay_exemptions == "1d_and_listed" else None
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        rule = next((r for r in config.param_groups if fnmatch.fnmatchcase(name, r.pattern)), None)
        lr_scale = rule.lr_mult if rule else 1.0
        exempt = no_decay is not None and (parameter.ndim <= 1 or name in no_decay)
        decay = 0.0 if exempt else config.weight_decay
        decay *= rule.decay_mult if rule else 1.0
        if decayed is not None:
            prefix, module = decayed
            depth = module.num_layers + 1
            if prefix == "" or name.startswith(prefix + "."):
                depth = int(module.layer_id(name[len(prefix) + 1:] if prefix else name))
            lr_scale *= config.layer_decay ** (module.num_layers + 1 - depth)
        group = groups.setdefault((lr_scale, decay), {"params": [], "names": [], "lr_scale": lr_scale,
                                                      "weight_decay": decay})
        group["params"].append(parameter)
        group["names"].append(name)
    return list(groups.values())


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """The configured optimiser over :func:`build_param_groups`; lrs are set per step by the trainer."""
    groups = build_param_groups(model, config)
    for group in groups:
        group["lr"] = config.lr * group["lr_scale"]
    if config.type == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)
    if config.type == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=config.betas)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def lr_factor(schedule: ScheduleConfig, step: int, steps_per_epoch: int, total_steps: int, base_lr: float) -> float:
    """Multiplier of the base lr at optimiser step ``step`` (0-based): linear warmup from
    ``warmup_ratio`` over ``warmup_iters`` steps, then step decay by ``gamma`` at each milestone
    epoch, or cosine to ``min_lr`` over the whole run (mmpose's and timm's conventions)."""
    if schedule.type == "step":
        epoch = step // max(1, steps_per_epoch)
        factor = schedule.gamma ** sum(epoch >= milestone for milestone in schedule.milestones)
    elif schedule.type == "cosine":
        progress = min(1.0, step / max(1, total_steps))
        floor = schedule.min_lr / base_lr if base_lr > 0 else 0.0
        factor = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        factor = 1.0
    if step < schedule.warmup_iters:
        warm = schedule.warmup_ratio + (1.0 - schedule.warmup_ratio) * step / schedule.warmup_iters
        factor *= warm
    return factor


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every group ``lr`` times its ``lr_scale``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def stage_at(stages: Iterable[StageConfig], epoch: int) -> tuple[int, StageConfig] | None:
    """The stage in force at ``epoch`` (the last one started), with its index."""
    current = None
    for index, stage in enumerate(stages):
        if stage.start_epoch <= epoch:
            current = (index, stage)
    return current


def apply_stage(model: nn.Module, stage: StageConfig) -> Mapping[str, int]:
    """Freeze every parameter no ``stage.trainable`` glob matches; return the counts of trainable
    and frozen parameter tensors. A stage that would train nothing is a config error."""
    trainable = frozen = 0
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(any(fnmatch.fnmatchcase(name, pattern) for pattern in stage.trainable))
        trainable += parameter.requires_grad
        frozen += not parameter.requires_grad
    if trainable == 0:
        raise ConfigError(
            f"train.stages (start_epoch {stage.start_epoch}): trainable {list(stage.trainable)} matches no parameter "
            f"of the model; parameter names look like {next(iter(dict(model.named_parameters())), '?')!r}"
        )
    return {"trainable": trainable, "frozen": frozen}
