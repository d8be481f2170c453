"""Parameters and GFLOPs in the pose papers' convention.

Pose papers (ViTPose, HRNet, HEViTPose) report "GFLOPs" as counted by mmcv/fvcore: one
multiply-accumulate (MAC) counted as one operation. PyTorch's ``FlopCounterMode`` counts a MAC
as two FLOPs at the operator level (matmuls, convolutions, attention, transposed convolutions),
so posecore reports its count divided by two, and says so. Element-wise ops, norms and
activations are not counted, as in those papers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["Complexity", "count_parameters", "measure_complexity"]


@attrs.frozen
class Complexity:
    """Parameter count and multiply-accumulates of one forward pass at ``input_shape``."""

    params: int
    macs: int
    input_shape: tuple[int, ...]
    macs_by_module: Mapping[str, int] = attrs.field(factory=dict)

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gflops(self) -> float:
        """GFLOPs as the pose papers report them (= GMACs)."""
        return self.macs / 1e9

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "params_M": round(self.params_m, 3),
            "GFLOPs": round(self.gflops, 3),
            "flops_convention": "multiply-accumulates (mmcv/fvcore convention used by pose papers)",
            "input_shape": list(self.input_shape),
            "GFLOPs_by_module": {k: round(v / 1e9, 3) for k, v in self.macs_by_module.items()},
        }


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or not (what papers report)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def measure_complexity(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> Complexity:
    """Count MACs of ``model(batch)`` for a batch of one; per top-level child module too."""
    image = batch.get("image")
    shape = tuple(image.shape) if isinstance(image, torch.Tensor) else ()
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(batch)
    finally:
        model.train(was_training)
    per_module = counter.get_flop_counts()
    top_level = {
        name: sum(per_module.get(f"{type(model).__name__}.{name}", {}).values()) // 2
        for name, _ in model.named_children()
    }
    return Complexity(
        params=count_parameters(model),
        macs=counter.get_total_flops() // 2,
        input_shape=shape,
        macs_by_module={k: v for k, v in top_level.items() if v},
    )
