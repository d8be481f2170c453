"""Small Pose Anything models, episodes and configs shared by the plugin's tests."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

#: A tiny SwinV2 (the released family, two-digit widths) for fast model tests.
TINY_SWIN = {"type": "poseanything_swinv2", "model_name": "swinv2_tiny_window16_256", "img_size": 64,
             "window_size": 4, "model_kwargs": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]}}


def small_model(**overrides: Any) -> Any:
    """A Pose Anything with a tiny SwinV2 at 64x64 and a 32-wide head, in eval mode."""
    import posecore

    spec = {"type": "poseanything", "backbone": TINY_SWIN, "input_size": [64, 64], "embed_dim": 32, "num_heads": 2,
            "dim_feedforward": 64, **overrides}
    torch.manual_seed(0)
    return posecore.build("models", spec).eval()


def episode(model: Any, k: int, skeleton: list[tuple[int, int]], *, shots: int = 1, seed: int = 0,
            missing: tuple[int, ...] = ()) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(query sample, support samples) of a made-up category of ``k`` keypoints, as the test
    pipeline leaves them; ``missing`` keypoints are not visible in the first support."""
    from posecore.codecs import msra_gaussian_heatmaps
    from posecore.data import DatasetMeta

    width, height = model.input_size
    rng = np.random.default_rng(seed)
    meta = DatasetMeta(name=f"cat{k}", keypoint_names=[str(i) for i in range(k)], skeleton=skeleton)

    def sample(drop: tuple[int, ...] = ()) -> dict[str, Any]:
        keypoints = (rng.uniform(0.1, 0.9, (k, 2)) * (width, height)).astype(np.float32)
        visibility = np.ones(k, np.float32)
        visibility[list(drop)] = 0.0
        heatmaps, weights = msra_gaussian_heatmaps(keypoints, visibility, (width, height), (width // 4, height // 4), 1.0)
        image = torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8))
        return {"image": image, "keypoints": keypoints, "visibility": visibility, "heatmaps": heatmaps,
                "keypoint_weights": weights, "meta": meta}

    supports = [sample(missing if shot == 0 else ()) for shot in range(shots)]
    return sample(), supports


def batch_of(episodes: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> dict[str, Any]:
    from posecore.data import collate_samples

    batch = collate_samples([query for query, _ in episodes])
    batch["support"] = [supports for _, supports in episodes]
    return batch


#: A very thin ResNet-18 to stride 4 (8 channels): the cheapest backbone for training tests.
THIN_RESNET = {"type": "timm", "model_name": "resnet18", "out_index": 1,
               "model_kwargs": {"channels": [8, 16, 32, 64], "stem_width": 8}}


def small_synthetic_config(cache: str, **train: Any) -> Any:
    """The default preset at 64x64 with a very thin ResNet (a 16x16 grid) and a 32-wide head, on 48
    synthetic training images (2 per category) and 16 of the unseen categories."""
    import posecore
    from posecore.config import apply_overrides

    config = posecore.get_preset("poseanything-tiny-synthetic")
    overrides = [
        f"model.backbone={json.dumps(THIN_RESNET)}", "model.input_size=[64,64]", "model.embed_dim=32",
        "model.num_heads=2", "model.dim_feedforward=64", "codec.input_size=[64,64]", "codec.heatmap_size=[16,16]",
        "data.input_size=[64,64]", "data.batch_size=8", "data.num_workers=0",
        "data.train.0.num_images=48", f"data.train.0.cache_dir={cache}",
        "data.val.0.num_images=16", f"data.val.0.cache_dir={cache}", "data.val.0.num_episodes=1",
        "data.val.0.num_queries=1",
    ]
    overrides += [f"train.{key}={value}" for key, value in train.items()]
    return apply_overrides(config, overrides)
