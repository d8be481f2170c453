"""The benchmark scripts run: ``benchmarks/gpu.py --smoke`` prints its table on any device (CI has
no GPU; the full run's figures are reported from a GPU machine)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_benchmark_runs_in_smoke_mode() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--device", "cpu"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("device: CPU")
    rows = [line for line in lines if re.match(r"(inference|training) ", line)]
    assert [row.split()[:2] for row in rows] == [["inference", "vit-tiny-synthetic"]] * 2 + [
        ["training", "vit-tiny-synthetic"], ["training", "posebh-tiny-synthetic"]]
    assert all(float(row.split()[3]) > 0 for row in rows), "images/s measured for every row"
    assert re.search(r"data pipeline: \d+ samples/s per worker; \d+ worker\(s\) feed", result.stdout)
