"""Sharded training: FSDP2 (``torch.distributed.fsdp.fully_shard``) and its checkpoints.

With ``--fsdp`` every process holds ``1/N`` of the weights, gradients and optimiser state. The
trainer shards the model itself with torch's public ``fully_shard`` (the FSDP2 that Accelerate's
FSDP plugin applies), on the GPU and on the CPU alike: Accelerate 1.16 turns FSDP on only for GPU
kinds of devices, and one code path that the CPU test suite runs is worth more than two.

Checkpoints. ``checkpoints/latest.json`` names a folder ``checkpoints/sharded-e<epoch>-b<batch>-s<step>/``
holding one ``rank-<r>-of-<n>.pth`` per process: that process's pieces of the weights and optimiser
state, its RNG states, and which tensors are pieces. The JSON holds the progress counters, the
best result, the history and the config. Every file is written atomically, the shards before the
JSON that names them, and older folders are removed after; so a run killed at any moment resumes
from a complete checkpoint. Everything is read with ``torch.load(weights_only=True)`` (no
pickled objects, unlike ``torch.distributed.checkpoint``'s metadata file). A piece is a contiguous
slice of dimension 0 (FSDP2's ``Shard(0)``), so the whole tensor is the pieces concatenated in rank
order: a run resumes on any number of processes, and :func:`load_sharded_train_state` (behind
``posecore convert``) makes one ordinary checkpoint of it without a process group.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from posecore._checkpoint import save_checkpoint
from posecore._errors import CheckpointError
from posecore._fileio import atomic_write
from posecore.engine._state import read_state_file

__all__ = ["POINTER", "SHARDED_FORMAT", "is_sharded_run", "load_optimizer_state", "load_sharded_train_state",
           "save_sharded_train_state", "shard_model"]

SHARDED_FORMAT = "posecore-sharded-train-state-1"
#: The file in ``checkpoints/`` that names the complete sharded checkpoint.
POINTER = "latest.json"


def shard_model(module: nn.Module) -> None:
    """``fully_shard`` every block of a ``nn.ModuleList`` (transformer blocks, stages), innermost
    first, then ``module`` itself for the parameters left: each block's weights are gathered only
    while it runs."""
    from torch.distributed.fsdp import fully_shard

    blocks = [child for parent in module.modules() if isinstance(parent, nn.ModuleList) for child in parent
              if any(True for _ in child.parameters())]
    for block in reversed(blocks):  # modules() is pre-order: reversed, inner blocks come first
        fully_shard(block)
    fully_shard(module)


# ---------------------------------------------------------------------------------------------- writing


def save_sharded_train_state(checkpoints: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                             progress: dict[str, Any], rng: dict[str, Any]) -> None:
    """Every process writes its shard, then the main one the JSON naming them (collective: call
    it on every process). ``progress``: epoch, batches_done, optimizer_steps, best, history, config."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    rank, world = dist.get_rank(), dist.get_world_size()
    model_state = get_model_state_dict(model)
    optimizer_state = get_optimizer_state_dict(model, optimizer)
    folder = f"sharded-e{progress['epoch']}-b{progress['batches_done']}-s{progress['optimizer_steps']}"
    pieces: list[list[str]] = []
    shard = {"format": SHARDED_FORMAT, "rank": rank, "world_size": world, "rng": rng,
             "model": _local(model_state, ("model",), pieces), "optimizer": _local(optimizer_state, ("optimizer",), pieces),
             "pieces": pieces}
    save_checkpoint(shard, checkpoints / folder / f"rank-{rank}-of-{world}.pth")
    dist.barrier()  # every shard is complete before the JSON names the folder
    if rank == 0:
        pointer = {"format": SHARDED_FORMAT, "folder": folder, "world_size": world, **progress}
        atomic_write(checkpoints / POINTER, lambda tmp: Path(tmp).write_text(json.dumps(pointer), encoding="utf-8"))
        for old in checkpoints.glob("sharded-*"):
            if old.name != folder:
                shutil.rmtree(old, ignore_errors=True)
    dist.barrier()


def _local(tree: Any, path: tuple[str, ...], pieces: list[list[str]]) -> Any:
    """``tree`` with every DTensor replaced by this process's piece, whose path is added to ``pieces``."""
    from torch.distributed.tensor import DTensor, Shard

    if isinstance(tree, dict):
        return {key: _local(value, (*path, str(key)), pieces) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_local(value, (*path, str(index)), pieces) for index, value in enumerate(tree)]
    if isinstance(tree, DTensor):
        if tuple(tree.placements) != (Shard(0),):
            raise CheckpointError(f"{'.'.join(path)}: placements {tree.placements} are not FSDP2's Shard(0)")
        pieces.append(list(path))
        return tree.to_local().detach().cpu()
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    return tree


# ---------------------------------------------------------------------------------------------- reading


def is_sharded_run(path: str | Path) -> bool:
    """Whether ``path`` (a run directory, its ``checkpoints/`` or the ``latest.json``) holds a sharded checkpoint."""
    return _pointer_path(Path(path)) is not None


def _pointer_path(path: Path) -> Path | None:
    for candidate in (path, path / POINTER, path / "checkpoints" / POINTER):
        if candidate.is_file() and candidate.name == POINTER:
            return candidate
    return None


def load_sharded_train_state(path: str | Path) -> dict[str, Any]:
    """A sharded checkpoint as :func:`~posecore.engine._state.load_train_state` returns a
    ``latest.pth``, with whole tensors: ``model`` (a state dict), ``optimizer`` (keyed by parameter
    name, for :func:`load_optimizer_state`), ``rng`` (rank 0's), the JSON's counters, best,
    history and config. Reads every shard; needs no process group."""
    pointer = _pointer_path(Path(path))
    if pointer is None:
        raise CheckpointError(f"{path} holds no sharded checkpoint ({POINTER} not found in it or its checkpoints/)")
    try:
        state = json.loads(pointer.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {pointer}: {exc}") from None
    if state.get("format") != SHARDED_FORMAT:
        raise CheckpointError(f"{pointer} is not a posecore sharded checkpoint (format {SHARDED_FORMAT})")
    world = int(state["world_size"])
    shards = [_load_shard(pointer.parent / state["folder"] / f"rank-{rank}-of-{world}.pth") for rank in range(world)]
    return {**state, **_join(shards), "rng": shards[0]["rng"], "scaler": None, "ema": None}


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a whole optimiser state (keyed by parameter name) into the optimiser of a sharded
    model: each process keeps its pieces, whatever number of processes wrote it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def _load_shard(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise CheckpointError(f"sharded checkpoint incomplete: {file} is missing")
    return read_state_file(file, SHARDED_FORMAT, "a posecore checkpoint shard")


def _join(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank 0's tree with every piece replaced by all ranks' pieces concatenated along dimension 0."""
    joined = {"model": shards[0]["model"], "optimizer": shards[0]["optimizer"]}
    for path in shards[0]["pieces"]:
        whole = torch.cat([_at(shard, path) for shard in shards], dim=0)
        _set(joined, path, whole)
    return joined


def _at(tree: Any, path: list[str]) -> Any:
    for key in path:
        tree = tree[int(key)] if isinstance(tree, list) else tree[key]
    return tree


def _set(tree: Any, path: list[str], value: Any) -> None:
    parent = _at(tree, path[:-1])
    parent[int(path[-1]) if isinstance(parent, list) else path[-1]] = value

