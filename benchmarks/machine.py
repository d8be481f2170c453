"""What every CPU benchmark says about the machine it ran on, and the allocator option they share.

The same workload takes different times on different CPUs, so each benchmark names the CPU and
the instruction sets that decide torch's fast paths (AVX-512, VNNI, AVX512_BF16, AMX). The
``posecore`` command tunes glibc's malloc (``posecore._malloc``); the benchmarks do the same,
and ``--default-allocator`` leaves it as it is, to compare.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

CPU_FEATURES = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_has_bf16_instructions() -> bool:
    """AVX512_BF16 or AMX: bf16 runs natively (faster than fp32 only with AMX, see
    ``posecore._inference.cpu_has_amx``); elsewhere oneDNN emulates it and timing it is moot."""
    from posecore._inference import _cpu_flags

    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_description() -> str:
    """``model name (n cores; features)`` from /proc/cpuinfo, or the platform's processor string;
    a cap on oneDNN's instructions (``ONEDNN_MAX_CPU_ISA``, to measure as a CPU without them) is named."""
    import platform

    from posecore._inference import _cpu_flags

    info = Path("/proc/cpuinfo")
    if not info.exists():
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    present = [feature for feature in CPU_FEATURES if feature in _cpu_flags()] or ["no AVX-512"]
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return f"{model} ({os.cpu_count()} cores; {', '.join(present)}){f'; oneDNN held to {cap}' if cap else ''}"


def add_allocator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's malloc as it is instead of tuning it as the posecore command does")


def apply_allocator_option(args: argparse.Namespace) -> str:
    """Tune glibc's malloc as the ``posecore`` command does unless ``--default-allocator`` was
    given; returns what applies, for the benchmark's first line."""
    import posecore
    from posecore._malloc import allocator_report

    if not args.default_allocator:
        posecore.tune_cpu_allocator()
    return allocator_report()
