"""Data: keypoint sets, dataset readers, the sample contract, top-down transforms and pipelines.

Keypoint sets and the COCO dataset specs are plain data and import at once; the readers,
transforms and the sample contract need torch and are imported on first use, so that presets
and the plugin host can use this package without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from posecore.data._coco_layout import COCO_VAL_PERSON_DETECTIONS, coco_dataset_spec, coco_test_dev_spec
from posecore.data._metainfo import DatasetMeta, builtin_keypoint_sets, load_metainfo

if TYPE_CHECKING:
    from posecore.data._coco import CocoKeypointDataset, write_example
    from posecore.data._dataset import LoadReport, PipelineDataset, TopdownDataset
    from posecore.data._images import decode_image, read_image
    from posecore.data._mp100 import mp100_splits
    from posecore.data._pipeline import build_pipeline, standard_topdown_pipeline
    from posecore.data._sample import REQUIRED_SAMPLE_KEYS, Batch, Sample, check_sample, collate_samples

_EXPORTS = {
    "Batch": "sample",
    "CocoKeypointDataset": "coco",
    "LoadReport": "dataset",
    "PipelineDataset": "dataset",
    "REQUIRED_SAMPLE_KEYS": "sample",
    "Sample": "sample",
    "TopdownDataset": "dataset",
    "build_pipeline": "pipeline",
    "check_sample": "sample",
    "collate_samples": "sample",
    "decode_image": "images",
    "mp100_splits": "mp100",
    "read_image": "images",
    "standard_topdown_pipeline": "pipeline",
    "write_example": "coco",
}

__all__ = [
    "COCO_VAL_PERSON_DETECTIONS",
    "REQUIRED_SAMPLE_KEYS",
    "Batch",
    "CocoKeypointDataset",
    "DatasetMeta",
    "LoadReport",
    "PipelineDataset",
    "Sample",
    "TopdownDataset",
    "build_pipeline",
    "builtin_keypoint_sets",
    "check_sample",
    "coco_dataset_spec",
    "coco_test_dev_spec",
    "collate_samples",
    "decode_image",
    "load_metainfo",
    "mp100_splits",
    "read_image",
    "standard_topdown_pipeline",
    "write_example",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'posecore.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"posecore.data._{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
