"""Data: keypoint sets, dataset readers, the sample contract, top-down transforms and pipelines.

Keypoint sets and the COCO dataset specs are plain data and import at once; the readers,
transforms and the sample contract need torch and are imported on first use, so that presets
and the plugin host can use this package without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from posecore._lazy import lazy_exports
from posecore.data._coco_layout import COCO_VAL_PERSON_DETECTIONS, coco_dataset_spec, coco_test_dev_spec
from posecore.data._metainfo import DatasetMeta, builtin_keypoint_sets, load_metainfo

if TYPE_CHECKING:
    from posecore.data._coco import CocoKeypointDataset, write_example
    from posecore.data._dataset import LoadReport, PipelineDataset, TopdownDataset
    from posecore.data._images import decode_image, read_image
    from posecore.data._mp100 import mp100_splits
    from posecore.data._pipeline import build_pipeline
    from posecore.data._pipeline_specs import standard_topdown_pipeline
    from posecore.data._sample import REQUIRED_SAMPLE_KEYS, Batch, Sample, check_sample, collate_samples

_EXPORTS = {
    "Batch": "posecore.data._sample",
    "CocoKeypointDataset": "posecore.data._coco",
    "LoadReport": "posecore.data._dataset",
    "PipelineDataset": "posecore.data._dataset",
    "REQUIRED_SAMPLE_KEYS": "posecore.data._sample",
    "Sample": "posecore.data._sample",
    "TopdownDataset": "posecore.data._dataset",
    "build_pipeline": "posecore.data._pipeline",
    "check_sample": "posecore.data._sample",
    "collate_samples": "posecore.data._sample",
    "decode_image": "posecore.data._images",
    "mp100_splits": "posecore.data._mp100",
    "read_image": "posecore.data._images",
    "standard_topdown_pipeline": "posecore.data._pipeline_specs",
    "write_example": "posecore.data._coco",
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


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
