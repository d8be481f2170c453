"""Where the CPU time goes: ViTPose-B inference and one training step of each embedded default.

For each workload, torch's profiler attributes the operators' own CPU time to a few kinds
(matrix products, attention, layer norms, convolutions, element-wise and the rest, the optimiser
step); what the operators do not account for is the Python and dispatch overhead. The data side
of each default is timed apart: the train pipeline's samples per second in one process (one
data-loader worker's rate) against the samples per second the training step consumes, so the
worker count that keeps the step fed can be read off. Evaluation is timed as one pass over the
held-out split. fp32 and, where the CPU has bf16 instructions, bf16 autocast side by side. The
process's allocator is tuned as the ``posecore`` command tunes it (``posecore._malloc``); with
``--default-allocator`` glibc's page faults show up as "Python and dispatch" time.

    python benchmarks/cpu_profile.py [--defaults core posebh ...] [--steps 3] [--no-vit-b] [--default-allocator]

Run it with nothing else on the machine; the CPU is named on the first line.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import add_allocator_option, apply_allocator_option, cpu_description, cpu_has_bf16_instructions  # noqa: E402  (benchmarks/ is not a package)

import posecore  # noqa: E402
from posecore._inference import prepare_for_inference  # noqa: E402
from posecore._plugins import get_host  # noqa: E402
from posecore.engine._builder import build_eval_sets, build_train_set  # noqa: E402

#: Operator-name fragments -> kind; the first kind whose fragment the name contains wins.
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention", ("scaled_dot_product", "softmax", "_efficient_attention", "flash_attention")),
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "mkldnn_linear",
                "_linear_pointwise")),
    ("layer norm", ("layer_norm",)),
    ("convolution", ("conv", "batch_norm")),
    ("optimiser", ("Optimizer.step", "_foreach", "aten::lerp", "aten::addcdiv", "aten::addcmul", "aten::sqrt")),
)


def kind_of(name: str) -> str:
    for kind, fragments in KINDS:
        if any(fragment in name for fragment in fragments):
            return kind
    return "element-wise and other"


def breakdown(step: Callable[[], Any], steps: int) -> tuple[float, dict[str, float]]:
    """(wall seconds per step, kind -> share of the wall time) over ``steps`` profiled steps."""
    step()  # warm-up: first-call allocations and kernel selection
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - start
    shares: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.key.startswith("ProfilerStep") or event.key == "Optimizer.step#AdamW.step":
            continue  # an enclosing range, whose own time is Python's
        shares[kind_of(event.key)] += event.self_cpu_time_total / 1e6
    accounted = sum(shares.values())
    shares["Python and dispatch (not in an operator)"] = max(0.0, wall - accounted)
    return wall / steps, {kind: seconds / wall for kind, seconds in shares.items()}


def autocast(bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def training_step(preset: str, bf16: bool) -> tuple[Callable[[], None], int]:
    config = posecore.get_preset(preset)
    torch.manual_seed(0)
    model = posecore.build_model(config).train()
    batch = model.example_batch(config.data.batch_size)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        with autocast(bf16):
            losses = model.loss(batch)
        sum(value.float() for value in losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, config.data.batch_size


def data_and_eval(preset: str) -> tuple[float, float]:
    """(train-pipeline samples/s in one process, seconds for one held-out evaluation pass)."""
    from posecore.engine._evaluation import evaluate, predict_dataset

    config = posecore.get_preset(preset)
    registries = get_host().registries
    train = build_train_set(config, registries).dataset
    count = min(len(train), 96)
    start = time.perf_counter()
    for index in range(count):
        train[index]
    rate = count / (time.perf_counter() - start)
    model = posecore.build_model(config).eval()
    start = time.perf_counter()
    for eval_set in build_eval_sets(config, registries):
        results = predict_dataset(model, eval_set.dataset, batch_size=config.data.eval_batch_size,
                                  flip_test=config.eval.flip_test)
        evaluate(results, eval_set.metrics)
    return rate, time.perf_counter() - start


def print_breakdown(label: str, seconds: float, images: int, shares: dict[str, float]) -> None:
    parts = ", ".join(f"{kind} {share:.0%}" for kind, share in sorted(shares.items(), key=lambda kv: -kv[1]))
    print(f"{label:<44} {seconds * 1000:8.0f} ms/step {images / seconds:8.1f} img/s | {parts}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defaults", nargs="+", help="default presets by plugin (core = vit-tiny-synthetic)")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per workload")
    parser.add_argument("--no-vit-b", action="store_true", help="skip ViTPose-B inference")
    add_allocator_option(parser)
    args = parser.parse_args()
    allocator = apply_allocator_option(args)
    cpu = cpu_description()
    print(f"CPU: {cpu}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"allocator: {allocator}")
    precisions = [False] + ([True] if cpu_has_bf16_instructions() else [])
    host = get_host()
    plugins = [name for name, record in sorted(host.records.items()) if record.status == "ok" and not record.builtin]
    defaults = {"core": host.default_preset().name}
    for plugin in plugins:
        with contextlib.suppress(posecore.PosecoreError):
            defaults[plugin] = host.default_preset(plugin).name
    chosen = args.defaults or list(defaults)
    if not args.no_vit_b:
        torch.manual_seed(0)
        model = prepare_for_inference(posecore.build_model(posecore.get_preset("vitpose-b-coco-256x192")))
        images = torch.randn(32, 3, 256, 192)
        for bf16 in precisions:
            def infer(bf16: bool = bf16) -> None:
                with torch.inference_mode(), autocast(bf16):
                    model.head(model.backbone(images))

            seconds, shares = breakdown(infer, args.steps)
            print_breakdown(f"ViTPose-B inference, batch 32, {'bf16' if bf16 else 'fp32'}", seconds, 32, shares)
    for label in chosen:
        preset = defaults[label]
        for bf16 in precisions:
            step, batch = training_step(preset, bf16)
            seconds, shares = breakdown(step, args.steps)
            print_breakdown(f"{preset} train step, {'bf16' if bf16 else 'fp32'}", seconds, batch, shares)
        rate, evaluation = data_and_eval(preset)
        needed = batch / seconds / rate
        print(f"{'':<44} data: {rate:.0f} samples/s per worker (the step consumes {batch / seconds:.0f}: "
              f"{needed:.1f} worker(s) keep it fed); evaluation pass {evaluation:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
