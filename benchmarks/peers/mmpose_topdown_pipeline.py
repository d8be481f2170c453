"""Throughput of mmpose 1.x's real top-down training data pipeline (one process, CPU).

Measures samples/s of ``CocoDataset.__getitem__`` with the train pipeline of mmpose's
``td-hm_res50_8xb64-210e_coco-256x192`` config (``--codec msra``) or its UDP twin
(``td-hm_hrnet-w32_udp-8xb64-210e_coco-256x192``: ``--codec udp``)::

    LoadImage, GetBBoxCenterScale, RandomFlip(direction='horizontal'), RandomHalfBody,
    RandomBBoxTransform, TopdownAffine(input_size=(192, 256)[, use_udp=True]),
    GenerateTarget(MSRAHeatmap | UDPHeatmap, (192, 256) -> (48, 64), sigma=2), PackPoseInputs

over the top-down instances (num_keypoints > 0) of the COCO sample annotations, looped for
``--seconds`` after a warm-up. ``decode_share`` is the share of that time spent in LoadImage
(the image read + JPEG decode). Threads are set as in a real training data worker: OpenCV
single-threaded (mmpose's default runtime, ``opencv_num_threads=0``) and torch at one thread
(what PyTorch's DataLoader sets in each worker).

mmpose must not touch posecore's environment, so it lives in its own venv. ``torch==2.13.0``
resolves to the CPU wheel (2.13.0+cpu) on the project's machines; any CPU torch >= 1.8 will do.
``mmcv-lite`` is mmcv 2.1.0 without compiled ops (the transforms need none); mmpose goes in with
``--no-deps`` because its chumpy and torchvision requirements are not used here; numpy stays < 2
because xtcocotools' wheel is built against numpy 1 (and OpenCV < 4.11, whose wheels accept it)::

    python3.11 -m venv /tmp/mmpose-venv
    /tmp/mmpose-venv/bin/pip install torch==2.13.0 "numpy<2"
    /tmp/mmpose-venv/bin/pip install "numpy<2" "opencv-python<4.11" mmengine==0.10.7 \
        mmcv-lite==2.1.0 xtcocotools json_tricks munkres scipy matplotlib pillow
    /tmp/mmpose-venv/bin/pip install --no-deps mmpose==1.3.2

Run (from the repository root)::

    /tmp/mmpose-venv/bin/python benchmarks/peers/mmpose_topdown_pipeline.py \
        --data ../shared/data/coco --seconds 10 --codec msra --json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import cv2
import mmpose
import numpy as np
import torch
from mmengine.registry import init_default_scope
from mmpose.datasets import CocoDataset

INPUT_SIZE = (192, 256)  # (w, h), as mmpose writes it
HEATMAP_SIZE = (48, 64)
CODEC_TYPES = {"msra": "MSRAHeatmap", "udp": "UDPHeatmap"}


class _Timed:
    """Wraps one transform of mmpose's ``Compose`` and adds up the time spent in it."""

    def __init__(self, transform: Callable[[dict], Any]) -> None:
        self.transform = transform
        self.seconds = 0.0

    def __call__(self, results: dict) -> Any:
        start = time.perf_counter()
        out = self.transform(results)
        self.seconds += time.perf_counter() - start
        return out


def train_pipeline(codec: str) -> list[dict]:
    """The top-down train pipeline of mmpose's 256x192 COCO heatmap configs."""
    encoder = dict(type=CODEC_TYPES[codec], input_size=INPUT_SIZE, heatmap_size=HEATMAP_SIZE, sigma=2)
    affine = dict(type="TopdownAffine", input_size=INPUT_SIZE)
    if codec == "udp":
        affine["use_udp"] = True
    return [
        dict(type="LoadImage"),
        dict(type="GetBBoxCenterScale"),
        dict(type="RandomFlip", direction="horizontal"),
        dict(type="RandomHalfBody"),
        dict(type="RandomBBoxTransform"),
        affine,
        dict(type="GenerateTarget", encoder=encoder),
        dict(type="PackPoseInputs"),
    ]


def measure(data: Path, codec: str, seconds: float, warmup: int = 12) -> dict[str, Any]:
    """Loop ``dataset[i]`` over all instances for ``seconds``; return the peer's result row."""
    init_default_scope("mmpose")  # pipeline dicts resolve in mmpose's TRANSFORMS registry
    cv2.setNumThreads(0)
    torch.set_num_threads(1)
    random.seed(0)
    np.random.seed(0)
    with redirect_stdout(sys.stderr):  # xtcocotools prints its progress; stdout stays one JSON line
        dataset = CocoDataset(
            data_root=str(data),
            ann_file="test_coco.json",
            data_mode="topdown",
            data_prefix=dict(img=""),
            pipeline=train_pipeline(codec),
        )
    if len(dataset) == 0:
        raise SystemExit(f"no top-down instances in {data / 'test_coco.json'}")
    load = _Timed(dataset.pipeline.transforms[0])
    dataset.pipeline.transforms[0] = load

    for i in range(warmup):
        dataset[i % len(dataset)]
    load.seconds = 0.0
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        sample = dataset[count % len(dataset)]
        count += 1
    assert tuple(sample["inputs"].shape) == (3, INPUT_SIZE[1], INPUT_SIZE[0])
    assert tuple(sample["data_samples"].gt_fields.heatmaps.shape[-2:]) == HEATMAP_SIZE[::-1]
    return {
        "peer": "mmpose",
        "version": mmpose.__version__,
        "codec": codec,
        "instances": len(dataset),
        "samples": count,
        "samples_per_s": round(count / elapsed, 1),
        "decode_share": round(load.seconds / elapsed, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/coco"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--codec", choices=sorted(CODEC_TYPES), default="msra")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    row = measure(args.data.resolve(), args.codec, args.seconds)
    if args.json:
        print(json.dumps(row))
    else:
        print(
            f"mmpose {row['version']} top-down train pipeline ({row['codec']}, "
            f"{row['instances']} instances): {row['samples_per_s']} samples/s, "
            f"LoadImage {row['decode_share']:.1%} of the time"
        )


if __name__ == "__main__":
    main()
