"""Parameters and GFLOPs in the pose papers' convention.

Pose papers (ViTPose, HRNet, HEViTPose) report "GFLOPs" as counted by mmcv/fvcore: one
multiply-accumulate (MAC) counted as one operation. PyTorch's ``FlopCounterMode`` counts a MAC
as two FLOPs at the operator level (matmuls, convolutions, attention, transposed convolutions),
so posecore reports its count divided by two, and says so. Element-wise ops, norms and
activations are not counted, as in those papers. Attention's two matrix products (``QK^T`` and
``AV``) are counted, as those papers' counters count them in ViTs (ViTPose-B's 17.1 GFLOPs include
them); PyTorch's counter misses the CPU kernels of fused attention, so posecore adds them.

Some families' papers used mmcv's ``get_model_complexity_info`` unchanged, which hooks leaf
modules (convolutions, linear layers, ...) and so never sees a product written in a module's own
``forward``: attention's ``QK^T`` and ``AV``. ``convention="modules"`` reproduces that count: only
operations inside leaf modules (modules without children) count. HEViTPose's and PVTv2's
published GFLOPs, which grow exactly with the square of the input side although their attention
grows faster, are counted this way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

__all__ = ["CONVENTIONS", "Complexity", "count_parameters", "measure_complexity"]

#: What :func:`measure_complexity` can count: every operator (the default), or only the operators
#: inside leaf modules, as mmcv's module-hook counter does.
CONVENTIONS = {
    "operators": "multiply-accumulates (mmcv/fvcore convention used by pose papers)",
    "modules": "multiply-accumulates of leaf modules only (mmcv's get_model_complexity_info: "
               "attention's matrix products in a module's forward are not counted)",
}


def _attention_flops(query_shape: torch.Size, key_shape: torch.Size, value_shape: torch.Size,
                     *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs (2 per MAC) of softmax(QK^T)V, as PyTorch counts its GPU attention kernels."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _onednn_linear_flops(input_shape: torch.Size, weight_shape: torch.Size, *args: Any, out_shape: Any = None,
                         **kwargs: Any) -> int:
    """FLOPs (2 per MAC) of oneDNN's linear: every input row times the (out, in) weight."""
    rows = 1
    for size in input_shape[:-1]:
        rows *= size
    return 2 * rows * weight_shape[0] * weight_shape[1]


#: Operators PyTorch's counter has no formula for: the CPU kernels of fused attention (and the
#: un-decomposed op seen under ``torch.inference_mode``), and oneDNN's linear, which posecore's
#: ViT uses in CPU inference (see :class:`posecore.models._vit.InferenceLinear`).
_UNCOUNTED = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops,
    torch.ops.aten.scaled_dot_product_attention: _attention_flops,
}
if hasattr(torch.ops.mkldnn, "_linear_pointwise"):
    _UNCOUNTED[torch.ops.mkldnn._linear_pointwise] = _onednn_linear_flops


@attrs.frozen
class Complexity:
    """Parameter count and multiply-accumulates of one forward pass at ``input_shape``."""

    params: int
    macs: int
    input_shape: tuple[int, ...]
    macs_by_module: Mapping[str, int] = attrs.field(factory=dict)
    convention: str = "operators"

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
            "flops_convention": CONVENTIONS[self.convention],
            "input_shape": list(self.input_shape),
            "GFLOPs_by_module": {k: round(v / 1e9, 3) for k, v in self.macs_by_module.items()},
        }


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or not (what papers report)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def measure_complexity(model: nn.Module, batch: Mapping[str, torch.Tensor], *,
                       convention: str = "operators") -> Complexity:
    """Count MACs of ``model(batch)`` for a batch of one; per top-level child module too.

    ``convention``: ``"operators"`` counts every matrix product and convolution; ``"modules"``
    only those inside leaf modules (see the module docstring).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"measure_complexity: convention must be one of {sorted(CONVENTIONS)}; got {convention!r}")
    image = batch.get("image")
    shape = tuple(image.shape) if isinstance(image, torch.Tensor) else ()
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_UNCOUNTED)
    try:
        with counter:
            model(batch)
    finally:
        model.train(was_training)
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    if convention == "modules":
        # The counter keys every module by its path; a leaf's count holds only its own operators.
        leaves = [name for name, module in model.named_modules() if name and not any(module.children())]
        counts = {name: sum(per_module.get(f"{root}.{name}", {}).values()) // 2 for name in leaves}
        total = sum(counts.values())
        top_level = {child: sum(v for name, v in counts.items() if name == child or name.startswith(child + "."))
                     for child, _ in model.named_children()}
    else:
        total = counter.get_total_flops() // 2
        top_level = {name: sum(per_module.get(f"{root}.{name}", {}).values()) // 2 for name, _ in model.named_children()}
    return Complexity(
        params=count_parameters(model),
        macs=total,
        input_shape=shape,
        macs_by_module={k: v for k, v in top_level.items() if v},
        convention=convention,
    )
