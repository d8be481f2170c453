"""``coco_style``: any COCO keypoint file plus one metainfo file, no code needed."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from posecore.data.metainfo import DatasetMeta, load_metainfo
from posecore.data.sample import Sample
from posecore.errors import ConfigError

__all__ = ["CocoStyleDataset"]

_REQUIRED_ANNOTATION_FIELDS = ("image_id", "keypoints", "bbox")


class CocoStyleDataset(Dataset):
    """Top-down instances of a COCO-format keypoint file.

    Args:
        ann_file: the COCO json (``images``, ``annotations``).
        metainfo: metainfo JSON/YAML file describing its keypoints.
        image_root: folder the images' ``file_name`` s are relative to (default: the json's folder).
        dataset_index: index of this dataset in a multi-dataset experiment.

    Instances with no labelled keypoint or a box of zero area are skipped, as mmpose's top-down
    loaders do; the number skipped is reported in one warning at the end of loading.
    """

    def __init__(self, ann_file: str, metainfo: str, image_root: str | None = None, dataset_index: int = 0) -> None:
        self.ann_file = Path(ann_file)
        self.meta: DatasetMeta = load_metainfo(metainfo)
        self.image_root = Path(image_root) if image_root else self.ann_file.parent
        self.dataset_index = dataset_index
        self.instances = self._load()

    def _load(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.ann_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"annotation file not found: {self.ann_file}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"annotation file {self.ann_file} is not valid JSON: {exc}") from exc
        for key in ("images", "annotations"):
            if key not in data:
                raise ConfigError(f"{self.ann_file}: top-level field {key!r} is missing (not a COCO file?)")
        images = {image["id"]: image for image in data["images"]}
        k = self.meta.num_keypoints
        skipped: Counter[str] = Counter()
        instances = []
        for index, ann in enumerate(data["annotations"]):
            missing = [f for f in _REQUIRED_ANNOTATION_FIELDS if f not in ann]
            if missing:
                raise ConfigError(
                    f"{self.ann_file}: annotation #{index} (id {ann.get('id')}) lacks field(s) {', '.join(missing)}"
                )
            raw = np.asarray(ann["keypoints"], dtype=np.float32)
            if raw.size != 3 * k:
                raise ConfigError(
                    f"{self.ann_file}: annotation id {ann.get('id')} (image {ann['image_id']}) has "
                    f"{raw.size // 3} keypoints but metainfo {self.meta.name!r} declares {k}"
                )
            if ann["image_id"] not in images:
                raise ConfigError(f"{self.ann_file}: annotation id {ann.get('id')} names unknown image_id {ann['image_id']}")
            raw = raw.reshape(k, 3)
            if len(ann["bbox"]) != 4:
                raise ConfigError(
                    f"{self.ann_file}: annotation id {ann.get('id')} (image {ann['image_id']}): bbox must be "
                    f"[x, y, width, height]; got {ann['bbox']}"
                )
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w <= 0 or h <= 0:
                skipped["box of zero area"] += 1
                continue
            if not (raw[:, 2] > 0).any():
                skipped["no labelled keypoint"] += 1
                continue
            instances.append({
                "image": images[ann["image_id"]],
                "id": int(ann.get("id", index)),
                "category_id": int(ann.get("category_id", 1)),
                "keypoints": raw[:, :2].copy(),
                "visibility": np.minimum(raw[:, 2], 1.0),
                "bbox": np.array([x, y, x + w, y + h], dtype=np.float32),
            })
        if skipped:
            details = ", ".join(f"{n} with {reason}" for reason, n in skipped.items())
            warnings.warn(f"{self.ann_file}: skipped {sum(skipped.values())} instance(s): {details}", stacklevel=3)
        if not instances:
            raise ConfigError(f"{self.ann_file}: no usable instance (dataset is empty after skipping {dict(skipped)})")
        return instances

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> Sample:
        instance = self.instances[index]
        image_info = instance["image"]
        path = self.image_root / image_info["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError(f"cannot read image {path} (image id {image_info['id']}): missing or corrupt")
        return Sample(
            image=cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
            keypoints=instance["keypoints"].copy(),
            visibility=instance["visibility"].copy(),
            bbox=instance["bbox"].copy(),
            image_id=int(image_info["id"]),
            id=instance["id"],
            dataset_index=self.dataset_index,
            category_id=instance["category_id"],
            meta=self.meta,
            image_path=str(path),
        )


def write_example(directory: Path) -> dict[str, str]:
    """Write a tiny COCO-style dataset (2 images, 3 people, 5 keypoints) for contract checks."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    names = ["head", "left_hand", "right_hand", "left_foot", "right_foot"]
    meta = {
        "dataset_name": "example",
        "keypoint_names": names,
        "flip_indices": [0, 2, 1, 4, 3],
        "skeleton_links": [[0, 1], [0, 2], [0, 3], [0, 4]],
        "sigmas": [0.05] * 5,
    }
    (directory / "metainfo.json").write_text(json.dumps(meta), encoding="utf-8")
    images, annotations = [], []
    for image_id in (1, 2):
        file_name = f"{image_id:03d}.jpg"
        cv2.imwrite(str(directory / file_name), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        images.append({"id": image_id, "file_name": file_name, "width": 64, "height": 48})
    for ann_id, image_id in enumerate((1, 2, 2), start=1):
        points = np.column_stack([rng.uniform(8, 56, 5), rng.uniform(8, 40, 5), np.full(5, 2.0)])
        annotations.append({"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": [4, 4, 56, 40],
                            "num_keypoints": 5, "keypoints": points.ravel().round(1).tolist()})
    ann_file = directory / "annotations.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations}), encoding="utf-8")
    return {"ann_file": str(ann_file), "metainfo": str(directory / "metainfo.json")}
