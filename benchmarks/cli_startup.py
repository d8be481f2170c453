"""How long ``posecore --help`` and ``posecore plugins`` take, against the cost of importing torch.

The issue's target: ``posecore --help`` under 1.5 s on a 2-core machine. The peer figure is what
any CLI pays if it imports torch eagerly (``python -c "import torch"``).

    python benchmarks/cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def _median_seconds(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    rows = {
        "python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
        "posecore --help": [sys.executable, "-m", "posecore", "--help"],
        "posecore plugins --json": [sys.executable, "-m", "posecore", "plugins", "--json"],
        "peer: python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    print(f"{'command':<40} median of {repeat} (s)")
    for label, command in rows.items():
        print(f"{label:<40} {_median_seconds(command, repeat):.3f}")
    print("target: posecore --help < 1.5 s")


if __name__ == "__main__":
    main()
