"""``posecore run`` / ``train``: train and evaluate a preset or config file into a run directory.

``--num-processes N`` (and ``--num-machines`` ...) relaunches the command under
``torch.distributed.run`` (see :mod:`posecore._cli.launch`), so one flag gives multi-GPU training,
or several CPU processes with the gloo backend where there is no GPU. Under ``accelerate launch``
or ``torchrun`` the flags are not needed: the processes find each other through the environment.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from posecore._cli.common import host_from_args, resolve_config
from posecore._cli.launch import launch_from_args, relaunch
from posecore.config import ExperimentConfig, apply_overrides
from posecore.engine._state import run_config_text, run_directory

__all__ = ["default_output_dir", "run_command"]


def default_output_dir(config: ExperimentConfig) -> Path:
    """``runs/<preset>-<YYYYmmdd-HHMMSS>`` under the working directory."""
    return Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _with_epochs(config: ExperimentConfig, epochs: int | None) -> ExperimentConfig:
    return config if epochs is None else apply_overrides(config, [f"train.epochs={epochs}"])


def run_command(args: argparse.Namespace) -> int:
    config = _with_epochs(_resumed_config(args) if args.resume and not (args.preset or args.config_file)
                          else resolve_config(args), args.epochs)
    output = Path(args.output) if args.output else (run_directory(args.resume) if args.resume
                                                     else default_output_dir(config))
    launch = launch_from_args(args)
    if launch.distributed and "WORLD_SIZE" not in os.environ:
        return relaunch(launch, output)
    from posecore.engine._trainer import Trainer

    # ``accelerate launch`` with an FSDP config says so through the environment; the trainer shards
    # the model itself (engine/_sharding.py), so Accelerate must not wrap it a second time.
    sharded = launch.fsdp or os.environ.pop("ACCELERATE_USE_FSDP", "").lower() == "true"
    try:
        result = Trainer(config, output, registries=host_from_args(args).registries, resume=args.resume,
                         overwrite=args.overwrite, data_root=args.data, quiet=args.quiet, sharded=sharded).fit()
    finally:
        _leave_process_group()
    value = result.main_value
    if value is not None and int(os.environ.get("RANK", "0")) == 0:
        print(f"{config.name}: {result.main_metric} {value:.4f} (run directory {output})")
    return 0


def _resumed_config(args: argparse.Namespace) -> ExperimentConfig:
    """``--resume RUN`` alone: the run's own config, with the overrides given now (the trainer
    refuses those that would invalidate the training done so far)."""
    import yaml

    from posecore._errors import ConfigError
    from posecore.config import structure
    from posecore.engine._assembly_rules import validate_config

    text = run_config_text(args.resume)
    try:
        config = structure(yaml.safe_load(text), ExperimentConfig)
    except Exception as exc:
        raise ConfigError(f"cannot resume {args.resume}: its config cannot be read ({exc}); give --preset or --config "
                          "as the run was started") from None
    config = apply_overrides(config, getattr(args, "overrides", []))
    validate_config(config, host_from_args(args).registries)
    return config


def _leave_process_group() -> None:
    """Tear the process group down before the interpreter exits: gloo's threads killed during
    interpreter shutdown can abort a finished process (SIGABRT) and fail a good run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
