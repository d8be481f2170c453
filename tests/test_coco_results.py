"""COCO keypoint results files: what ``posecore eval --results`` writes for an evaluation server
(COCO test-dev has no public ground truth) must rank exactly as the in-process ``coco_ap`` does.
The expectations are independent of posecore's code: the rescoring and NMS written out by hand,
and the file scored by pycocotools, as the server scores it. The command itself is tested with
the other engine commands (``test_engine_cli.py``)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

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


def _rescored(result: dict) -> float:
    """mmpose's instance score: box score x the mean of the keypoint scores above 0.2."""
    scores = result["keypoint_scores"]
    return result["bbox_score"] * float(scores[scores > 0.2].mean())


def _pycocotools_table(results_file: Path) -> dict[str, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        ground_truth = COCO(str(COCO_GT))
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(str(results_file)), "keypoints")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats  # AP, AP50, AP75, AP medium, AP large, AR, ...
    return {"AP": stats[0], "AP50": stats[1], "AP75": stats[2], "AR": stats[5]}


def test_results_file_ranks_as_coco_ap_and_scores_the_same(tmp_path: Path) -> None:
    results = _noisy_results(0)
    metric = CocoAPMetric(str(COCO_GT), metainfo="coco")
    metric.update(results)
    table = metric.compute()
    rows = coco_results(results, np.asarray(load_metainfo("coco").sigmas))
    assert len(rows) == len(results) // 2, "OKS-NMS removed the near-copies, and only them"
    # Of each person's two near-copies, the better-scored one is kept, with its score and keypoints.
    kept = [max(results[i:i + 2], key=_rescored) for i in range(0, len(results), 2)]
    expected = sorted((r["image_id"], _rescored(r), r["keypoints"], r["keypoint_scores"]) for r in kept)
    written = sorted((row["image_id"], row["score"], np.reshape(row["keypoints"], (17, 3))) for row in rows)
    for (image_id, score, keypoints, keypoint_scores), (row_image, row_score, triplets) in zip(expected, written,
                                                                                            strict=True):
        assert row_image == image_id and row_score == pytest.approx(score, rel=1e-12)
        np.testing.assert_allclose(triplets[:, :2], keypoints, atol=1e-3)
        np.testing.assert_allclose(triplets[:, 2], keypoint_scores, atol=1e-3)
    # The written file, scored by pycocotools as the evaluation server would, gives coco_ap's table.
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rows))
    scored = _pycocotools_table(path)
    assert table["AP"] > 0.5
    for key in ("AP", "AP50", "AP75", "AR"):
        assert scored[key] == pytest.approx(table[key], abs=1e-6), key
