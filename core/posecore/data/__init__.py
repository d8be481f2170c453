"""Data: keypoint sets, dataset readers, the sample contract, top-down transforms and pipelines."""

from posecore.data._dataset import LoadReport, PipelineDataset, TopdownDataset
from posecore.data._images import decode_image, read_image
from posecore.data._metainfo import DatasetMeta, builtin_keypoint_sets, load_metainfo
from posecore.data._pipeline import build_pipeline, standard_topdown_pipeline
from posecore.data._sample import REQUIRED_SAMPLE_KEYS, Sample, check_sample, collate_samples

__all__ = [
    "REQUIRED_SAMPLE_KEYS",
    "DatasetMeta",
    "LoadReport",
    "PipelineDataset",
    "Sample",
    "TopdownDataset",
    "build_pipeline",
    "builtin_keypoint_sets",
    "check_sample",
    "collate_samples",
    "decode_image",
    "load_metainfo",
    "read_image",
    "standard_topdown_pipeline",
]
