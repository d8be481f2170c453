"""A few hundred optimiser steps on a tiny synthetic set drive both losses down, with the
original's optimiser groups (text tower at lr 0: its weights must not move)."""

from __future__ import annotations

import torch
from posecore_pgvl.model import PGVLModel
from posecore_pgvl.presets import PARAM_GROUPS

from posecore.codecs import MSRAHeatmap
from posecore.config import OptimizerConfig
from posecore.models import HeatmapDeconvHead, ViT
from posecore.testing import loss_history


def _batch(codec: MSRAHeatmap, count: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Images with a bright square at each of 3 keypoints (one colour each), their targets."""
    keypoints = torch.rand(count, 3, 2, generator=generator) * torch.tensor([56.0, 56.0]) + 4
    images = torch.zeros(count, 3, 64, 64)
    for b in range(count):
        for k in range(3):
            x, y = keypoints[b, k].long().tolist()
            images[b, k, max(y - 2, 0):y + 3, max(x - 2, 0):x + 3] = 3.0
    visibility = torch.ones(count, 3)
    targets = codec.encode(keypoints.numpy(), visibility.numpy())
    return {"image": images, "keypoints": keypoints, "visibility": visibility,
            "heatmaps": torch.as_tensor(targets["heatmaps"]), "keypoint_weights": torch.as_tensor(targets["keypoint_weights"])}


def test_few_hundred_steps_drive_the_losses_down() -> None:
    from posecore.engine._optim import build_optimizer

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    codec = MSRAHeatmap((64, 64), (16, 16), sigma=1.0)
    backbone = ViT(arch="small", embed_dim=32, depth=1, num_heads=2, patch_size=8, patch_padding=1,
                   input_size=(64, 64), norm_eps=1e-5)
    model = PGVLModel(backbone, HeatmapDeconvHead(32, 3, (16,), input_stride=8), ("left eye", "nose", "right eye"),
                      text_width=32, text_heads=2, text_layers=1, text_embed_dim=32, prompt_heads=2, parse_dims=(32,),
                      target_dim=32, cross_heads=2, cl_ratio=0.05, input_size=(64, 64), codec=codec)
    optimizer = build_optimizer(model, OptimizerConfig(type="adamw", lr=3e-3, weight_decay=1e-4,
                                                       param_groups=PARAM_GROUPS[:1] + PARAM_GROUPS[2:]))
    frozen = model.text_encoder.token_embedding.weight.detach().clone()
    data = [_batch(codec, 8, generator) for _ in range(8)]
    # tiny matrices: one thread is faster, and immune to busy neighbours
    history = loss_history(model, data, optimizer, 150, num_threads=1)
    first = {name: sum(h[name] for h in history[:16]) / 16 for name in history[0]}
    last = {name: sum(h[name] for h in history[-16:]) / 16 for name in history[0]}
    assert last["loss_heatmap"] < 0.6 * first["loss_heatmap"], (first, last)
    assert last["loss_contrastive"] < 0.8 * first["loss_contrastive"], (first, last)
    assert torch.equal(model.text_encoder.token_embedding.weight, frozen)  # lr 0: never moves
