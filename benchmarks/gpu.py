"""posecore on a GPU: inference and training throughput, model FLOPs utilisation, peak memory, the
embedded default run's wall time, and the data pipeline's rate, in one table.

    python benchmarks/gpu.py                 # on CUDA: ViTPose-B and PoseBH-B, bf16
    python benchmarks/gpu.py --smoke         # any device, tiny presets, seconds (the test-suite runs it)

What is measured:

* inference: ViTPose-B (``vitpose-b-coco-256x192``), uint8 crops in, keypoints out (the network
  under bf16 autocast and the preset's decode, DARK-UDP), images/s at each batch size; and from
  JPEG files (``data.jpeg_decode: device``: the device decodes and crops, then the same);
* training: one optimiser step (forward, loss, backward, AdamW) of ViTPose-B and PoseBH-B
  (``posebh-b-coco-256x192``, experts and six heads) on the model's own example batch;
* MFU: achieved FLOP/s over the device's dense bf16 peak, counting 2 FLOPs per multiply-accumulate
  of ``posecore flops`` (its count includes the attention matrix products); a training step
  counts three forward passes (forward, and backward for activations and for weights);
* peak memory: ``torch.cuda.max_memory_allocated`` during each measurement;
* GPU busy: the share of the wall time the GPU spends in kernels (torch.profiler): well below 100%,
  the host's kernel launches bound the step, not the GPU;
* ``--compile``: every row again with the model's parts through ``torch.compile``, as
  ``train.compile`` does,
  which fuses the element-wise work and cuts the launches;
* the data pipeline: samples/s of one data-loader worker over the COCO sample (the train pipeline,
  UDP targets), and the workers it takes to feed the measured training rate, with JPEGs decoded
  in the workers (``data.jpeg_decode: loader``) and left to the device (``device``); for the
  latter, the device's own rate at decoding and cropping a training batch of those files;
* the embedded default: ``posecore run`` (``vit-tiny-synthetic``) as a whole command, wall time.

Goals on an H100/H200-class GPU (issue "Past one machine"): inference at least 40% of the bf16 peak,
training at least 30% MFU.
"""

from __future__ import annotations

import argparse
import math
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import posecore
from posecore._inference import prepare_for_inference
from posecore.analysis import measure_complexity
from posecore.engine._trainer import compile_parts

HERE = Path(__file__).resolve().parent
COCO_SAMPLE = HERE.parents[1] / "shared" / "data" / "coco"
#: Dense bf16 peaks (TFLOP/s, no sparsity) of the data-centre GPUs this benchmark is meant for.
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0}


def bf16_peak(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, from its name; ``None`` when unknown (or CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in BF16_PEAK_TFLOPS.items() if key in name), None)


def timed(step: Callable[[], Any], device: torch.device, seconds: float, warmup: int = 3) -> float:
    """Median seconds per call of ``step`` (at least 5 calls), synchronising the device."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - begin)
    return sorted(times)[len(times) // 2]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def build(preset: str, device: torch.device) -> tuple[torch.nn.Module, float]:
    """The preset's model on ``device`` and its multiply-accumulates per image."""
    torch.manual_seed(0)
    model = posecore.build_model(posecore.get_preset(preset))
    macs = measure_complexity(model, model.example_batch(1)).macs
    return model.to(device), float(macs)


def kernel_share(step: Callable[[], Any], device: torch.device, steps: int = 5) -> float | None:
    """The share of ``steps`` calls' wall time the GPU spends running kernels (torch.profiler):
    near 1, the GPU is the bound; well below, the host's launching of kernels is (what
    ``torch.compile`` or CUDA graphs remove). ``None`` off CUDA."""
    if device.type != "cuda":
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        wall = time.perf_counter() - start
    busy_us = sum(event.self_device_time_total for event in profiler.key_averages()
                  if event.device_type == DeviceType.CUDA)
    return min(busy_us / 1e6 / wall, 1.0)  # kernels on several streams may overlap


def measured(what: str, batch_size: int, flops_per_image: float, step: Callable[[], Any], device: torch.device,
             seconds: float) -> dict[str, Any]:
    reset_peak(device)
    rate = batch_size / timed(step, device, seconds)
    return {"what": what, "batch": batch_size, "images/s": rate, "flops_per_image": flops_per_image,
            "peak_GiB": peak_memory_gib(device), "busy": kernel_share(step, device)}


def inference_row(preset: str, batch_size: int, device: torch.device, seconds: float,
                  compiled: bool = False) -> dict[str, Any]:
    model, macs = build(preset, device)
    model = prepare_for_inference(model)  # as posecore's predictors: the head's BatchNorms folded
    width, height = model.input_size
    images = torch.randint(0, 256, (batch_size, 3, height, width), dtype=torch.uint8, device=device)

    if compiled:
        compile_parts(model)  # as train.compile: backbone and head; the keypoint decode stays eager

    def step() -> Any:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            return model.predict({"image": images}, flip_test=False).keypoints

    return measured(f"inference {preset}{' compiled' if compiled else ''}", batch_size, 2 * macs, step, device,
                    seconds)


def jpeg_inference_row(preset: str, batch_size: int, device: torch.device, seconds: float) -> dict[str, Any]:
    """Inference from JPEG files: the batch's files decoded and cropped on the device
    (``data.jpeg_decode: device``), then the network and the keypoint decode. The COCO sample's
    12 people in 4 pictures are cycled, up to 3 crops of a picture to a file (COCO has 2-3
    labelled people per picture; see :func:`coco_sample_batch`), so every such file is decoded."""
    from posecore._plugins import get_host
    from posecore.config import apply_overrides
    from posecore.engine._builder import build_codec, experiment_pipeline
    from posecore.engine._evaluation import move_to_device

    model, macs = build(preset, device)
    model = prepare_for_inference(model)
    config = apply_overrides(posecore.get_preset(preset), ["data.jpeg_decode=device"])
    registries = get_host().registries
    batch = coco_sample_batch(experiment_pipeline(config, registries, build_codec(config, registries), False),
                              batch_size, crops_per_file=3)

    def step() -> Any:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            return model.predict(move_to_device(dict(batch), device), flip_test=False).keypoints

    return measured(f"inference {preset} from JPEG files", batch_size, 2 * macs, step, device, seconds)


def coco_sample_batch(pipeline: Any, batch_size: int, crops_per_file: int) -> dict[str, Any]:
    """A collated batch of ``batch_size`` crops of the COCO sample through ``pipeline`` (one that
    leaves JPEGs to the device), its 12 people cycled, whose crops come from files of their own,
    ``crops_per_file`` crops of one picture to a file (fewer where a picture holds fewer people),
    though the sample has four pictures: the same picture with a JPEG comment of its own, under a
    path of its own (the engine decodes each path once per batch)."""
    import warnings

    from posecore.data import PipelineDataset, collate_samples
    from posecore.data._coco import coco

    def with_comment(jpeg: bytes, number: int) -> bytes:
        text = f"copy {number}".encode()
        return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]  # COM after SOI

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the sample has 2 unlabelled people; the reader says so
        samples = PipelineDataset(coco(str(COCO_SAMPLE / "test_coco.json")), pipeline)
    batch = collate_samples([samples[index % len(samples)] for index in range(batch_size)])
    seen: dict[str, int] = {}  # crops of each picture so far
    for index, path in enumerate(list(batch["image_path"])):
        copy = seen.get(path, 0) // crops_per_file
        seen[path] = seen.get(path, 0) + 1
        batch["jpeg"][index] = with_comment(batch["jpeg"][index], copy)
        batch["image_path"][index] = f"{path}#{copy}"
    return batch


def training_row(preset: str, batch_size: int, device: torch.device, seconds: float,
                 compiled: bool = False) -> dict[str, Any]:
    """One AdamW step; ``compiled``: the model's parts through ``torch.compile``, as
    ``train.compile`` does."""
    model, macs = build(preset, device)
    model.train()
    batch = model.example_batch(batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if compiled:
        compile_parts(model)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            losses = model.loss(batch)
        sum(value.float() for value in losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return measured(f"training {preset}{' compiled' if compiled else ''}", batch_size, 3 * 2 * macs, step, device,
                    seconds)


def pipeline_rate(seconds: float, jpeg_decode: str) -> float:
    """Samples/s of one data-loader worker (the train pipeline, UDP targets, the COCO sample)."""
    sys.path.insert(0, str(HERE))
    import cv2
    from topdown_pipeline import posecore_throughput  # the pipeline benchmark's own measurement

    cv2.setNumThreads(1)  # as in a data-loader worker
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return posecore_throughput(COCO_SAMPLE, "udp", seconds, jpeg_decode=jpeg_decode)
    finally:
        torch.set_num_threads(threads)


def device_decode_rate(batch_size: int, device: torch.device, seconds: float) -> float:
    """Images/s at which ``device`` decodes and crops a training batch of the COCO sample's JPEGs
    (``data.jpeg_decode: device``: what the engine does when the batch arrives)."""
    from posecore._plugins import get_host
    from posecore.data import build_pipeline, standard_topdown_pipeline
    from posecore.engine._evaluation import move_to_device

    registries = get_host().registries
    codec = registries.codecs.build({"type": "udp_heatmap", "input_size": (192, 256), "heatmap_size": (48, 64),
                                     "sigma": 2.0})
    pipeline = build_pipeline(standard_topdown_pipeline(train=True), registries, codec=codec, input_size=(192, 256),
                              use_udp=True, jpeg_decode="device")
    # a shuffled training batch rarely holds two people of one picture
    batch = coco_sample_batch(pipeline, batch_size, crops_per_file=1)
    return batch_size / timed(lambda: move_to_device(dict(batch), device), device, seconds)


def default_run_seconds() -> float:
    """Wall time of ``posecore run`` (the embedded default) as a whole command; the trainer takes
    the GPU when there is one."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "posecore", "run", "--output", str(Path(folder) / "run"), "--quiet"],
                       check=True)
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny presets and batches, a second each: checks the script")
    parser.add_argument("--seconds", type=float, default=5.0, help="timing per measurement")
    parser.add_argument("--inference-batches", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--training-batch", type=int, default=64)
    parser.add_argument("--skip-default-run", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="also each row with the model's parts through torch.compile (train.compile)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.smoke:
        inference_presets, training_presets = ["vit-tiny-synthetic"], ["vit-tiny-synthetic", "posebh-tiny-synthetic"]
        batches, training_batch, seconds = [1, 4], 4, min(args.seconds, 0.5)
    else:
        inference_presets, training_presets = ["vitpose-b-coco-256x192"], ["vitpose-b-coco-256x192",
                                                                            "posebh-b-coco-256x192"]
        batches, training_batch, seconds = args.inference_batches, args.training_batch, args.seconds
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = bf16_peak(device)
    print(f"device: {name}; torch {torch.__version__}; bf16 peak: {f'{peak / 1e12:.0f} TFLOP/s' if peak else 'unknown'}")

    variants = (False, True) if args.compile else (False,)
    rows = [inference_row(p, b, device, seconds, compiled) for p in inference_presets for b in batches
            for compiled in variants]
    rows += [jpeg_inference_row(p, b, device, seconds) for p in inference_presets for b in batches if b > 1]
    rows += [training_row(p, training_batch, device, seconds, compiled) for p in training_presets
             for compiled in variants]
    print(f"{'what':<49} {'batch':>5} {'images/s':>10} {'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>9} {'GPU busy':>9}")
    for row in rows:
        achieved = row["images/s"] * row["flops_per_image"]
        mfu = f"{achieved / peak:6.1%}" if peak else f"{'-':>6}"
        memory = f"{row['peak_GiB']:9.2f}" if row["peak_GiB"] is not None else f"{'-':>9}"
        busy = f"{row['busy']:9.0%}" if row["busy"] is not None else f"{'-':>9}"
        print(f"{row['what']:<49} {row['batch']:>5} {row['images/s']:>10.1f} {achieved / 1e12:>8.2f} {mfu} {memory} "
              f"{busy}")

    training_rate = max(row["images/s"] for row in rows if row["what"].startswith("training"))
    for place in ("loader", "device"):
        per_worker = pipeline_rate(seconds, place)
        print(f"data pipeline, data.jpeg_decode={place}: {per_worker:.0f} samples/s per worker; "
              f"{math.ceil(training_rate / per_worker)} worker(s) feed the fastest training rate "
              f"({training_rate:.0f} images/s)")
    decoded = device_decode_rate(training_batch, device, seconds)
    print(f"JPEG decode and crop on the device ({name}), batch {training_batch}: {decoded:.0f} images/s, "
          f"{training_rate / decoded:.0%} of the fastest training step's time")
    if not args.skip_default_run and not args.smoke:
        print(f"posecore run (embedded default): {default_run_seconds():.0f} s wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
