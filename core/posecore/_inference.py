"""How a loaded model runs for inference: folded for deployment, and in which precision.

Every inference path (``Pose`` and ``posecore predict``, ``posecore eval``, ``posecore export``,
``posecore compare``) goes through :func:`prepare_for_inference` and :func:`inference_autocast`,
so they predict alike.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path
from typing import Literal

import torch

from posecore._errors import ConfigError

__all__ = ["PRECISIONS", "Precision", "cpu_has_bf16", "inference_autocast", "prepare_for_inference"]

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512_BF16 or AMX); elsewhere oneDNN emulates it,
    slower than fp32. Read from ``/proc/cpuinfo``: torch has no public query for it."""
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return False
    for line in info.read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def prepare_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode with what it can fold for deployment folded in place (modules with
    ``fuse()`` / ``reparameterize()``, timm's convention: HEViT's convolution + BatchNorm pairs).
    The result predicts as the trained model does; save the trained one, not this."""
    from timm.utils import reparameterize_model

    return reparameterize_model(model.eval(), inplace=True)


def inference_autocast(device: torch.device | str, precision: Precision) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device``; fp32 needs none. bf16 on a CPU without
    native bf16 is allowed with a warning (it is slower than fp32 there); fp16 needs CUDA."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device; on the CPU use bf16 (or fp32)")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        warnings.warn("this CPU has no native bf16 (AVX512_BF16 or AMX): bf16 inference is emulated and slower than "
                      "fp32 here", stacklevel=2)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
