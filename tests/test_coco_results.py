"""COCO keypoint results files: what ``posecore eval --results`` writes for an evaluation server
(COCO test-dev has no public ground truth) must rank exactly as the in-process ``coco_ap`` does.
The command itself is tested with the other engine commands (``test_engine_cli.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posecore._cli.evaluate import evaluate_files
from posecore.data._metainfo import load_metainfo
from posecore.metrics._coco_ap import CocoAPMetric, coco_results

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_GT = SHARED / "coco" / "test_coco.json"


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
