"""COCO 2017 as its download lays it out: the dataset specs every COCO preset starts from.

Plain strings and dicts (no torch), so that presets, which the plugin host reads when it lists
plugins, can name COCO's files without importing the readers.
"""

from __future__ import annotations

__all__ = [
    "COCO_TEST_DEV_PERSON_DETECTIONS",
    "COCO_VAL_PERSON_DETECTIONS",
    "coco_dataset_spec",
    "coco_test_dev_spec",
]

#: COCO's person detections (detector AP 56.4 on val2017) that top-down papers evaluate with.
COCO_VAL_PERSON_DETECTIONS = "data/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json"

#: The detections (detector AP 60.9) that papers' COCO test-dev rows are predicted from.
COCO_TEST_DEV_PERSON_DETECTIONS = "data/coco/person_detection_results/COCO_test-dev2017_detections_AP_H_609_person.json"


def coco_dataset_spec(split: str, root: str = "data/coco") -> dict[str, str]:
    """The ``coco`` dataset spec for COCO 2017 ``split`` laid out as the COCO download is
    (``annotations/person_keypoints_<split>2017.json``, ``<split>2017/``), for any preset on COCO."""
    return {
        "type": "coco",
        "ann_file": f"{root}/annotations/person_keypoints_{split}2017.json",
        "image_root": f"{root}/{split}2017",
    }


def coco_test_dev_spec(root: str = "data/coco") -> dict[str, str]:
    """COCO test-dev 2017: the image-info file (no keypoints are public) with the detector boxes
    papers use. ``posecore eval --split test --results FILE`` writes what the COCO server scores."""
    return {
        "type": "coco",
        "ann_file": f"{root}/annotations/image_info_test-dev2017.json",
        "image_root": f"{root}/test2017",
        "bbox_file": COCO_TEST_DEV_PERSON_DETECTIONS.replace("data/coco", root, 1),
    }
