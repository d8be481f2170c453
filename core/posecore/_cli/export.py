"""``posecore export``: a model as an ONNX graph (image -> heatmaps), checked with ONNX Runtime."""

from __future__ import annotations

import argparse
from pathlib import Path

from posecore._cli.common import resolve_config

__all__ = ["export_command"]


def export_command(args: argparse.Namespace) -> int:
    """``posecore export --format onnx``: the model's image-to-heatmaps graph, checked with ONNX Runtime."""
    from posecore._api import load_model
    from posecore._cli.common import host_from_args, selected_plugin
    from posecore._export import export_onnx

    host_from_args(args)
    config = resolve_config(args) if (args.preset or args.config_file) else None
    model, config, _ = load_model(args.checkpoint, config=config, plugin=selected_plugin(args), device="cpu")
    output = Path(args.output or f"{config.name}.onnx")
    export_onnx(model, output, tuple(config.data.input_size), opset=args.opset)
    print(f"posecore export: wrote {output} (input: normalised float images (B, 3, {config.data.input_size[1]}, "
          f"{config.data.input_size[0]}); output: heatmaps; decode with the {config.codec.type if config.codec else ''} "
          "codec)")
    return 0
