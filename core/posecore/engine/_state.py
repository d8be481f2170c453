"""Training-state checkpoints: everything needed to resume bit-exactly, in one file.

``checkpoints/latest.pth`` holds the model, optimiser, gradient scaler, EMA, RNG states and the
progress counters; ``checkpoints/best.pth`` holds only the weights (the EMA weights when EMA is
on) and the metrics that made them best, for ``predict``, ``eval`` and export. Both are written
atomically and read back with ``weights_only=True``: only tensors, numbers, strings and plain
containers are stored. The data order needs no saving: it is a function of ``(seed, epoch)``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from posecore._checkpoint import save_checkpoint
from posecore._errors import CheckpointError

__all__ = ["TRAIN_STATE_FORMAT", "capture_rng", "load_train_state", "read_state_file", "restore_rng", "run_config_text",
           "run_directory"]

TRAIN_STATE_FORMAT = "posecore-train-state-1"


def capture_rng() -> dict[str, Any]:
    """Python's and torch's generator states (CPU and every CUDA device)."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a training state (see :func:`load_train_state` for its keys) atomically."""
    return save_checkpoint({"format": TRAIN_STATE_FORMAT, **state}, path)


def run_directory(resume: str | Path) -> Path:
    """The run directory ``--resume`` names: the folder itself, or the one holding
    ``checkpoints/latest.pth`` when the file is given."""
    path = Path(resume)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def run_config_text(resume: str | Path) -> str:
    """The config a run was written with: its ``config.yaml``, else the one its training state holds."""
    config_file = run_directory(resume) / "config.yaml"
    if config_file.is_file():
        return config_file.read_text(encoding="utf-8")
    return str(load_train_state(resume).get("config") or "")


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Read a ``latest.pth``: keys ``model``, ``optimizer``, ``scaler``, ``ema``, ``rng``, ``epoch``,
    ``batches_done`` (in that epoch), ``optimizer_steps``, ``best``, ``history``, ``config``."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "latest.pth"
    if not path.exists():
        raise CheckpointError(f"cannot resume: {path} does not exist (give a run directory or its checkpoints/latest.pth)")
    state = read_state_file(path, TRAIN_STATE_FORMAT, "a posecore training state",
                            "; to start from its weights instead, use model weights (load_from), not --resume")
    return state


def read_state_file(path: Path, format_name: str, what: str, hint: str = "") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a file that must be a mapping with ``format``
    ``format_name``; a truncated or foreign file raises a CheckpointError naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != format_name:
        raise CheckpointError(f"{path} is not {what} (format {format_name}){hint}")
    return state
