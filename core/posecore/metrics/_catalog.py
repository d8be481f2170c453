"""The core's metric declarations (torch-free: read when plugins load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from posecore._components import Component

__all__ = ["METRICS"]


def coco_ap_example(directory: Path) -> dict[str, Any]:
    """Write a two-image, three-person COCO keypoint file and return ``coco_ap`` kwargs for it."""
    names = [
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ]
    annotations = []
    for n, (image_id, x, y) in enumerate([(1, 10.0, 20.0), (1, 120.0, 30.0), (2, 40.0, 15.0)]):
        keypoints = []
        for k in range(17):
            keypoints += [x + 3.0 * (k % 5), y + 6.0 * k, 2]
        annotations.append(
            {
                "id": n + 1,
                "image_id": image_id,
                "category_id": 1,
                "keypoints": keypoints,
                "num_keypoints": 17,
                "bbox": [x, y, 15.0, 100.0],
                "area": 1200.0,
                "iscrowd": 0,
            }
        )
    document = {
        "images": [{"id": 1, "width": 200, "height": 160}, {"id": 2, "width": 200, "height": 160}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": names, "skeleton": []}],
    }
    path = Path(directory) / "coco_ap_example.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return {"ann_file": str(path), "metainfo": "coco"}


METRICS: list[Component] = [
    Component(
        "coco_ap",
        "posecore.metrics._coco_ap:CocoAPMetric",
        "COCO OKS AP/AR (AP, AP50, AP75, APm, APl, AR ...), CrowdPose AP(E/M/H), COCO-WholeBody parts",
        example=coco_ap_example,
    ),
    Component(
        "pckh",
        "posecore.metrics._keypoint_distance:MpiiPCKhMetric",
        "MPII PCKh in percent: Head/Shoulder/Elbow/Wrist/Hip/Knee/Ankle/Mean at 0.5, Mean@0.1",
        example={"thr": 0.5},
    ),
    Component(
        "pck",
        "posecore.metrics._keypoint_distance:PCKMetric",
        "PCK by max(w, h) of the GT box (or head size); instance mean (MP-100 papers) and keypoint mean (mmpose)",
        example={"thresholds": [0.05, 0.2]},
    ),
    Component(
        "auc",
        "posecore.metrics._keypoint_distance:AUCMetric",
        "area under the PCK curve, distances / 30 px at 20 thresholds (mmpose)",
        example={"norm_factor": 30.0},
    ),
    Component("epe", "posecore.metrics._keypoint_distance:EPEMetric", "end-point error: mean pixel distance"),
    Component(
        "nme",
        "posecore.metrics._keypoint_distance:NMEMetric",
        "normalised mean error, by box size, head size or a keypoint distance (inter-ocular)",
        example={"norm_mode": "bbox_size"},
    ),
]
