"""The MP-100 presets' data and evaluation on real MP-100 annotations (a subset of split 1's test
file; the images are stand-ins of the right sizes): episodes of categories with 9 to 39
keypoints, PoseAnything's skeletons, batched prediction and PCK as the papers report it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from poseanything_helpers import TINY_SWIN

import posecore
from posecore._plugins import get_host
from posecore.config import apply_overrides
from posecore.engine._builder import build_eval_sets, build_model
from posecore.engine._evaluation import evaluate, predict_dataset

# The shared data lies beside the checkout, as the core's tests find it (tests/test_data.py).
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
SUBSET = SHARED / "mp100" / "annotations" / "mp100_split1_test_subset.json"


def _stand_in_images(ann_file: Path, root: Path) -> None:
    rng = np.random.default_rng(0)
    for image in json.loads(ann_file.read_text())["images"]:
        path = root / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 255, (image["height"], image["width"], 3), dtype=np.uint8))


def test_split1_episodes_predict_and_score_like_the_papers(tmp_path: Path) -> None:
    if not SUBSET.is_file():  # a failure, not a skip: a silent skip would hide the test in any other checkout
        pytest.fail(f"shared data missing: {SUBSET} (the MP-100 subset of the shared/ folder beside the checkout)",
                    pytrace=False)
    _stand_in_images(SUBSET, tmp_path)
    preset = posecore.get_preset("poseanything-tiny-1shot-split1")
    test_spec = {**preset.data.test[0].args, "type": "mp100", "ann_file": str(SUBSET), "image_root": str(tmp_path),
                 "num_queries": 1, "num_episodes": 1}
    config = apply_overrides(preset, [
        f"model.backbone={json.dumps(TINY_SWIN)}", "model.input_size=[64,64]", "model.embed_dim=32",
        "model.num_heads=2", "model.dim_feedforward=64", "codec.input_size=[64,64]", "codec.heatmap_size=[16,16]",
        "data.input_size=[64,64]", f"data.test={json.dumps([test_spec])}",
    ])
    torch.manual_seed(0)
    registries = get_host().registries
    model = build_model(config, registries).eval()
    [test_set] = build_eval_sets(config, registries, codec=model.codec, split="test")
    dataset = test_set.dataset.dataset
    assert dataset.skeleton_source == "updated" and dataset.seed == 1
    sizes = {item["meta"].num_keypoints for item in map(dataset.annotation, range(len(dataset)))}
    assert {9, 17, 29, 39} <= sizes, "categories of different sizes share batches"
    assert all(meta.skeleton for meta in dataset.category_metas.values()), "PoseAnything gives every category links"
    results = predict_dataset(model, test_set.dataset, batch_size=4)
    assert len(results) == len(dataset) == 7  # one episode, one query per category
    assert all(r["keypoints"].shape == r["gt_keypoints"].shape for r in results)
    table = evaluate(results, test_set.metrics)
    assert list(table) == ["PCK@0.05/instance", "PCK@0.1/instance", "PCK@0.15/instance", "PCK@0.2/instance",
                           "PCK@0.25/instance", "mPCK/instance"]
    assert table["mPCK/instance"] == np.mean([table[f"PCK@{t}/instance"] for t in ("0.05", "0.1", "0.15", "0.2",
                                                                                     "0.25")])
