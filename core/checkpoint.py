"""Reading checkpoints safely, writing them atomically, and reporting key mismatches.

Loading never runs code from the file: ``torch.load(weights_only=True)``. Foreign framework
objects inside old checkpoints are the concern of the converters (see ``posecore convert``).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from posecore.errors import CheckpointError
from posecore.fileio import atomic_write

__all__ = ["KeyReport", "compare_state_dicts", "extract_state_dict", "load_checkpoint", "save_checkpoint"]

_STATE_DICT_KEYS = ("state_dict", "model", "module", "model_state_dict")


def load_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Load a checkpoint with ``weights_only=True`` onto the CPU; errors say why and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            lines = str(exc).strip().splitlines()
            culprit = next((line.strip() for line in lines if "global" in line.lower()), lines[0])
            raise CheckpointError(
                f"{path} holds objects that would need code to run to load ({culprit}). "
                "posecore loads weights only; if the file comes from a framework you trust, "
                "re-save its state_dict alone, or convert it with 'posecore convert'."
            ) from exc
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    except Exception as exc:  # torch raises many types for junk (KeyError, RuntimeError, EOFError)
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated, corrupt or another format): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def extract_state_dict(checkpoint: Any, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor mapping inside common containers (``state_dict``, ``model``, ``module`` keys)."""
    if isinstance(checkpoint, Mapping):
        for key in _STATE_DICT_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                return extract_state_dict(checkpoint[key], source=source)
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return dict(checkpoint)
    keys = ", ".join(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
    raise CheckpointError(f"{source}: no state_dict found (top level holds: {keys})")


def save_checkpoint(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: never a half-written file."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


@attrs.frozen
class KeyReport:
    """How a state_dict fits a model: keys missing, unexpected, or of the wrong shape."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def format(self) -> str:
        """A plain-text table, one row per problem key."""
        if self.clean:
            return "all keys match (0 missing, 0 unexpected, 0 wrong shape)"
        rows = [("missing", k, "") for k in self.missing]
        rows += [("unexpected", k, "") for k in self.unexpected]
        rows += [("wrong shape", k, f"checkpoint {list(got)} vs model {list(want)}") for k, got, want in self.mismatched]
        width = max(len(r[1]) for r in rows)
        lines = [f"{'problem':<12} {'key':<{width}} detail"]
        lines += [f"{a:<12} {b:<{width}} {c}".rstrip() for a, b, c in rows]
        lines.append(f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.mismatched)} wrong shape")
        return "\n".join(lines)


def compare_state_dicts(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> KeyReport:
    """Compare a model's ``state_dict()`` (``expected``) with a loaded one (``given``)."""
    return KeyReport(
        missing=tuple(sorted(k for k in expected if k not in given)),
        unexpected=tuple(sorted(k for k in given if k not in expected)),
        mismatched=tuple(
            (k, tuple(given[k].shape), tuple(expected[k].shape))
            for k in sorted(expected)
            if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
        ),
    )
