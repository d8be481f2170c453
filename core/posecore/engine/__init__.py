"""The engine: training and evaluation with Accelerate, for every plugin's model.

``Trainer(config, output_dir, registries=posecore.load_plugins().registries).fit()`` is what
``posecore run`` calls; the submodules are the
pieces it is made of, usable on their own (samplers, schedules, evaluation, checkpoints).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from posecore.engine._trainer import Callback, RunResult, Trainer, TrainingDiverged

__all__ = ["Callback", "RunResult", "Trainer", "TrainingDiverged"]


def __getattr__(name: str) -> Any:
    if name in __all__:  # imported on first use: the engine pulls in torch and accelerate
        from posecore.engine import _trainer as trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'posecore.engine' has no attribute {name!r}")
