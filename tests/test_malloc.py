"""posecore._malloc: the CLI's glibc malloc setting, measured by what it is for (page faults) and
left alone wherever the user configured the allocator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"),
    reason="the setting is glibc's",
)

#: Allocates, fills and frees a 64 MiB buffer 20 times and prints the minor page faults it took.
_FAULTS = """
import resource, sys
import numpy as np
import posecore
applied = posecore.tune_cpu_allocator() if sys.argv[1] == "tune" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = np.empty(64 << 20, dtype=np.uint8)
    block.fill(1)
    del block
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD", "POSECORE_CPU_ALLOCATOR")}
    return env | extra


def _faults(mode: str, **env: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], env=_clean_env(**env), capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


def test_kept_memory_is_reused_instead_of_faulted_in_again() -> None:
    applied, tuned = _faults("tune")
    assert applied
    _, default = _faults("leave")
    # glibc's default maps every 64 MiB block afresh: 20 fills fault in 20 x 64 MiB; kept, one.
    assert tuned * 4 < default, (tuned, default)


@pytest.mark.parametrize("env", [
    {"POSECORE_CPU_ALLOCATOR": "default"},
    {"MALLOC_TRIM_THRESHOLD_": "131072"},
    {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"},
])
def test_a_users_own_allocator_settings_are_left_alone(env: dict[str, str]) -> None:
    applied, _ = _faults("tune", **env)
    assert not applied


def test_the_command_applies_it_and_doctor_says_so() -> None:
    def allocator(**env: str) -> str:
        out = subprocess.run([sys.executable, "-m", "posecore", "doctor", "--json"], env=_clean_env(**env),
                             capture_output=True, text=True).stdout
        return json.loads(out)["torch"]["cpu_allocator"]

    assert "keeps freed blocks" in allocator()
    assert allocator(POSECORE_CPU_ALLOCATOR="default") == "left as configured (POSECORE_CPU_ALLOCATOR=default)"
