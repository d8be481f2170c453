"""Let glibc's malloc keep the memory torch frees on the CPU, instead of handing it back each time.

glibc serves every allocation above its mmap threshold (128 KiB, growing to at most 32 MiB) with
a fresh ``mmap`` and returns it with ``munmap`` on free. A CPU forward pass allocates and frees
feature maps of tens to hundreds of MiB per layer, so every layer pays the kernel for zeroed pages
again: on a 2-core Xeon 10-28% of the wall time of a batch-32 pass went to page faults
(HEViTPose-T 38 -> 52 img/s, ViTPose-S 22 -> 27, ViTPose-B 7.3 -> 8.3 once kept;
``benchmarks/hevitpose_speed.py``, ``benchmarks/vit_inference.py``). Raising the
mmap and trim thresholds makes glibc reuse its heap, which is what jemalloc or tcmalloc (PyTorch's
CPU tuning guide's advice, through ``LD_PRELOAD``) do without a second library. The price is that
the process keeps up to its peak working set (plus at most the trim threshold) after a pass.

The ``posecore`` command applies this at start-up; library users call :func:`tune_cpu_allocator`
themselves, since it changes the whole process. Nothing is changed where the user already chose:
``POSECORE_CPU_ALLOCATOR=default``, glibc's ``MALLOC_*_`` variables or ``glibc.malloc`` tunables,
or another allocator in ``LD_PRELOAD``; nor outside glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["tune_cpu_allocator"]

#: ``mallopt`` parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Allocations below this come from the reusable heap; freed memory above it at the heap's top is
#: returned to the system. 1 GiB covers a batch-32 256x256 model's largest maps with room to spare.
KEEP_BYTES = 1 << 30
#: Environment variables through which a user has already configured glibc's malloc.
_USER_MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

_applied: bool | None = None


def _user_chose() -> str | None:
    """Why the allocator is left alone (a reason), or None."""
    if os.environ.get("POSECORE_CPU_ALLOCATOR", "").lower() == "default":
        return "POSECORE_CPU_ALLOCATOR=default"
    if (any(name in os.environ for name in _USER_MALLOC_VARIABLES)
            or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")):
        return "glibc malloc settings in the environment"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in _OTHER_ALLOCATORS):
        return "another allocator in LD_PRELOAD"
    return None


def _is_glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # no such name outside glibc
        return False


def tune_cpu_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds to :data:`KEEP_BYTES` (once per process).

    Returns True when the thresholds are (now or already) raised; False where this is not glibc
    or the user configured the allocator (see the module docstring)."""
    global _applied
    if _applied is None:
        _applied = False
        if _is_glibc() and _user_chose() is None:
            try:
                mallopt = ctypes.CDLL("libc.so.6").mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
            _applied = bool(mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
    return _applied


def allocator_report() -> str:
    """One line for ``posecore doctor``: what the CPU allocator does with freed memory."""
    if _applied:
        return f"glibc malloc keeps freed blocks up to {KEEP_BYTES >> 20} MiB (posecore's setting)"
    reason = _user_chose()
    if reason is not None:
        return f"left as configured ({reason})"
    return "the platform's default"
