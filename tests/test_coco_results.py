"""COCO keypoint results files: what ``posecore eval --results`` writes for an evaluation server
(COCO test-dev has no public ground truth) must rank exactly as the in-process ``coco_ap`` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from posecore.cli.evaluate import evaluate_files
from posecore.config import apply_overrides, load_config, save_config
from posecore.data.metainfo import load_metainfo
from posecore.metrics.coco_ap import CocoAPMetric, coco_results

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_GT = SHARED / "coco" / "test_coco.json"
COCO_DETS = SHARED / "coco" / "test_coco_det_AP_H_56.json"


def _noisy_results(seed: int) -> list[dict]:
    """Every labelled GT person predicted with noise, plus a near-copy of each (which OKS-NMS must
    remove), with detector-like box scores."""
    rng = np.random.default_rng(seed)
    data = json.loads(COCO_GT.read_text())
    results = []
    for ann in data["annotations"]:
        if ann["num_keypoints"] == 0:
            continue
        keypoints = np.asarray(ann["keypoints"], np.float64).reshape(17, 3)[:, :2]
        x, y, w, h = ann["bbox"]
        predicted = keypoints + rng.normal(0, 0.03 * max(w, h), keypoints.shape)
        for copy in range(2):
            nudge = rng.normal(0, 0.002 * max(w, h), keypoints.shape) if copy else 0.0
            results.append({"image_id": ann["image_id"], "keypoints": predicted + nudge,
                            "keypoint_scores": rng.uniform(0.1, 1.0, 17), "bbox_score": float(rng.uniform(0.5, 1.0)),
                            "bbox": np.array([x, y, x + w, y + h]) + copy})
    return results


def test_results_file_ranks_as_coco_ap_and_scores_the_same(tmp_path: Path) -> None:
    results = _noisy_results(0)
    metric = CocoAPMetric(str(COCO_GT), metainfo="coco")
    metric.update(results)
    table = metric.compute()
    detections = metric.detections(results)
    rows = coco_results(results, np.asarray(load_metainfo("coco").sigmas))
    assert len(rows) == len(results) // 2, "OKS-NMS removed the near-copies, and only them"
    assert len(rows) == len(detections)
    image_ids = metric.ground_truth.image_ids[detections.image_index]
    assert [row["image_id"] for row in rows] == image_ids.tolist()
    np.testing.assert_allclose([row["score"] for row in rows], detections.score)
    np.testing.assert_allclose(np.array([row["keypoints"] for row in rows]).reshape(-1, 17, 3),
                               detections.keypoints, atol=1e-3)
    # the written file, scored as a plain results file (its scores, no NMS), gives the same table
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rows))
    scored = evaluate_files(COCO_GT, path, ["coco_ap"], metainfo="coco")["coco_ap"]
    assert table["AP"] > 0.5
    for key in ("AP", "AP50", "AP75", "AR"):
        assert scored[key] == pytest.approx(table[key], abs=1e-6), key


def _posecore(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSECORE_")}
    return subprocess.run([sys.executable, "-m", "posecore", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def test_dev_setup(tiny_config, tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint (random weights, the tiny config) and a config whose test split is a
    test-dev-like image-info file (the COCO sample's images, no annotations) with detector boxes."""
    from posecore.checkpoint import save_checkpoint
    from posecore.config import dump_config
    from posecore.engine.builder import build_model

    folder = tmp_path_factory.mktemp("testdev")
    data = json.loads(COCO_GT.read_text())
    info = {key: data[key] for key in ("info", "licenses", "images", "categories")}
    (folder / "image_info.json").write_text(json.dumps(info))
    config = apply_overrides(tiny_config(epochs=0), [
        f"data.test=[{{type: coco, ann_file: {folder / 'image_info.json'}, "
        f"image_root: {SHARED / 'coco'}, bbox_file: {COCO_DETS}, bbox_score_thr: 0.3}}]"])
    save_config(config, folder / "testdev.yaml")
    torch.manual_seed(0)
    model = build_model(load_config(folder / "testdev.yaml"))
    save_checkpoint({"state_dict": model.state_dict(), "meta": {"config": dump_config(config)}}, folder / "w.pth")
    return folder / "testdev.yaml", folder / "w.pth"


def test_eval_writes_server_results_for_a_split_without_ground_truth(test_dev_setup, tmp_path: Path) -> None:
    config, weights = test_dev_setup
    out = tmp_path / "test-dev_results.json"
    result = _posecore("eval", "--config", str(config), "--checkpoint", str(weights), "--split", "test",
                       "--device", "cpu", "--results", str(out))
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    detections = [d for d in json.loads(COCO_DETS.read_text()) if d["score"] > 0.3]
    assert 0 < len(rows) <= len(detections) == 33
    coco_ids = {image["id"] for image in json.loads(COCO_GT.read_text())["images"]}
    assert {row["image_id"] for row in rows} <= coco_ids, "COCO image ids, not positions"
    assert all(len(row["keypoints"]) == 51 and row["category_id"] == 1 for row in rows)
    assert all(0 <= row["score"] <= 1 for row in rows)
    assert f"{len(detections)} instances predicted" in result.stdout


def test_eval_without_results_names_the_missing_ground_truth(test_dev_setup) -> None:
    config, weights = test_dev_setup
    result = _posecore("eval", "--config", str(config), "--checkpoint", str(weights), "--split", "test",
                       "--device", "cpu")
    assert result.returncode == 2
    assert "no ground truth" in result.stderr and "--results FILE" in result.stderr
