"""Wall time and held-out metric of every embedded default run, on the machine this runs on.

Each default (``posecore run`` and ``posecore run --plugin NAME`` for every installed method
plugin with a default preset) runs as its own process, the way a user starts it, into a fresh
folder; the figure is the wall time of the whole command (start-up, synthetic data, training,
evaluation, pictures) and the main metric from its ``metrics.json``. The CPU is named, with the
instruction sets that decide the fast paths (AVX-512, VNNI, AVX512_BF16, AMX), since the same run
takes different times on different CPUs. Run it with nothing else on the machine.

    python benchmarks/default_runs.py [KEY=VALUE ...] [--repeat 1] [--runs core posebh ...]

``KEY=VALUE`` overrides go to every run (``train.mixed_precision=bf16`` compares the autocast
training step). The target of the CPU-speed issue: each default under 4 minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_description

TARGET_SECONDS = 240.0


def default_runs() -> dict[str, list[str]]:
    """Label -> the ``posecore run`` arguments of every default the installed plugins declare."""
    from posecore._errors import PosecoreError
    from posecore._plugins import get_host

    host = get_host()
    runs: dict[str, list[str]] = {"core": []}
    for name, record in sorted(host.records.items()):
        if record.status != "ok" or record.builtin:
            continue
        try:
            host.default_preset(name)
        except PosecoreError:
            continue  # a plugin without a default run
        runs[name] = ["--plugin", name]
    return runs


def time_run(arguments: list[str], overrides: list[str]) -> tuple[float, str, float]:
    """(wall seconds, main metric name, its value) of one ``posecore run`` in a fresh folder."""
    with tempfile.TemporaryDirectory(prefix="posecore-default-") as folder:
        output = Path(folder) / "run"
        command = [sys.executable, "-m", "posecore", "run", *arguments, "--output", str(output), "--quiet", *overrides]
        start = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if finished.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({finished.returncode}):\n{finished.stderr[-2000:]}")
        metrics = json.loads((output / "metrics.json").read_text())
        return seconds, metrics["main_metric"], float(metrics[metrics["main_metric"]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", help="which defaults: core and/or plugin names (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each default (the median is printed)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    args = parser.parse_args()
    available = default_runs()
    chosen = args.runs or list(available)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        parser.error(f"no default run {unknown}; installed: {sorted(available)}")
    print(f"CPU: {cpu_description()}")
    print(f"overrides: {' '.join(args.overrides) or 'none'}; target: under {TARGET_SECONDS / 60:.0f} min each")
    print(f"{'default':<14}{'wall time':>12}  {'metric':<24}  within target")
    for label in chosen:
        results = [time_run(available[label], args.overrides) for _ in range(args.repeat)]
        seconds = statistics.median(r[0] for r in results)
        name, value = results[0][1], statistics.median(r[2] for r in results)
        minutes, rest = divmod(round(seconds), 60)
        verdict = "yes" if seconds < TARGET_SECONDS else "NO"
        print(f"{label:<14}{f'{minutes} min {rest:02d} s':>12}  {f'{name} {value:.3f}':<24}  {verdict}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
