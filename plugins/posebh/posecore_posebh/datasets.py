"""The plugin's datasets: 3DPW as PoseBH reads it, and keypoint subsets of any dataset.

* ``posebh_pw3d``: COCO-format 3DPW files with the 24 SMPL joints (the annotation files PoseBH's
  authors distribute, made by ``tools/dataset/preprocess_3dpw.py``), keypoint set
  ``keypoint_sets/pw3d_smpl24.json`` (names, flip pairs, skeleton, OKS sigmas and joint weights of
  the original ``pw3d`` dataset info). The core's ``3dpw`` set is a different, 18-keypoint one.
* ``posebh_keypoint_subset``: another dataset's samples with a subset (or reordering) of its
  keypoints and the keypoint set that follows; the embedded default run uses it to make a second
  "dataset" with its own skeleton out of the synthetic people.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from torch.utils.data import Dataset

from posecore import ConfigError, Nested
from posecore.data import CocoKeypointDataset, DatasetMeta, write_example
from posecore_posebh.presets import PW3D_KEYPOINT_SET

__all__ = ["KeypointSubset", "pw3d", "subset_meta"]


def pw3d(ann_file: str, image_root: str | None = None, bbox_file: str | None = None, bbox_score_thr: float = 0.0,
         dataset_index: int = 0) -> CocoKeypointDataset:
    """3DPW with the 24 SMPL joints (PoseBH's ``pw3d_train.json`` / ``pw3d_test.json``)."""
    return CocoKeypointDataset(ann_file, str(PW3D_KEYPOINT_SET), image_root, bbox_file, bbox_score_thr,
                               dataset_index=dataset_index)


def write_pw3d_example(directory: Path) -> dict[str, Any]:
    """Contract-check example: two images, three 24-joint instances."""
    return write_example(Path(directory), str(PW3D_KEYPOINT_SET))


def subset_meta(meta: DatasetMeta, keypoints: Sequence[int], name: str) -> DatasetMeta:
    """The keypoint set of ``meta`` restricted to ``keypoints`` (in that order); every kept keypoint's
    flip partner must be kept too, so flipping stays a pairing."""
    chosen = [int(k) for k in keypoints]
    if not chosen or len(set(chosen)) != len(chosen) or not all(0 <= k < meta.num_keypoints for k in chosen):
        raise ConfigError(f"posebh_keypoint_subset.keypoints must be distinct indices in 0..{meta.num_keypoints - 1} "
                          f"of keypoint set {meta.name!r}; got {list(keypoints)}")
    position = {old: new for new, old in enumerate(chosen)}
    flip = meta.flip_indices or tuple(range(meta.num_keypoints))
    lost = [meta.keypoint_names[k] for k in chosen if flip[k] not in position]
    if lost:
        raise ConfigError(f"posebh_keypoint_subset.keypoints keeps {lost} but not their flip partners; add them")

    def pick(values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(values[k] for k in chosen) if values else ()

    links = [(a, b) for a, b in meta.skeleton if a in position and b in position]
    link_colors = [c for (a, b), c in zip(meta.skeleton, meta.skeleton_colors, strict=False)
                   if a in position and b in position] if meta.skeleton_colors else []
    return DatasetMeta(
        name=name,
        keypoint_names=pick(meta.keypoint_names),
        flip_indices=tuple(position[flip[k]] for k in chosen),
        skeleton=tuple((position[a], position[b]) for a, b in links),
        sigmas=pick(meta.sigmas),
        joint_weights=pick(meta.joint_weights),
        keypoint_colors=pick(meta.keypoint_colors),
        skeleton_colors=tuple(link_colors),
        upper_body_ids=tuple(position[k] for k in meta.upper_body_ids if k in position),
        lower_body_ids=tuple(position[k] for k in meta.lower_body_ids if k in position),
    )


class KeypointSubset(Dataset):
    """``dataset``'s samples with only ``keypoints`` (in that order) and their keypoint set ``name``.

    Args:
        dataset: a ``datasets`` component (nested spec); relative paths inside it are not joined
            to ``--data`` (give them absolute, or run from the data root).
        keypoints: indices into the inner dataset's keypoints.
        name: the new keypoint set's name.
        dataset_index: index of this dataset in a multi-dataset experiment (the engine sets it).
    """

    def __init__(self, dataset: Annotated[Dataset, Nested("datasets")], keypoints: tuple[int, ...], name: str,
                 dataset_index: int = 0) -> None:
        inner = getattr(dataset, "meta", None)
        if inner is None:
            raise ConfigError("posebh_keypoint_subset.dataset must be a dataset with a keypoint set ('meta')")
        self.dataset = dataset
        self.indices = np.asarray(keypoints, dtype=np.int64)
        self.meta = subset_meta(inner, keypoints, name)
        self.dataset_index = dataset_index
        self.ann_file = None  # the inner file's keypoints are not these: no metric may read it

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _narrow(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample = dict(sample)
        sample["keypoints"] = np.asarray(sample["keypoints"])[self.indices]
        sample["visibility"] = np.asarray(sample["visibility"])[self.indices]
        sample["meta"] = self.meta
        sample["dataset_index"] = self.dataset_index
        return sample

    def annotation(self, index: int) -> dict[str, Any]:
        """The sample without its image (the pipeline reads it)."""
        read = getattr(self.dataset, "annotation", None)
        return self._narrow(read(index) if read is not None else self.dataset[index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._narrow(self.dataset[index])


def write_subset_example(directory: Path) -> dict[str, Any]:
    """Contract-check example: the left/right shoulders, elbows and wrists of 6 synthetic images."""
    inner = {"type": "synthetic_people", "split": "train", "num_images": 6, "cache_dir": str(directory)}
    return {"dataset": inner, "keypoints": [6, 8, 10, 5, 7, 9], "name": "arms"}
