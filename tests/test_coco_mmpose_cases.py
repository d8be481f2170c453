"""mmpose's own ``CocoMetric`` test cases, run through :class:`CocoAPMetric`.

mmpose 1.x (``tests/test_evaluation/test_metrics/test_coco_metric.py``) feeds its metric
predictions built from the annotations of its sample files, the same files as
``/work/shared/data``, and asserts the numbers below. The predictions are rebuilt here the way
that test builds them: float32 keypoints scaled per case, the visibility flag (scaled) as the
keypoint score, a float32 box score, and the NMS area of the 1.25-padded GT box (mmpose's
``bbox_scales``), which is what ``bbox`` is for NMS here. Unlike the rest of the metric tests, the
expected values are mmpose's, as its test asserts them: they are the target.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posecore.metrics import CocoAPMetric, InstanceResult

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared sample data not found at {SHARED}")

# mmpose's result names -> posecore's.
KEYS = {
    "AP": "AP", "AP .5": "AP50", "AP .75": "AP75", "AP (M)": "APm", "AP (L)": "APl",
    "AR": "AR", "AR .5": "AR50", "AR .75": "AR75", "AR (M)": "ARm", "AR (L)": "ARl",
    "AP(E)": "AP(E)", "AP(M)": "AP(M)", "AP(H)": "AP(H)",
}  # fmt: skip
PERFECT_COCO = dict.fromkeys(["AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)"], 1.0)


def annotations(name: str) -> list[dict]:
    return json.loads((SHARED / name).read_text())["annotations"]


def prediction(ann: dict, *, ann_id: int, x_scale: float = 1.0, y_scale: float = 1.0, score_scale: float = 1.0,
               bbox_score: float = 1.0, as_float32: bool = True) -> InstanceResult:
    """One top-down prediction as mmpose's test makes it from annotation ``ann``.

    ``as_float32=False`` keeps the annotation's integers, as mmpose's unscaled cases do."""
    raw = np.array(ann["keypoints"], dtype=np.float32 if as_float32 else None).reshape(-1, 3)
    if as_float32:
        raw[:, 0] *= x_scale
        raw[:, 1] *= y_scale
        raw[:, 2] *= score_scale
    x, y, w, h = ann["bbox"]
    cx, cy = x + w / 2, y + h / 2
    padded = np.array([cx - w * 1.25 / 2, cy - h * 1.25 / 2, cx + w * 1.25 / 2, cy + h * 1.25 / 2])
    return InstanceResult(
        image_id=ann["image_id"], id=ann_id, category_id=ann.get("category_id", 1), keypoints=raw[:, :2],
        keypoint_scores=raw[:, 2], bbox=padded, bbox_score=np.float32(bbox_score),
    )  # fmt: skip


def evaluate(ann_file: str, results: list[InstanceResult], **kwargs) -> dict[str, float]:
    metric = CocoAPMetric(str(SHARED / ann_file), **kwargs)
    metric.update(results)
    return metric.compute()


def assert_table(table: dict[str, float], expected: dict[str, float]) -> None:
    """mmpose's ``assertAlmostEqual`` (7 decimal places) on every value its test names."""
    for key, value in expected.items():
        assert round(table[KEYS[key]] - value, 7) == 0, (key, table[KEYS[key]], value)


# -- TestCocoMetric.test_topdown_evaluate -------------------------------------------------------


@pytest.mark.parametrize(
    ("score_mode", "nms"),
    [("bbox", None), ("bbox_keypoint", "oks"), ("bbox_rle", "soft_oks")],
)
def test_ground_truth_as_predictions_in_every_score_and_nms_mode(score_mode: str, nms: str | None) -> None:
    """Cases 1-3: the annotations (integer keypoints, flag as score) score perfectly in each mode."""
    results = [prediction(ann, ann_id=ann["id"], as_float32=False) for ann in annotations("coco/test_coco.json")]
    assert len(results) == 14
    nms_kwargs = {"nms_thr": None} if nms is None else {"nms_mode": nms, "nms_thr": 0.9}
    table = evaluate("coco/test_coco.json", results, metainfo="coco", score_mode=score_mode, **nms_kwargs)
    assert_table(table, PERFECT_COCO)


def test_crowdpose_case() -> None:
    """Case 5: CrowdPose, box-area OKS scale, AP by crowd index (both images 'medium')."""
    results = [prediction(ann, ann_id=ann["id"], as_float32=False) for ann in annotations("crowdpose/test_crowdpose.json")]
    assert len(results) == 5
    table = evaluate("crowdpose/test_crowdpose.json", results, metainfo="crowdpose", use_area=False,
                     iou_type="keypoints_crowd")  # fmt: skip
    assert_table(table, {"AP": 1.0, "AP .5": 1.0, "AP .75": 1.0, "AR": 1.0, "AR .5": 1.0, "AR .75": 1.0,
                         "AP(E)": -1.0, "AP(M)": 1.0, "AP(H)": -1.0})  # fmt: skip


def test_ap10k_case() -> None:
    """Case 7: AP-10K, two animals, no medium-sized one."""
    results = [prediction(ann, ann_id=ann["id"], as_float32=False) for ann in annotations("ap10k/test_ap10k.json")]
    assert len(results) == 2
    table = evaluate("ap10k/test_ap10k.json", results, metainfo="ap10k")
    assert_table(table, {**PERFECT_COCO, "AP (M)": -1.0, "AR (M)": -1.0})


# -- TestCocoMetric.test_topdown_alignment ------------------------------------------------------

SCALED_RECALL = {"AR": 0.5833333333333333, "AR .5": 0.9166666666666666, "AR .75": 0.5833333333333334,
                 "AR (M)": 0.44000000000000006, "AR (L)": 0.6857142857142857}  # fmt: skip


def scaled_predictions() -> list[InstanceResult]:
    """x by 0.98, y by 1.02, keypoint scores by 0.8 (float32), box score 0.98."""
    return [
        prediction(ann, ann_id=ann["id"], x_scale=0.98, y_scale=1.02, score_scale=0.8, bbox_score=0.98)
        for ann in annotations("coco/test_coco.json")
    ]


def test_scaled_predictions_bbox_keypoint_oks_nms() -> None:
    """Alignment case 1: mmpose's typical setting."""
    table = evaluate("coco/test_coco.json", scaled_predictions(), metainfo="coco", score_mode="bbox_keypoint",
                     nms_mode="oks", nms_thr=0.9)  # fmt: skip
    assert_table(table, {"AP": 0.5287458745874587, "AP .5": 0.9042904290429042, "AP .75": 0.5009900990099009,
                         "AP (M)": 0.42475247524752474, "AP (L)": 0.6219554455445544, **SCALED_RECALL})  # fmt: skip


def test_scaled_predictions_bbox_rle_oks_nms() -> None:
    """Alignment case 2: box + mean + max in float32. In float64 two of these scores tie, COCOeval
    ranks them the other way round and AP reads 0.4975."""
    table = evaluate("coco/test_coco.json", scaled_predictions(), metainfo="coco", score_mode="bbox_rle",
                     nms_mode="oks", nms_thr=0.9)  # fmt: skip
    assert_table(table, {"AP": 0.5004950495049505, "AP .5": 0.8836633663366337, "AP .75": 0.4679867986798679,
                         "AP (M)": 0.42475247524752474, "AP (L)": 0.5814108910891089, **SCALED_RECALL})  # fmt: skip


def test_two_predictions_per_person_soft_oks_nms() -> None:
    """Alignment case 3: each person predicted twice, scaled apart by its index i (the second copy
    with id + 1 and box score 1 - 2i/100), bbox_keypoint scores, soft OKS-NMS at 0.9."""
    results = []
    for i, ann in enumerate(annotations("coco/test_coco.json")):
        results.append(prediction(ann, ann_id=ann["id"], x_scale=1 - i / 100, y_scale=1 + i / 100,
                                  score_scale=1 - i / 100))  # fmt: skip
        results.append(prediction(ann, ann_id=ann["id"] + 1, x_scale=1 + i / 100, y_scale=1 - i / 100,
                                  score_scale=1 - 2 * i / 100, bbox_score=1 - 2 * i / 100))  # fmt: skip
    table = evaluate("coco/test_coco.json", results, metainfo="coco", score_mode="bbox_keypoint",
                     keypoint_score_thr=0.2, nms_mode="soft_oks", nms_thr=0.9)  # fmt: skip
    assert_table(table, {"AP": 0.17073707370737073, "AP .5": 0.25055005500550054, "AP .75": 0.10671067106710669,
                         "AP (M)": 0.0, "AP (L)": 0.29315181518151806, "AR": 0.2416666666666666,
                         "AR .5": 0.3333333333333333, "AR .75": 0.16666666666666666, "AR (M)": 0.0,
                         "AR (L)": 0.41428571428571426})  # fmt: skip
