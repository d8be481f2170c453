"""The core's dataset and transform declarations (torch-free: read when plugins load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posecore._components import Component

__all__ = ["DATASETS", "TRANSFORMS"]


def _coco_example(keypoint_set: str | None) -> Any:
    def write(directory: Path) -> dict[str, Any]:
        from posecore.data._coco import write_example

        return write_example(directory, keypoint_set)

    return write


_COCO_FAMILY = {
    "coco": "COCO person keypoints (17)",
    "coco_wholebody": "COCO-WholeBody (133: body, feet, face, hands)",
    "ochuman": "OCHuman (17, heavily occluded people)",
    "crowdpose": "CrowdPose (14, crowded scenes)",
    "aic": "AI Challenger (14)",
    "ap10k": "AP-10K animals (17, 54 species)",
    "apt36k": "APT-36K animals (17, AP-10K keypoints)",
    "animalpose": "Animal-Pose (20)",
    "humanart": "Human-Art (17, or 21 with keypoint_set=21)",
}

DATASETS: list[Component] = [
    Component("coco_style", "posecore.data._coco:coco_style",
              "any COCO keypoint json plus a metainfo JSON/YAML file (no code needed)", example=_coco_example(None)),
    *(
        Component(name, f"posecore.data._coco:{name}", description,
                  example=_coco_example("humanart" if name == "humanart" else name))
        for name, description in _COCO_FAMILY.items()
    ),
    Component("mpii", "posecore.data._mpii:MpiiDataset",
              "MPII (16): HRNet/mmpose json, head boxes from mpii_gt_val.mat for PCKh",
              example="posecore.data._mpii:write_example"),
    Component("interhand2d", "posecore.data._interhand:InterHand2DDataset",
              "InterHand2.6M: 2D keypoints projected from the 3D joints and cameras; both hands (42) or each (21)",
              example="posecore.data._interhand:write_example"),
    Component("mp100", "posecore.data._mp100:MP100Dataset",
              "MP-100 category-agnostic pose: per-category keypoints and skeleton, support/query episodes",
              example="posecore.data._mp100:write_example"),
    Component("synthetic_people", "posecore.data._synthetic:synthetic_people",
              "procedural COCO-17 stick figures, generated once into the cache (the embedded default data)",
              example="posecore.data._synthetic:write_people_example"),
    Component("synthetic_categories", "posecore.data._synthetic:synthetic_categories",
              "procedural creatures of 32 categories, 8 held out, MP-100 layout (category-agnostic default data)",
              example="posecore.data._synthetic:write_categories_example"),
]

TRANSFORMS: list[Component] = [
    Component("get_bbox_center_scale", "posecore.data._transforms:GetBBoxCenterScale",
              "box -> centre and size, padded (1.25)"),
    Component("center_shift", "posecore.data._transforms:CenterShift",
              "move the box centre once per instance for the run (mmpose 0.x's loaders), or per epoch"),
    Component("random_flip", "posecore.data._transforms:RandomFlip",
              "horizontal flip with the keypoint set's flip indices"),
    Component("random_half_body", "posecore.data._transforms:RandomHalfBody",
              "crop to the upper or lower body (mmpose 0.x semantics)"),
    Component("random_bbox_transform", "posecore.data._transforms:RandomBBoxTransform",
              "random scale, rotation and shift of the box"),
    Component("topdown_affine", "posecore.data._transforms:TopdownAffine",
              "read the image and warp the box to the input size (standard or UDP), once"),
    Component("generate_target", "posecore.data._transforms:GenerateTarget",
              "encode targets with the experiment's codec"),
    Component("pack_sample", "posecore.data._transforms:PackSample", "image to a (3, H, W) uint8 tensor"),
]
