"""Data: the sample contract, dataset metainfo and the core's dataset readers."""

from posecore.data.metainfo import DatasetMeta, load_metainfo
from posecore.data.sample import REQUIRED_SAMPLE_KEYS, Sample, check_sample, collate_samples

__all__ = ["REQUIRED_SAMPLE_KEYS", "DatasetMeta", "Sample", "check_sample", "collate_samples", "load_metainfo"]
