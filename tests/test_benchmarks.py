"""The benchmark scripts run: ``benchmarks/gpu.py --smoke`` prints its table on any device (CI has
no GPU; the full run's figures are reported from a GPU machine)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_benchmark_runs_in_smoke_mode() -> None:
    """With ``--compile``: every row eager and through torch.compile (inductor's C++ backend here)."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--device", "cpu",
                             "--compile"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("device: CPU")
    rows = [re.match(r"(inference|training) (\S+)( compiled| from JPEG files)?\s+(\d+)\s+([\d.]+) ", line)
            for line in lines if re.match(r"(inference|training) ", line)]
    assert all(rows), lines
    assert [(row[1], row[2], row[3] or "", int(row[4])) for row in rows] == [
        ("inference", "vit-tiny-synthetic", "", 1), ("inference", "vit-tiny-synthetic", " compiled", 1),
        ("inference", "vit-tiny-synthetic", "", 4), ("inference", "vit-tiny-synthetic", " compiled", 4),
        ("inference", "vit-tiny-synthetic", " from JPEG files", 4),
        ("training", "vit-tiny-synthetic", "", 4), ("training", "vit-tiny-synthetic", " compiled", 4),
        ("training", "posebh-tiny-synthetic", "", 4), ("training", "posebh-tiny-synthetic", " compiled", 4)]
    assert all(float(row[5]) > 0 for row in rows), "images/s measured for every row"
    loader, device = (float(re.search(rf"data pipeline, data\.jpeg_decode={place}: (\d+) samples/s per worker; "
                                      r"\d+ worker\(s\) feed", result.stdout).group(1)) for place in ("loader", "device"))
    assert device > loader, "a worker that leaves the JPEGs undecoded prepares more samples"
    assert re.search(r"JPEG decode and crop on the device \(CPU\), batch 4: \d+ images/s", result.stdout)


def test_the_default_runs_benchmark_names_the_cpu_and_times_a_run() -> None:
    """An untrained core default (``train.epochs=0``: data, model, evaluation) keeps it quick."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "default_runs.py"), "train.epochs=0",
                             "--runs", "core"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert re.match(r"CPU: .+ \(\d+ cores; .+\)", result.stdout)
    row = re.search(r"^core\s+(\d+) min (\d\d) s\s+AP (\d\.\d{3})\s+(yes|NO)$", result.stdout, re.M)
    assert row, result.stdout
    assert float(row.group(3)) < 0.2, "an untrained model scores near zero"


def test_the_cpu_profile_attributes_a_training_step_to_kinds_of_work() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu_profile.py"), "--defaults", "core",
                             "--steps", "1", "--no-vit-b"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^vit-tiny-synthetic train step, (fp32|bf16) .* ms/step .* \| (.+)$", result.stdout, re.M)
    assert rows and rows[0][0] == "fp32"
    shares = [float(share) for share in re.findall(r" (\d+)%", rows[0][1])]
    assert "matmul" in rows[0][1] and 95 <= sum(shares) <= 105, "the kinds add up to the step's wall time"
    assert re.search(r"data: \d+ samples/s per worker .* evaluation pass [\d.]+ s", result.stdout)
