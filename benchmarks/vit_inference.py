"""ViTPose-B inference on the CPU: posecore against Hugging Face transformers, in the same run.

Both hold the same weights: transformers' ``VitPoseForPoseEstimation`` is built from the ViTPose-B
config (classic head, random weights: no download), and its ``state_dict`` goes through posecore's
``vitpose-hf`` converter into the ``vitpose-b-coco-256x192`` preset's model. One timed step is a
batch of 256x192 crops in fp32 through the network *and* the decode: posecore's UDP codec
(DARK-UDP, to crop pixels) against transformers' ``post_process_pose_estimation`` (the same
DARK-UDP decode plus its box transform). Both run under ``torch.inference_mode``, and the steps
alternate, so that a busy machine slows both alike.

What differs: transformers refuses ``attn_implementation="sdpa"`` for ``VitPoseForPoseEstimation``,
yet its backbone (built from its own sub-config) does run ``F.scaled_dot_product_attention``, as
posecore's blocks do; attention is a few percent of the time either way. The linear layers, about
90% of the MACs, are where posecore gained under torch 2.11: in CPU inference they run through
oneDNN (:class:`posecore.models._vit.InferenceLinear`) instead of MKL's sgemm, then half as fast
on the AMD EPYC and Intel Xeon measured. With torch 2.14 on the Xeon, sgemm reaches the same
~300 GFLOP/s on 2 cores and both libraries run fp32 at the CPU's peak (ratio 1.0-1.1); bf16
through AMX is the way past it there.

The issue's target: at least 1.1x transformers' img/s at batch 1 and at batch 32 (the CPU issue's:
1.5x at batch 32 on AMD as on Intel). On a CPU with bf16 instructions (AVX512_BF16 or AMX)
posecore's bf16 autocast (``--precision bf16``) runs beside it, with the rounding it costs against
fp32; it is faster than fp32 only with AMX (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` measures an
AMX CPU as one without, such as AMD's Zen 4).

Both run in one process, under the allocator setting the ``posecore`` command makes
(``posecore._malloc``; ``--default-allocator`` leaves glibc's as it is), so the ratio compares the
libraries, not their allocators.

    python benchmarks/vit_inference.py [--seconds 10] [--threads N] [--default-allocator]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessor

import posecore
from posecore._inference import inference_autocast, prepare_for_inference
from posecore._plugins import get_host
from posecore.codecs import heatmap_argmax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import add_allocator_option, apply_allocator_option, cpu_description, cpu_has_bf16_instructions  # noqa: E402  (benchmarks/ is not a package)


def transformers_vitpose_b() -> VitPoseForPoseEstimation:
    """transformers' ViTPose-B with its classic head, LayerNorm eps as the original (1e-6)."""
    backbone = VitPoseBackboneConfig(image_size=[256, 192], patch_size=[16, 16], hidden_size=768, num_hidden_layers=12,
                                     num_attention_heads=12, layer_norm_eps=1e-6, out_indices=[12])
    return VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17, use_simple_decoder=False))


def posecore_vitpose_b(state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The preset's model with its codec, holding transformers' weights."""
    registries = get_host().registries
    config = posecore.get_preset("vitpose-b-coco-256x192")
    model = registries.models.build(config.model, codec=registries.codecs.build(config.codec))
    converted = registries.converters.get("vitpose-hf").resolve()(state_dict)
    model.load_state_dict(converted, strict=True)
    return prepare_for_inference(model)  # as posecore's predictors: the head's BatchNorms folded


def inference_steps(ours: torch.nn.Module, theirs: VitPoseForPoseEstimation, processor: VitPoseImageProcessor,
                    batch_size: int) -> dict[str, Callable[[], Any]]:
    """One step per library over the same batch of crops: network, then decode. Each returns an
    object with the batch's ``heatmaps``."""
    images = torch.randn(batch_size, 3, 256, 192)
    boxes = [[[0.0, 0.0, 192.0, 256.0]] * batch_size]  # one image holding every crop's box

    def posecore_step() -> Any:
        with torch.inference_mode():
            return ours.predict({"image": images})

    def posecore_bf16_step() -> Any:
        with warnings.catch_warnings():  # measured here on purpose where it is slower (no AMX)
            warnings.filterwarnings("ignore", "this CPU has no AMX")
            with torch.inference_mode(), inference_autocast("cpu", "bf16"):
                return ours.predict({"image": images})

    def transformers_step() -> Any:
        with torch.inference_mode():
            outputs = theirs(pixel_values=images)
            processor.post_process_pose_estimation(outputs, boxes=boxes)
            return outputs

    steps = {"posecore": posecore_step, "transformers": transformers_step}
    if cpu_has_bf16_instructions():
        steps["posecore bf16"] = posecore_bf16_step
    return steps


def images_per_second(steps: dict[str, Callable[[], object]], batch_size: int, seconds: float) -> dict[str, float]:
    """img/s of each step from its median time, the steps interleaved round by round so that a
    busy machine slows both alike."""
    for step in steps.values():  # warm-up: allocator, oneDNN kernel selection
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    start = time.perf_counter()
    while len(times[next(iter(steps))]) < 3 or time.perf_counter() - start < seconds * len(steps):
        for name, step in steps.items():
            begin = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - begin)
    return {name: batch_size / statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per model and batch size (at least 3 steps)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    add_allocator_option(parser)
    args = parser.parse_args()
    allocator = apply_allocator_option(args)  # for both libraries: they share this process
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    theirs = transformers_vitpose_b().eval()
    ours = posecore_vitpose_b(theirs.state_dict())
    processor = VitPoseImageProcessor()
    print(f"CPU: {cpu_description()}; torch {torch.__version__}, {args.threads} threads; transformers attention: "
          f"{theirs.backbone.config._attn_implementation} (backbone)\nCPU allocator (both): {allocator}")
    print(f"{'batch':>5} {'posecore img/s':>15} {'transformers img/s':>19} {'ratio':>6} {'max |heatmap diff|':>19}"
          + (f" {'bf16 img/s':>11} {'ratio':>6} {'bf16 cost: heatmaps, keypoints':>31}" if cpu_has_bf16_instructions() else ""))
    for batch_size in args.batch_sizes:
        steps = inference_steps(ours, theirs, processor, batch_size)
        outputs = {name: step() for name, step in steps.items()}
        fp32 = outputs["posecore"]
        difference = (fp32.heatmaps - outputs["transformers"].heatmaps).abs().max().item()
        rates = images_per_second(steps, batch_size, args.seconds)
        ours_rate, theirs_rate = rates["posecore"], rates["transformers"]
        row = f"{batch_size:5d} {ours_rate:15.2f} {theirs_rate:19.2f} {ours_rate / theirs_rate:6.2f} {difference:19.2e}"
        if "posecore bf16" in outputs:
            bf16 = outputs["posecore bf16"]
            relative = ((bf16.heatmaps.float() - fp32.heatmaps).abs().max() / fp32.heatmaps.abs().max()).item()
            # The heatmaps' maxima, not the DARK-refined keypoints: with random weights the heatmaps
            # are nearly flat, and DARK's Hessian step on a flat peak can throw either far away.
            moved = (heatmap_argmax(bf16.heatmaps.float())[0] - heatmap_argmax(fp32.heatmaps)[0]).norm(dim=-1)
            cost = f"{relative:.1%} of max, {(moved > 0).float().mean().item():.0%} peaks moved"
            row += f" {rates['posecore bf16']:11.2f} {rates['posecore bf16'] / theirs_rate:6.2f} {cost:>31}"
        print(row)
    if cpu_has_bf16_instructions():
        print("bf16 cost: the largest heatmap difference from fp32 over the largest fp32 value, and the share of "
              "heatmap maxima that moved to another pixel (random weights and inputs, whose nearly flat heatmaps make "
              "this an upper bound on what rounding moves; with trained weights compare `posecore eval --precision bf16`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
