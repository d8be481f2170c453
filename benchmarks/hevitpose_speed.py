"""HEViTPose-T/S/B inference throughput beside core's ViTPose-S, in the same run.

HEViTPose's point is speed (the paper: fewer parameters and GFLOPs than HRNet-W32 and Swin-S at
similar MPII accuracy). This script times the network forward (images -> heatmaps, fp32, random
weights, ``torch.inference_mode``, eval mode) of the ``hevitpose-{t,s,b}-mpii-256x256`` presets'
models (256x256 crops, the reconstructed architecture, see plugins/hevitpose/README.md) and of
``vitpose-s-coco-256x192`` (256x192 crops, its own preset's input), at batch 1 and batch 32, each
prepared for inference as posecore's predictors do (``prepare_for_inference``: HEViT's
convolution + BatchNorm pairs and both heads' deconvolution + BatchNorm pairs folded), in a process
whose allocator is tuned as the ``posecore`` command tunes it (``posecore._malloc``;
``--default-allocator`` leaves glibc's as it is). The
models take turns, round after round, so a busy machine slows them alike; each figure is the median
over rounds of images per second.

The issue's goal: HEViTPose-T at least 2x ViTPose-S's images/s on the CPU at batch 32.

    python benchmarks/hevitpose_speed.py [--device cpu|cuda] [--seconds 4] [--threads N] [--batch-sizes 1 32] [--default-allocator]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import posecore
from posecore._inference import prepare_for_inference
from posecore._plugins import get_host
from posecore.engine._builder import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import add_allocator_option, apply_allocator_option, cpu_description  # noqa: E402  (benchmarks/ is not a package)

PRESETS = {
    "HEViTPose-T": "hevitpose-t-mpii-256x256",
    "HEViTPose-S": "hevitpose-s-mpii-256x256",
    "HEViTPose-B": "hevitpose-b-mpii-256x256",
    "ViTPose-S": "vitpose-s-coco-256x192",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per model and batch size")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    add_allocator_option(parser)
    args = parser.parse_args()
    allocator = apply_allocator_option(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_description()}, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; CPU allocator: {allocator}")
    registries = get_host().registries
    models, inputs = {}, {}
    for label, preset in PRESETS.items():
        torch.manual_seed(0)
        model = build_model(posecore.get_preset(preset), registries).to(device)
        models[label] = prepare_for_inference(model)
        inputs[label] = model.input_size  # (width, height)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    results: dict[tuple[str, int], float] = {}
    for batch_size in args.batch_sizes:
        images = {label: torch.randn(batch_size, 3, h, w, device=device) for label, (w, h) in inputs.items()}
        rates: dict[str, list[float]] = {label: [] for label in models}
        with torch.inference_mode():
            for label, model in models.items():  # warm-up
                for _ in range(2):
                    model.head(model.backbone(images[label]))
            sync()
            rounds = max(3, int(args.seconds / 0.5))
            for _ in range(rounds):
                for label, model in models.items():
                    start = time.perf_counter()
                    done = 0
                    while True:
                        model.head(model.backbone(images[label]))
                        sync()
                        done += batch_size
                        elapsed = time.perf_counter() - start
                        if elapsed >= args.seconds / rounds:
                            break
                    rates[label].append(done / elapsed)
        for label in models:
            results[label, batch_size] = statistics.median(rates[label])
    header = "model".ljust(13) + "".join(f"  batch {b:>3} img/s" for b in args.batch_sizes) + "  input"
    print(header)
    for label in models:
        w, h = inputs[label]
        print(label.ljust(13) + "".join(f"  {results[label, b]:>15.1f}" for b in args.batch_sizes) + f"  {h}x{w}")
    for b in args.batch_sizes:
        ratio = results["HEViTPose-T", b] / results["ViTPose-S", b]
        print(f"HEViTPose-T / ViTPose-S at batch {b}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
