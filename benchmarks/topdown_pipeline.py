"""Top-down training pipeline throughput: posecore against mmpose 1.x, in the same run.

Both run the standard 256x192 train pipeline (load, box, flip, half-body, random
scale/rotation, affine, MSRA or UDP Gaussian target, pack) over the 12 top-down instances of
the COCO sample, one process, as a data-loader worker would (OpenCV and torch single-threaded).
posecore is measured here; mmpose runs in its own virtual environment through
``benchmarks/peers/mmpose_topdown_pipeline.py`` (its docstring says how to create that venv).
The issue's target: at least twice mmpose's samples/s per process.

    python benchmarks/topdown_pipeline.py --peer-python /tmp/mmpose-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import torch

from posecore._plugins import get_host
from posecore.data import PipelineDataset, build_pipeline, standard_topdown_pipeline
from posecore.data._coco import coco

ROOT = Path(__file__).resolve().parents[1]
INPUT_SIZE, HEATMAP_SIZE = (192, 256), (48, 64)


def posecore_throughput(data: Path, codec_type: str, seconds: float, jpeg_decode: str = "loader") -> float:
    """Samples/s of posecore's train pipeline over the sample's instances, cycling epochs
    (``jpeg_decode="device"``: the loader's share only, JPEGs read but not decoded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the sample has 2 unlabelled people; the reader says so
        dataset = coco(str(data / "test_coco.json"))
    codec = get_host().registries.codecs.build(
        {"type": f"{codec_type}_heatmap", "input_size": INPUT_SIZE, "heatmap_size": HEATMAP_SIZE, "sigma": 2.0}
    )
    pipeline = build_pipeline(standard_topdown_pipeline(train=True), get_host().registries, codec=codec,
                              input_size=INPUT_SIZE, use_udp=codec_type == "udp", jpeg_decode=jpeg_decode)
    samples = PipelineDataset(dataset, pipeline)
    for index in range(len(samples)):  # warm-up: file cache, lazy imports
        samples[index]
    count, epoch, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        epoch += 1
        samples.set_epoch(epoch)
        for index in range(len(samples)):
            samples[index]
        count += len(samples)
    return count / (time.perf_counter() - start)


def peer_throughput(python: str, data: Path, codec_type: str, seconds: float) -> dict:
    script = ROOT / "benchmarks" / "peers" / "mmpose_topdown_pipeline.py"
    command = [python, str(script), "--data", str(data), "--seconds", str(seconds), "--codec", codec_type, "--json"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "coco")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--peer-python", help="python of a venv with mmpose 1.x (skip the peer if not given)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    print(f"{'codec':6} {'posecore samples/s':>19} {'mmpose samples/s':>17} {'ratio':>6}")
    for codec_type in ("msra", "udp"):
        ours = posecore_throughput(args.data, codec_type, args.seconds)
        if args.peer_python:
            peer = peer_throughput(args.peer_python, args.data, codec_type, args.seconds)
            theirs = peer["samples_per_s"]
            print(f"{codec_type:6} {ours:19.0f} {theirs:17.0f} {ours / theirs:6.2f}  "
                  f"(mmpose {peer.get('version', '?')}, {peer.get('decode_share', 0):.0%} of its time in LoadImage)")
        else:
            print(f"{codec_type:6} {ours:19.0f} {'-':>17} {'-':>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
