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


def cpu_description() -> str:
    """``model name (n cores; features)`` from /proc/cpuinfo, or the platform's processor string."""
    import platform

    info = Path("/proc/cpuinfo")
    if not info.exists():
        return platform.processor() or platform.machine()
    model, flags = "", set()
    for line in info.read_text().splitlines():
        if line.startswith("model name") and not model:
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    present = [feature for feature in CPU_FEATURES if feature in flags] or ["no AVX-512"]
    return f"{model} ({os.cpu_count()} cores; {', '.join(present)})"


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
