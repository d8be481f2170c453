"""COCO-format keypoint datasets: COCO, COCO-WholeBody, OCHuman, CrowdPose, AIC, AP-10K,
APT-36K, Animal-Pose, Human-Art, and any COCO-style file with one metainfo file.

All of them store ``images``, ``annotations`` (``keypoints`` as flat x, y, v triplets, ``bbox``
as x, y, w, h) and ``categories``. Their quirks are handled here, once: AIC has no ``area`` or
``iscrowd``; CrowdPose counts only v == 2 in ``num_keypoints`` and carries ``crowdIndex`` per
image; COCO-WholeBody spreads its 133 keypoints over five fields; Human-Art has a 21-keypoint
field and image paths under a ``HumanArt/images/`` prefix. Boxes follow mmpose 0.x: clipped to
the image (``x2 = min(W - 1, x1 + w - 1)``), and an instance is kept when its box has positive
size and it has a labelled keypoint (``num_keypoints > 0`` where the file gives it).
Boxes come from the ground truth or from a detection-results file above a score threshold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from posecore._errors import DataError
from posecore._fileio import read_json
from posecore.data._dataset import (
    LoadReport,
    TopdownDataset,
    as_integer,
    as_number,
    as_numbers,
    image_size_of,
    require_fields,
    require_unique_id,
)
from posecore.data._metainfo import DatasetMeta, load_metainfo

__all__ = [
    "WHOLEBODY_FIELDS",
    "CocoKeypointDataset",
    "aic",
    "animalpose",
    "ap10k",
    "apt36k",
    "coco",
    "coco_style",
    "coco_wholebody",
    "crowdpose",
    "humanart",
    "keypoint_triplets",
    "load_coco_json",
    "ochuman",
    "write_example",
]

#: COCO-WholeBody's 133 keypoints: body 17, foot 6, face 68, left hand 21, right hand 21.
WHOLEBODY_FIELDS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")


def load_coco_json(path: str | Path, *, require_annotations: bool = True) -> dict[str, Any]:
    """A COCO annotation file, with clear errors for a missing, broken or non-COCO file.

    ``require_annotations=False`` also takes an image-info file (COCO test-dev's
    ``image_info_test-dev2017.json``: images, no annotations), read as having none."""
    path = Path(path)
    data = read_json(path, "annotation file")
    if not isinstance(data, dict):
        raise DataError(f"{path}: a COCO file is a JSON object with 'images' and 'annotations'; got a {type(data).__name__}")
    if not require_annotations and "annotations" not in data:
        data = {**data, "annotations": []}  # a copy: the parsed document may be shared (parsing_each_file_once)
    for key in ("images", "annotations"):
        if key not in data:
            raise DataError(f"{path}: top-level field {key!r} is missing (is this a COCO keypoint file? An image-info "
                            "file such as COCO test-dev's is read with a bbox_file of detections)")
        if not isinstance(data[key], list):
            raise DataError(f"{path}: top-level field {key!r} must be a list of objects; got a {type(data[key]).__name__}")
        for position, record in enumerate(data[key]):
            if not isinstance(record, dict):
                raise DataError(f"{path}: {key}[{position}] must be an object; got a {type(record).__name__}")
    return data


class CocoKeypointDataset(TopdownDataset):
    """Top-down instances of a COCO-format keypoint file.

    Args:
        ann_file: the COCO json.
        metainfo: the keypoint set: a built-in name (``"coco"``) or a JSON/YAML file.
        image_root: folder the images' ``file_name`` s are relative to (default: the json's).
        bbox_file: detection results (a JSON list of ``{image_id, bbox: [x, y, w, h], score}``)
            to use instead of the ground-truth boxes, as the papers' test tables do. Their
            instances have no keypoints and ids -1, -2, ... (position in the file), so they
            never collide with annotation ids.
        bbox_score_thr: keep detections with a score above this.
        keypoint_fields: annotation fields concatenated into the K keypoints.
        strip_prefix: removed from the start of every ``file_name`` (Human-Art's files name
            ``HumanArt/images/...`` while the images sit in ``<image_root>/...``).
        dataset_index: index of this dataset in a multi-dataset experiment.
    """

    def __init__(
        self,
        ann_file: str,
        metainfo: str,
        image_root: str | None = None,
        bbox_file: str | None = None,
        bbox_score_thr: float = 0.0,
        keypoint_fields: Sequence[str] = ("keypoints",),
        strip_prefix: str = "",
        dataset_index: int = 0,
    ) -> None:
        self.ann_file = Path(ann_file)
        self.image_root = Path(image_root) if image_root else self.ann_file.parent
        self.keypoint_fields = tuple(keypoint_fields)
        self.strip_prefix = strip_prefix
        meta = load_metainfo(metainfo)
        data = load_coco_json(self.ann_file, require_annotations=bbox_file is None)
        #: whether ann_file holds keypoint annotations to score against (not so for test-dev's image info)
        self.has_ground_truth = bool(data["annotations"])
        self.images = self._index_images(data["images"])
        report = LoadReport(self.ann_file if bbox_file is None else bbox_file)
        if bbox_file is None:
            instances = self._ground_truth(data["annotations"], meta, report)
        else:
            instances = self._detections(Path(bbox_file), bbox_score_thr, meta.num_keypoints, report)
        report.finish(len(instances))
        super().__init__(meta, instances, dataset_index)

    def _index_images(self, images: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        index: dict[Any, dict[str, Any]] = {}
        positions: dict[Any, int] = {}
        for position, image in enumerate(images):
            where = f"{self.ann_file}: images[{position}]"
            require_fields(image, ("id", "file_name"), where)
            require_unique_id(positions, image["id"], position, f"{self.ann_file}: 'images'", "image")
            file_name = str(image["file_name"])
            if self.strip_prefix and file_name.startswith(self.strip_prefix):
                file_name = file_name[len(self.strip_prefix):]
            index[image["id"]] = {"path": str(self.image_root / file_name), "size": image_size_of(image, where)}
        return index

    def _image(self, image_id: Any, where: str) -> dict[str, Any]:
        try:
            return self.images[image_id]
        except KeyError:
            raise DataError(f"{where} names unknown image_id {image_id!r} (not in the 'images' of {self.ann_file})") from None

    def _ground_truth(self, annotations: list[dict[str, Any]], meta: DatasetMeta, report: LoadReport) -> list[dict[str, Any]]:
        instances = []
        ids: dict[Any, int] = {}
        for position, ann in enumerate(annotations):
            where = f"{self.ann_file}: annotation id {ann.get('id', f'#{position}')} (image {ann.get('image_id')})"
            require_fields(ann, ("image_id", "bbox", *self.keypoint_fields), where)
            ann_id = as_integer(ann["id"], where, "id") if "id" in ann else position
            if "id" in ann:
                require_unique_id(ids, ann_id, position, f"{self.ann_file}: 'annotations'", "annotation")
            category_id = as_integer(ann.get("category_id", 1), where, "category_id")
            image = self._image(ann["image_id"], where)
            keypoints = self._keypoints(ann, meta, where)
            labelled = keypoints[:, 2] > 0
            counted = self.keypoint_fields == ("keypoints",) and "num_keypoints" in ann
            count = as_integer(ann["num_keypoints"], where, "num_keypoints") if counted else int(labelled.sum())
            bbox = _clean_box(ann["bbox"], image["size"], where)
            area = as_number(ann["area"], where, "area") if "area" in ann else 1.0
            if bbox is None or area <= 0:
                report.skip("with box of zero area")
                continue
            if not labelled.any():
                report.skip("with no labelled keypoint")
                continue
            if count == 0:  # skipped as mmpose 0.x skips it, but the reason is the count, not the labels
                report.skip("with num_keypoints 0 although keypoints are labelled (v > 0): the file's count disagrees "
                            "with its labels (CrowdPose's counts only v = 2); correct num_keypoints to use them",
                            example=where)
                continue
            if image["size"] is not None:
                width, height = image["size"]
                x, y = keypoints[labelled, 0], keypoints[labelled, 1]
                outside = int(((x < 0) | (y < 0) | (x >= width) | (y >= height)).sum())
                if outside:
                    report.note("keypoint(s) outside their image", outside, example=where)
            instances.append(self._instance(ann["image_id"], image, ann_id, category_id, keypoints, bbox, 1.0))
        return instances

    def _detections(self, bbox_file: Path, threshold: float, k: int, report: LoadReport) -> list[dict[str, Any]]:
        detections = load_detections(bbox_file)
        instances = []
        for position, det in enumerate(detections):
            if not isinstance(det, dict):
                raise DataError(f"{bbox_file}: detection #{position} must be an object {{image_id, bbox, score}}; "
                                f"got a {type(det).__name__}")
            where = f"{bbox_file}: detection #{position} (image {det.get('image_id')})"
            require_fields(det, ("image_id", "bbox", "score"), where)
            score = as_number(det["score"], where, "score")
            image = self._image(det["image_id"], where)
            x, y, w, h = as_numbers(det["bbox"], where, "bbox", count=4)
            category_id = as_integer(det.get("category_id", 1), where, "category_id")
            if score <= threshold:
                report.skip(f"detection(s) with score <= {threshold}")
                continue
            if w <= 0 or h <= 0:
                report.skip("detection(s) with box of zero area")
                continue
            # Detector boxes are used as given (mmpose 0.x): not clipped, x2 = x + w.
            bbox = np.array([x, y, x + w, y + h], dtype=np.float32)
            instances.append(self._instance(det["image_id"], image, -1 - position, category_id,
                                            np.zeros((k, 3), np.float32), bbox, score))
        return instances

    def _keypoints(self, ann: dict[str, Any], meta: DatasetMeta, where: str) -> np.ndarray:
        keypoints = np.concatenate([keypoint_triplets(ann[field], where, field) for field in self.keypoint_fields])
        if len(keypoints) != meta.num_keypoints:
            fields = " + ".join(self.keypoint_fields)
            raise DataError(f"{where} has {len(keypoints)} keypoints but metainfo {meta.name!r} declares "
                            f"{meta.num_keypoints} (fields {fields}; wrong metainfo for this file?)")
        return keypoints

    @staticmethod
    def _instance(image_id: Any, image: dict[str, Any], ann_id: int, category_id: int, keypoints: np.ndarray,
                  bbox: np.ndarray, score: float) -> dict[str, Any]:
        return {
            "image_path": image["path"],
            "image_size": image["size"],
            "image_id": image_id,
            "id": ann_id,
            "category_id": category_id,
            "keypoints": np.ascontiguousarray(keypoints[:, :2]),
            "visibility": np.minimum(keypoints[:, 2], 1.0),
            "bbox": bbox,
            "bbox_score": score,
        }


def load_detections(path: Path) -> list[dict[str, Any]]:
    """A detection-results file: a JSON list of ``{image_id, bbox, score}``."""
    detections = read_json(path, "detection file (bbox_file)")
    if not isinstance(detections, list):
        raise DataError(f"{path}: a detection file is a JSON list of {{image_id, bbox, score}}")
    return detections


def keypoint_triplets(value: Any, where: str, field: str = "keypoints") -> np.ndarray:
    """A flat ``[x, y, v, ...]`` field as (K, 3) float32; anything that is not finite numbers in
    triplets, or a negative ``v``, is a :class:`DataError` naming the field."""
    values = as_numbers(value, where, field)
    if values.size % 3:
        raise DataError(f"{where}: field {field!r} must hold x, y, v triplets; it has {values.size} numbers")
    values = values.reshape(-1, 3)
    negative = np.flatnonzero(values[:, 2] < 0)
    if len(negative):
        raise DataError(f"{where}: field {field!r} gives keypoint {int(negative[0])} the visibility "
                        f"{values[negative[0], 2]:g}; v must be >= 0 (0: not labelled, 1: occluded, 2: visible)")
    return values.astype(np.float32)


def _clean_box(bbox: Sequence[float], size: tuple[float, float] | None, where: str) -> np.ndarray | None:
    """x, y, w, h -> x1, y1, x2, y2 clipped to the image as mmpose 0.x does; ``None`` if empty."""
    x, y, w, h = (float(v) for v in as_numbers(bbox, where, "bbox", count=4))
    width, height = size if size is not None else (np.inf, np.inf)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1, x1 + max(0.0, w - 1))
    y2 = min(height - 1, y1 + max(0.0, h - 1))
    if not (w > 0 and h > 0 and x2 > x1 and y2 > y1):
        return None
    return np.array([x1, y1, x2, y2], dtype=np.float32)


# -- registered readers: one per dataset, with its keypoint set as the default ---------------


def coco_style(ann_file: str, metainfo: str, image_root: str | None = None, bbox_file: str | None = None,
               bbox_score_thr: float = 0.0, dataset_index: int = 0) -> CocoKeypointDataset:
    """Any COCO-format keypoint file, described by one metainfo JSON/YAML file (no code)."""
    return CocoKeypointDataset(ann_file, metainfo, image_root, bbox_file, bbox_score_thr, dataset_index=dataset_index)


def _reader(keypoint_set: str, doc: str) -> Any:
    def factory(ann_file: str, image_root: str | None = None, bbox_file: str | None = None,
                bbox_score_thr: float = 0.0, dataset_index: int = 0) -> CocoKeypointDataset:
        return CocoKeypointDataset(ann_file, keypoint_set, image_root, bbox_file, bbox_score_thr,
                                   dataset_index=dataset_index)

    factory.__name__ = factory.__qualname__ = keypoint_set
    factory.__doc__ = doc
    return factory


coco = _reader("coco", "COCO person keypoints (17).")
ochuman = _reader("ochuman", "OCHuman (17, COCO order; val/test only; RLE segmentations are ignored).")
crowdpose = _reader("crowdpose", "CrowdPose (14); evaluate with coco_ap iou_type='keypoints_crowd'.")
aic = _reader("aic", "AI Challenger (14); no area in the file: evaluate with coco_ap use_area=False.")
ap10k = _reader("ap10k", "AP-10K animals (17, 54 species categories).")
apt36k = _reader("apt36k", "APT-36K animals (17, AP-10K keypoints).")
animalpose = _reader("animalpose", "Animal-Pose (20).")


def humanart(ann_file: str, image_root: str | None = None, keypoint_set: Literal[17, 21] = 17,
             bbox_file: str | None = None, bbox_score_thr: float = 0.0, strip_prefix: str = "",
             dataset_index: int = 0) -> CocoKeypointDataset:
    """Human-Art: the COCO 17 keypoints, or 21 (``keypoints_21``: plus fingers and toes)."""
    fields = ("keypoints",) if keypoint_set == 17 else ("keypoints_21",)
    return CocoKeypointDataset(ann_file, "humanart" if keypoint_set == 17 else "humanart21", image_root, bbox_file,
                               bbox_score_thr, fields, strip_prefix, dataset_index)


def coco_wholebody(ann_file: str, image_root: str | None = None, bbox_file: str | None = None,
                   bbox_score_thr: float = 0.0, dataset_index: int = 0) -> CocoKeypointDataset:
    """COCO-WholeBody v1.0: body, foot, face, left and right hand joined into 133 keypoints."""
    return CocoKeypointDataset(ann_file, "coco_wholebody", image_root, bbox_file, bbox_score_thr, WHOLEBODY_FIELDS,
                               dataset_index=dataset_index)


def write_example(directory: Path, keypoint_set: str | None = None) -> dict[str, Any]:
    """Write a tiny COCO-format dataset (2 images, 3 instances) for contract checks.

    With ``keypoint_set`` (a built-in name) the file has that set's K keypoints and the returned
    arguments suit that set's reader; otherwise it has 5 keypoints and its own metainfo file.
    """
    import cv2

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    if keypoint_set is None:
        meta = {"dataset_name": "example", "keypoint_names": ["head", "left_hand", "right_hand", "left_foot", "right_foot"],
                "flip_indices": [0, 2, 1, 4, 3], "skeleton_links": [[0, 1], [0, 2], [0, 3], [0, 4]], "sigmas": [0.05] * 5}
        (directory / "metainfo.json").write_text(json.dumps(meta), encoding="utf-8")
        k = 5
    else:
        k = load_metainfo(keypoint_set).num_keypoints
    images, annotations = [], []
    for image_id in (1, 2):
        file_name = f"{image_id:03d}.jpg"
        cv2.imwrite(str(directory / file_name), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        images.append({"id": image_id, "file_name": file_name, "width": 64, "height": 48})
    for ann_id, image_id in enumerate((1, 2, 2), start=1):
        points = np.column_stack([rng.uniform(8, 56, k), rng.uniform(8, 40, k), np.full(k, 2.0)]).round(1)
        ann = {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": [4, 4, 56, 40], "area": 56 * 40,
               "iscrowd": 0, "num_keypoints": k, "keypoints": points.ravel().tolist()}
        if keypoint_set == "coco_wholebody":
            bounds = np.cumsum([0, 17, 6, 68, 21, 21])
            ann.update({field: points[a:b].ravel().tolist() for field, a, b in zip(WHOLEBODY_FIELDS, bounds[:-1], bounds[1:], strict=True)})
        annotations.append(ann)
    ann_file = directory / "annotations.json"
    categories = [{"id": 1, "name": "person", "keypoints": [], "skeleton": []}]
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}),
                        encoding="utf-8")
    if keypoint_set is None:
        return {"ann_file": str(ann_file), "metainfo": str(directory / "metainfo.json")}
    return {"ann_file": str(ann_file)}
