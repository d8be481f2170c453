"""How a loaded model runs for inference: folded for deployment, and in which precision.

Every inference path (``Pose`` and ``posecore predict``, ``posecore eval``, ``posecore export``,
``posecore compare``) goes through :func:`prepare_for_inference` and :func:`inference_autocast`,
so they predict alike.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from pathlib import Path
from typing import Literal

import torch

from posecore._errors import ConfigError

__all__ = ["PRECISIONS", "Precision", "cpu_has_amx", "inference_autocast", "prepare_for_inference"]

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16")


#: oneDNN's ISA caps (``ONEDNN_MAX_CPU_ISA``, formerly ``DNNL_MAX_CPU_ISA``) that still allow AMX.
_AMX_ISA_CAPS = ("ALL", "DEFAULT")


@functools.cache
def cpu_has_amx() -> bool:
    """Whether bf16 pays on this CPU: it has AMX tiles (``amx_bf16``) and oneDNN may use them.

    Without AMX, bf16 is slower than fp32 even on a CPU with AVX512_BF16 (AMD Zen 4, Intel Cooper
    Lake): on the Xeon of ``benchmarks/``, with oneDNN held to those CPUs' instructions
    (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``), ViTPose-B inference ran at 5.2 img/s in bf16
    against 7.6 in fp32 (batch 32), and the PoseBH and VLPose default training steps 1.33x and
    1.4x slower; with AMX, bf16 is 2-4x faster. A cap in that variable (or in its former name
    ``DNNL_MAX_CPU_ISA``, which it overrides, as in oneDNN) below AMX counts as no AMX."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    return (cap in _AMX_ISA_CAPS or "AMX" in cap) and "amx_bf16" in _cpu_flags()


def _cpu_flags() -> set[str]:
    """The CPU's feature flags, from ``/proc/cpuinfo`` (torch has no public query for them);
    empty where there is none."""
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else ():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def prepare_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode with what it can fold for deployment folded in place (modules with
    ``fuse()`` / ``reparameterize()``, timm's convention: HEViT's convolution + BatchNorm pairs).
    The result predicts as the trained model does; save the trained one, not this."""
    from timm.utils import reparameterize_model

    return reparameterize_model(model.eval(), inplace=True)


def inference_autocast(device: torch.device | str, precision: Precision) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device``; fp32 needs none. bf16 on a CPU without
    AMX is allowed with a warning (it is slower than fp32 there, :func:`cpu_has_amx`); fp16 needs CUDA."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device; on the CPU use bf16 (or fp32)")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_amx():
        warnings.warn("this CPU has no AMX (or oneDNN is held below it): bf16 inference is slower than fp32 here",
                      stacklevel=2)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
