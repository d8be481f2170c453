"""InterHand2.6M (Moon et al., ECCV 2020) as 2D keypoints: both hands, 42 keypoints per instance.

The release stores no 2D keypoints. Three files describe each crop:

* ``InterHand2.6M_<split>_data.json`` (COCO-like): ``images`` with ``capture``, ``camera`` and
  ``frame_idx``; ``annotations`` with ``bbox`` (x, y, w, h), ``joint_valid`` (42 x [0/1]),
  ``hand_type`` (``right`` | ``left`` | ``interacting``) and ``hand_type_valid``;
* ``..._camera.json``: per capture, ``campos`` (3,), ``camrot`` (3, 3), ``focal`` (fx, fy) and
  ``princpt`` (cx, cy), each keyed by camera name;
* ``..._joint_3d.json``: per capture and frame, ``world_coord`` (42, 3) in mm.

A joint's pixel position is its pinhole projection: ``p = R (X - campos)``, ``u = fx p_x / p_z + cx``,
``v = fy p_y / p_z + cy`` (in float64; mmpose computes in float32 and adds 1e-8 to ``p_z``, which
moves a keypoint by about 1e-4 px). Keypoints 0..20 are the right hand and 21..41 the left, each
from the thumb tip to the wrist (the wrists are 20 and 41).

Two ways to make instances (``hands``):

* ``"both"``: one instance per annotation with all 42 keypoints, the keypoint set ``interhand3d``
  (its flip swaps the hands), the annotation's box cleaned as the COCO readers do (mmpose 0.x's
  clipped box, ``x2 = x + w - 1``; mmpose 1.x uses ``x2 = x + w`` unclipped, which moves the crop
  centre by half a pixel).
* ``"each"``: mmpose 0.x ``InterHand2DDataset``, which PoseBH's transfer experiment trains and
  tests on: one instance per hand that has more than 11 valid joints, with that hand's 21
  keypoints (keypoint set ``interhand2d``, no flip partners), the tightest box around its valid
  joints as box and PCK normaliser, cropped with padding 1.5.

Visibility is ``joint_valid`` with the wrist rule of both mmpose readers: a hand whose wrist (its
root) is invalid has all its joints invalid. With ``hands="both"``, and when ``hand_type_valid``
says the hand type is reliable, the joints of a hand that the type excludes (the left hand of a
``right`` crop and vice versa) are invalid too. The ``joint_valid`` of the files seen so far already
follows that rule; where a file does not, the cleared joints are counted in the loading report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from posecore._errors import ConfigError, DataError
from posecore._fileio import read_json
from posecore.data._coco import _clean_box, load_coco_json
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
from posecore.data._metainfo import load_metainfo

__all__ = ["HAND_MODES", "HAND_TYPES", "InterHand2DDataset", "project_to_pixels", "write_example"]

#: ``hand_type`` -> which hands are present, as (right, left); the instance's ``hand_type`` field.
HAND_TYPES = {"right": (1.0, 0.0), "left": (0.0, 1.0), "interacting": (1.0, 1.0)}
_HAND = 21  # keypoints per hand; the wrist is the last of each hand
#: ``hands``: both hands as one 42-keypoint instance, or each hand as a 21-keypoint instance.
HAND_MODES = ("both", "each")
_MIN_VALID_JOINTS = 11  # mmpose 0.x keeps a hand with more valid joints than this
_SINGLE_HAND_PADDING = 1.5  # mmpose 0.x crops a single hand's tightest box padded by 1.5


def project_to_pixels(world: np.ndarray, rotation: np.ndarray, position: np.ndarray, focal: np.ndarray,
                      principal_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) -> pixels (N, 2) and camera-frame depth (N,) of a pinhole camera.

    ``rotation`` (3, 3) and ``position`` (3,) place the camera (``p = R (X - position)``);
    ``focal`` and ``principal_point`` are (fx, fy) and (cx, cy) in pixels.
    """
    camera = (np.asarray(world, np.float64) - np.asarray(position, np.float64)) @ np.asarray(rotation, np.float64).T
    depth = camera[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pixels = camera[:, :2] / depth[:, None] * np.asarray(focal, np.float64)
    pixels += np.asarray(principal_point, np.float64)
    return pixels, depth


class InterHand2DDataset(TopdownDataset):
    """InterHand2.6M crops as top-down instances: both hands together (42 keypoints, one instance
    per annotation) or each hand on its own (21 keypoints, mmpose 0.x ``InterHand2DDataset``).

    Args:
        ann_file: ``InterHand2.6M_<split>_data.json``.
        camera_file: ``InterHand2.6M_<split>_camera.json``.
        joint_file: ``InterHand2.6M_<split>_joint_3d.json``.
        image_root: folder the images' ``file_name`` s are relative to (default: ``ann_file``'s).
        hands: ``"both"``: one 42-keypoint instance per annotation, box from the annotation
            (keypoint set ``interhand3d``, mmpose 1.x ``InterHand2DDoubleDataset``); ``"each"``: one
            21-keypoint instance per hand with more than 11 valid joints, its box the tightest box
            around those joints, cropped with padding 1.5 (keypoint set ``interhand2d``, mmpose 0.x
            ``InterHand2DDataset``, the PoseBH transfer experiment).
        dataset_index: index of this dataset in a multi-dataset experiment.

    Instances also carry ``hand_type`` (2,) float32 = (right present, left present) and
    ``hand_type_valid`` (float); with ``hands="each"`` also ``hand`` (``"right"`` or ``"left"``;
    ``(id, hand)`` is unique) and ``bbox_padding`` 1.5, which
    :class:`~posecore.data._transforms.GetBBoxCenterScale` applies instead of its default. What is
    left out (no valid joint, too few valid joints on a hand, an empty box) is counted.
    """

    def __init__(self, ann_file: str, camera_file: str, joint_file: str, image_root: str | None = None,
                 hands: Literal["both", "each"] = "both", dataset_index: int = 0) -> None:
        if hands not in HAND_MODES:
            raise ConfigError(f"InterHand2DDataset: hands must be one of {', '.join(map(repr, HAND_MODES))}; "
                              f"got {hands!r}")
        self.ann_file = Path(ann_file)
        self.camera_file = Path(camera_file)
        self.joint_file = Path(joint_file)
        self.image_root = Path(image_root) if image_root else self.ann_file.parent
        self.hands = hands
        meta = load_metainfo("interhand3d" if hands == "both" else "interhand2d")
        expected = 2 * _HAND if hands == "both" else _HAND
        if meta.num_keypoints != expected:
            raise DataError(f"keypoint set {meta.name!r} has {meta.num_keypoints} keypoints; "
                            f"hands={hands!r} needs {expected}")
        data = load_coco_json(self.ann_file)
        self.cameras = _load_mapping(self.camera_file, "camera file (camera_file)")
        self.joints = _load_mapping(self.joint_file, "joint file (joint_file)")
        images = self._index_images(data["images"])
        report = LoadReport(self.ann_file)
        instances: list[dict[str, Any]] = []
        ids: dict[Any, int] = {}
        for position, ann in enumerate(data["annotations"]):
            instances.extend(self._instances(position, ann, images, ids, report))
        report.finish(len(instances))
        super().__init__(meta, instances, dataset_index)

    def _index_images(self, images: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        index: dict[Any, dict[str, Any]] = {}
        positions: dict[Any, int] = {}
        for position, image in enumerate(images):
            where = f"{self.ann_file}: images[{position}] (id {image.get('id')})"
            require_fields(image, ("id", "file_name", "capture", "camera", "frame_idx"), where)
            require_unique_id(positions, image["id"], position, f"{self.ann_file}: 'images'", "image")
            index[image["id"]] = {**image, "where": where, "size": image_size_of(image, where)}
        return index

    def _instances(self, position: int, ann: dict[str, Any], images: dict[Any, dict[str, Any]],
                   ids: dict[Any, int], report: LoadReport) -> list[dict[str, Any]]:
        where = f"{self.ann_file}: annotation id {ann.get('id', f'#{position}')} (image {ann.get('image_id')})"
        require_fields(ann, ("image_id", "bbox", "joint_valid", "hand_type"), where)
        ann_id = as_integer(ann["id"], where, "id") if "id" in ann else position
        if "id" in ann:
            require_unique_id(ids, ann_id, position, f"{self.ann_file}: 'annotations'", "annotation")
        image = images.get(ann["image_id"])
        if image is None:
            raise DataError(f"{where} names unknown image_id {ann['image_id']!r} "
                            f"(not in the 'images' of {self.ann_file})")
        hand_type = HAND_TYPES.get(ann["hand_type"])
        if hand_type is None:
            raise DataError(f"{where}: field 'hand_type' is {ann['hand_type']!r}; "
                            f"expected one of {', '.join(HAND_TYPES)}")
        hand_type_valid = as_number(ann.get("hand_type_valid", 1), where, "hand_type_valid")
        keypoints, depth = self._project(image, where)
        # mmpose 0.x (hands="each") takes joint_valid as it is; the hand-type rule is posecore's
        # guard for the two-hand instances
        valid = self._joint_valid(ann, hand_type, hand_type_valid if self.hands == "both" else 0.0, where, report)
        behind = valid.astype(bool) & ~(depth > 0)
        if behind.any():  # a projection through the camera centre is meaningless
            report.note("joint(s) at or behind the camera (made invalid)", int(behind.sum()), example=where)
            valid[behind] = 0.0
        keypoints = np.nan_to_num(keypoints).astype(np.float32)
        common = {
            "image_path": str(self.image_root / image["file_name"]),
            "image_size": image["size"],
            "image_id": ann["image_id"],
            "id": ann_id,
            "category_id": as_integer(ann.get("category_id", 1), where, "category_id"),
            "bbox_score": 1.0,
            "hand_type_valid": hand_type_valid,
        }
        if self.hands == "both":
            bbox = _clean_box(ann["bbox"], image["size"], where)
            if bbox is None:
                report.skip("with box of zero area")
                return []
            if not valid.any():
                report.skip("with no labelled keypoint")
                return []
            self._note_outside(keypoints, valid, image["size"], where, report)
            return [{**common, "keypoints": keypoints, "visibility": valid, "bbox": bbox,
                     "hand_type": np.array(hand_type, dtype=np.float32)}]
        instances = []
        for hand, name in enumerate(("right", "left")):
            joints = slice(hand * _HAND, (hand + 1) * _HAND)
            hand_valid, hand_points = valid[joints].copy(), keypoints[joints].copy()
            if hand_valid.sum() <= _MIN_VALID_JOINTS:
                report.skip(f"hand(s) with {_MIN_VALID_JOINTS} or fewer valid joints")
                continue
            bbox = _tightest_box(hand_points, hand_valid, image["size"])
            if bbox is None:
                report.skip("with box of zero area")
                continue
            self._note_outside(hand_points, hand_valid, image["size"], where, report)
            instances.append({**common, "keypoints": hand_points, "visibility": hand_valid, "bbox": bbox,
                              "hand": name, "hand_type": np.array(HAND_TYPES[name], dtype=np.float32),
                              "bbox_padding": _SINGLE_HAND_PADDING})
        return instances

    @staticmethod
    def _note_outside(keypoints: np.ndarray, valid: np.ndarray, size: tuple[float, float] | None, where: str,
                      report: LoadReport) -> None:
        if size is None:
            return
        width, height = size
        x, y = keypoints[valid > 0, 0], keypoints[valid > 0, 1]
        outside = int(((x < 0) | (y < 0) | (x >= width) | (y >= height)).sum())
        if outside:
            report.note("keypoint(s) outside their image", outside, example=where)

    def _project(self, image: dict[str, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
        capture, camera, frame = str(image["capture"]), str(image["camera"]), str(image["frame_idx"])
        cameras = self.cameras.get(capture)
        if not isinstance(cameras, dict):
            raise DataError(f"{self.camera_file}: no capture {capture!r} (needed by {where})")
        params = {}
        shapes = {"campos": (3,), "camrot": (3, 3), "focal": (2,), "princpt": (2,)}
        for key, shape in shapes.items():
            if not isinstance(cameras.get(key), dict) or camera not in cameras[key]:
                raise DataError(f"{self.camera_file}: capture {capture!r} has no {key!r} for camera {camera!r} "
                                f"(needed by {where})")
            values = as_numbers(cameras[key][camera], f"{self.camera_file}: capture {capture!r} camera {camera!r}",
                                key, count=int(np.prod(shape)))
            params[key] = values.reshape(shape)
        frames = self.joints.get(capture)
        record = frames.get(frame) if isinstance(frames, dict) else None
        if not isinstance(record, dict) or "world_coord" not in record:
            raise DataError(f"{self.joint_file}: no 'world_coord' for capture {capture!r}, frame {frame!r} "
                            f"(needed by {where})")
        joints_where = f"{self.joint_file}: capture {capture!r} frame {frame!r}"
        world = as_numbers(record["world_coord"], joints_where, "world_coord")
        if world.size != 3 * 2 * _HAND or np.ndim(record["world_coord"]) != 2:
            raise DataError(f"{joints_where} has world_coord of shape {np.shape(record['world_coord'])} but "
                            f"metainfo 'interhand3d' declares {2 * _HAND} keypoints of [x, y, z] (both hands; needed by {where})")
        return project_to_pixels(world.reshape(-1, 3), params["camrot"], params["campos"], params["focal"],
                                 params["princpt"])

    @staticmethod
    def _joint_valid(ann: dict[str, Any], hand_type: tuple[float, float], hand_type_valid: float, where: str,
                     report: LoadReport) -> np.ndarray:
        valid = as_numbers(ann["joint_valid"], where, "joint_valid").astype(np.float32)
        if len(valid) != 2 * _HAND:
            raise DataError(f"{where}: field 'joint_valid' has {len(valid)} entries but metainfo 'interhand3d' "
                            f"declares {2 * _HAND} keypoints (both hands)")
        valid = np.clip(valid, 0.0, 1.0)
        for hand, present in enumerate(hand_type):
            joints = slice(hand * _HAND, (hand + 1) * _HAND)
            valid[joints] *= valid[(hand + 1) * _HAND - 1]  # an invalid wrist invalidates its hand
            if hand_type_valid and not present and valid[joints].any():
                report.note("joint(s) valid on a hand that hand_type excludes (made invalid)",
                            int(valid[joints].sum()), example=where)
                valid[joints] = 0.0
        return valid


def _tightest_box(keypoints: np.ndarray, valid: np.ndarray, size: tuple[float, float] | None) -> np.ndarray | None:
    """x1, y1, x2, y2 of the valid keypoints, as mmpose 0.x builds it: the running minimum starts
    at the image's width and height and the maximum at 0, so a box never starts right of the image
    or ends left of it. ``None`` if the box is empty."""
    width, height = size if size is not None else (np.inf, np.inf)
    points = keypoints[valid > 0]
    x1, y1 = min(float(width), float(points[:, 0].min())), min(float(height), float(points[:, 1].min()))
    x2, y2 = max(0.0, float(points[:, 0].max())), max(0.0, float(points[:, 1].max()))
    if not (x2 > x1 and y2 > y1):
        return None
    return np.array([x1, y1, x2, y2], dtype=np.float32)


def _load_mapping(path: Path, what: str) -> dict[str, Any]:
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise DataError(f"{path}: the {what} is a JSON object keyed by capture id; got a {type(data).__name__}")
    return data


def write_example(directory: Path) -> dict[str, Any]:
    """Write a tiny InterHand2.6M dataset (3 crops: right, left, interacting) for contract checks."""
    import cv2

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    width, height, focal = 64, 48, 100.0
    rotation = np.eye(3)
    cameras: dict[str, Any] = {}
    joints: dict[str, Any] = {}
    images, annotations = [], []
    for index, hand_type in enumerate(("right", "left", "interacting")):
        capture, camera, frame = str(index), f"40000{index}", 10 + index
        position = np.array([0.0, 0.0, -500.0])
        cameras[capture] = {"campos": {camera: position.tolist()}, "camrot": {camera: rotation.tolist()},
                            "focal": {camera: [focal, focal]}, "princpt": {camera: [width / 2, height / 2]}}
        # Points about 500 mm in front of the camera, within +-12 px of the image centre.
        world = np.column_stack([rng.uniform(-60, 60, 42), rng.uniform(-50, 50, 42), rng.uniform(-20, 20, 42)])
        joints[capture] = {str(frame): {"world_coord": world.round(2).tolist(), "hand_type": hand_type,
                                        "hand_type_valid": True}}
        valid = np.ones(42, dtype=int)
        if hand_type == "right":
            valid[21:] = 0
        elif hand_type == "left":
            valid[:21] = 0
        file_name = f"image{frame}.jpg"
        cv2.imwrite(str(directory / file_name), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        image_id = 100 + index
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height, "capture": index,
                       "subject": 0, "seq_name": "example", "camera": camera, "frame_idx": frame})
        annotations.append({"id": image_id, "image_id": image_id, "bbox": [8.0, 6.0, 48.0, 36.0],
                            "joint_valid": [[int(v)] for v in valid], "hand_type": hand_type, "hand_type_valid": 1})
    ann_file, camera_file, joint_file = (directory / f"example_{name}.json" for name in ("data", "camera", "joint_3d"))
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations}), encoding="utf-8")
    camera_file.write_text(json.dumps(cameras), encoding="utf-8")
    joint_file.write_text(json.dumps(joints), encoding="utf-8")
    return {"ann_file": str(ann_file), "camera_file": str(camera_file), "joint_file": str(joint_file)}
