"""``posecore flops``: parameters and GFLOPs (multiply-accumulates) of presets' models."""

from __future__ import annotations

import argparse

from posecore._cli.common import host_from_args, print_json, selected_plugin


def flops_command(args: argparse.Namespace) -> int:
    import torch

    from posecore.analysis import measure_complexity
    from posecore.engine._builder import build_model

    host = host_from_args(args)
    plugin = selected_plugin(args)
    if plugin is not None:
        host.require(plugin)
    names = args.presets or host.registries.presets.names(plugin)
    results = {}
    for name in names:
        config = host.registries.presets.get(name).load()
        torch.manual_seed(0)
        model = build_model(config, host.registries)
        results[name] = measure_complexity(model, model.example_batch(1), convention=args.convention).to_json()
    modules = args.convention == "modules"
    if args.json:
        print_json({"convention": "GFLOPs = multiply-accumulates (mmcv/fvcore, as pose papers report)"
                                  + ("; leaf modules only (attention products not counted)" if modules else ""),
                    "presets": results})
        return 0
    width = max([len(n) for n in results] + [6])
    print(f"{'preset':<{width}}  {'params (M)':>10}  {'GFLOPs*':>8}  input")
    for name, figures in results.items():
        shape = "x".join(map(str, figures["input_shape"][-2:]))
        print(f"{name:<{width}}  {figures['params_M']:>10.2f}  {figures['GFLOPs']:>8.2f}  {shape}")
    print("* multiply-accumulates, the convention of mmcv and the pose papers (PyTorch FLOPs / 2)"
          + ("; leaf modules only, as mmcv's module hooks count: attention's matrix products left out" if modules else ""))
    return 0
