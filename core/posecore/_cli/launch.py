"""How ``posecore run`` starts several processes, on one machine or several.

The flags are Accelerate's launcher's (``--num-processes`` is the total over all machines, as in
``accelerate launch``), and they may come from an Accelerate config file instead
(``--accelerate-config``; flags given on the command line win). The processes are started by
``torch.distributed.run`` (torchrun), which is what ``accelerate launch`` uses for GPUs too, and which
also starts CPU processes over gloo, where ``accelerate launch`` would need MPI. Several machines
meet at a static rendezvous at ``--main-process-ip:--main-process-port``: every machine runs the
same command with its own ``--machine-rank``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import attrs

from posecore._errors import ConfigError

__all__ = ["Launch", "add_launch_arguments", "launch_from_args", "relaunch"]

#: Accelerate's default rendezvous port (``accelerate launch --main_process_port``).
DEFAULT_PORT = 29500
#: ``distributed_type`` values of an Accelerate config that posecore runs, and what each means here.
_DISTRIBUTED_TYPES = ("NO", "MULTI_CPU", "MULTI_GPU", "FSDP", "DEEPSPEED")


@attrs.frozen
class Launch:
    """Where this command's processes run: ``num_processes`` in all, ``num_processes //
    num_machines`` on each machine; ``fsdp``: shard the model (see :mod:`posecore.engine._sharding`)."""

    num_processes: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int | None = None
    fsdp: bool = False
    deepspeed: bool = False

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1 or self.num_machines > 1


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("several processes and machines (as accelerate launch / torchrun)")
    group.add_argument("--num-processes", type=int, metavar="N",
                       help="train in N processes in all, over every machine (GPUs, or CPU processes with gloo)")
    group.add_argument("--num-machines", type=int, metavar="M", help="machines taking part (default 1)")
    group.add_argument("--machine-rank", type=int, metavar="R", help="this machine's rank, 0 to M-1 (default 0)")
    group.add_argument("--main-process-ip", metavar="IP", help="address of machine 0, where the processes meet")
    group.add_argument("--main-process-port", type=int, metavar="PORT",
                       help=f"port on machine 0 for the rendezvous (default {DEFAULT_PORT})")
    group.add_argument("--fsdp", action="store_true",
                       help="shard weights, gradients and optimiser state over the processes (FSDP2); "
                            "checkpoints/latest is then sharded (posecore convert makes one file of it)")
    group.add_argument("--accelerate-config", metavar="FILE",
                       help="an Accelerate config file (accelerate config, or one of posecore's in "
                            "posecore/engine/accelerate/) for the settings above; flags given here win")


def launch_from_args(args: argparse.Namespace) -> Launch:
    """The launch the flags and ``--accelerate-config`` ask for, checked."""
    found = _read_accelerate_config(args.accelerate_config) if getattr(args, "accelerate_config", None) else {}
    machines = _pick(args.num_machines, found.get("num_machines"), 1)
    launch = Launch(
        num_processes=_pick(args.num_processes, found.get("num_processes"), machines),
        num_machines=machines,
        machine_rank=_pick(args.machine_rank, found.get("machine_rank"), 0),
        main_process_ip=args.main_process_ip or found.get("main_process_ip"),
        main_process_port=_pick(args.main_process_port, found.get("main_process_port"), None),
        fsdp=bool(args.fsdp) or found.get("distributed_type") == "FSDP",
        deepspeed=found.get("distributed_type") == "DEEPSPEED",
    )
    _check(launch)
    return launch


def _pick(flag: int | None, configured: object, default: int | None) -> int | None:
    return flag if flag is not None else (int(configured) if configured is not None else default)


def _check(launch: Launch) -> None:
    if launch.num_processes < 1 or launch.num_machines < 1:
        raise ConfigError("--num-processes and --num-machines must be at least 1")
    if launch.num_processes % launch.num_machines:
        raise ConfigError(f"--num-processes {launch.num_processes} is the total over all machines: it must be a "
                          f"multiple of --num-machines {launch.num_machines}")
    if not 0 <= launch.machine_rank < launch.num_machines:
        raise ConfigError(f"--machine-rank {launch.machine_rank} must be between 0 and --num-machines - 1 "
                          f"({launch.num_machines - 1})")
    if launch.num_machines > 1 and not launch.main_process_ip:
        raise ConfigError("--num-machines > 1 needs --main-process-ip (the address of machine 0), and the same "
                          "--main-process-port on every machine")
    if launch.deepspeed:
        raise ConfigError("DeepSpeed configs are GPU-only and are started by Accelerate's own launcher: "
                          "accelerate launch --config_file FILE -m posecore run ... (docs/engine.md)")


def _read_accelerate_config(path: str) -> dict[str, object]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--accelerate-config: {path} does not exist")
    try:
        config = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--accelerate-config {path}: not valid YAML ({exc})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"--accelerate-config {path}: expected a mapping of Accelerate settings")
    kind = config.get("distributed_type", "NO")
    if kind not in _DISTRIBUTED_TYPES:
        raise ConfigError(f"--accelerate-config {path}: distributed_type {kind!r} is not one posecore runs "
                          f"({', '.join(_DISTRIBUTED_TYPES)})")
    return config


def relaunch(launch: Launch, output: Path) -> int:
    """Run this same command line in this machine's share of the processes, all writing ``output``."""
    argv = list(sys.argv[1:])
    for option in ("--num-processes", "--num-machines", "--machine-rank", "--main-process-ip", "--main-process-port",
                   "--output"):
        argv = _without_option(argv, option)
    per_machine = launch.num_processes // launch.num_machines
    if launch.num_machines == 1 and launch.main_process_port is None:
        meeting = ["--standalone"]  # a free local port, chosen by torchrun
    else:
        meeting = [f"--nnodes={launch.num_machines}", f"--node_rank={launch.machine_rank}",
                   f"--master_addr={launch.main_process_ip or '127.0.0.1'}",
                   f"--master_port={launch.main_process_port or DEFAULT_PORT}"]
    command = [sys.executable, "-m", "torch.distributed.run", *meeting, f"--nproc_per_node={per_machine}",
               "-m", "posecore", *argv, "--output", str(output)]
    where = f" on machine {launch.machine_rank} of {launch.num_machines}" if launch.num_machines > 1 else ""
    print(f"posecore: launching {per_machine} process{'es' if per_machine > 1 else ''}{where}", file=sys.stderr)
    return subprocess.call(command)  # the children see WORLD_SIZE, so they train instead of launching again


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == option:
            skip = True
        elif not token.startswith(option + "="):
            kept.append(token)
    return kept
