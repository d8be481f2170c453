"""Exporting top-down models to ONNX, for ONNX Runtime and other inference engines.

The exported graph takes a float image batch ``(B, 3, H, W)`` already normalised (mean/std) and
returns the heatmaps ``(B, K, h, w)``; decoding (argmax, refinement) stays in the posecore codec
that the model was trained with, so exported and native predictions decode identically. The
batch size is dynamic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from posecore._errors import ConfigError
from posecore._fileio import atomic_write

__all__ = ["export_onnx"]


class _HeatmapGraph(nn.Module):
    """The part of a top-down heatmap model that runs per image: backbone and head."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not (hasattr(model, "backbone") and hasattr(model, "head")):
            raise TypeError(f"ONNX export handles top-down heatmap models (backbone + head); got {type(model).__name__}")
        self.backbone = model.backbone
        self.head = model.head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def export_onnx(model: nn.Module, path: str | Path, input_size: tuple[int, int], *, opset: int = 18) -> Path:
    """Write ``model``'s image-to-heatmaps graph to ``path`` (atomically); ``input_size`` is (width, height)."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs the onnx and onnxscript packages: pip install 'posecore[onnx]'") from None
    graph = _HeatmapGraph(model).eval()
    width, height = input_size
    example = torch.randn(2, 3, height, width)
    batch = torch.export.Dim("batch", min=1, max=1024)

    def write(tmp: str) -> None:
        program: Any = torch.onnx.export(
            graph, (example,), input_names=["image"], output_names=["heatmaps"], dynamic_shapes={"images": {0: batch}},
            opset_version=opset, dynamo=True, external_data=False, verbose=False,
        )
        program.save(tmp)

    with torch.no_grad():
        return atomic_write(path, write)
