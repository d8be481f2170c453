"""MPII Human Pose (Andriluka et al., CVPR 2014): 16 body keypoints, evaluated with PCKh.

Reads the json that HRNet and mmpose distribute (``mpii_train.json``, ``mpii_val.json``): a list of
people ``{image, center: [x, y], scale, joints: 16 x [x, y], joints_vis: 16 x {0, 1}}`` where
``scale`` is the person's height / 200 px and every coordinate is in MATLAB's 1-based pixel frame.
There is no box; mmpose 0.x's ``TopDownMpiiDataset`` builds the crop from the centre and scale, and
this reader reproduces that crop exactly:

* the centre moves down by ``15 * scale`` px (so the legs are not cut), then everything moves to
  the 0-based frame: ``center - 1`` and ``joints - 1``;
* the stored ``bbox`` is the square of side ``scale * 200`` around that centre, so the pipeline's
  usual 1.25 padding (:class:`~posecore.data._transforms.GetBBoxCenterScale`) gives mmpose 0.x's
  ``scale * 1.25 * 200`` crop (MPII configs use square 256 x 256 inputs, so the aspect fix is a no-op);
* an entry whose centre is unknown (``center[0] == -1``) is neither moved nor enlarged by mmpose;
  its box is stored ``1.25`` times smaller so that the padded crop is again the original's.

PCKh needs each person's head size. With ``headbox_file`` (the layout of HRNet's ``gt_valid.mat``
and mmpose's ``mpii_gt_val.mat``: ``headboxes_src`` of shape (2, 2, N), one column per json entry,
in the same order) every instance gets ``head_size = 0.6 * ||headbox[1] - headbox[0]||`` (the
``SC_BIAS`` of the MATLAB evaluation; a length, so the 1-based frame does not matter).

``image_id`` is the number in the image's file name (MPII names images ``005808361.jpg``), as in
mmpose 1.x; should two names map to one number, images are numbered in order of first
appearance instead. ``id`` is the entry's position in the json. The json has no image sizes, so
only keypoints at negative coordinates can be reported as outside their image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from posecore._errors import DataError
from posecore._fileio import read_json
from posecore.data._dataset import LoadReport, TopdownDataset, require_fields
from posecore.data._metainfo import DatasetMeta, load_metainfo

__all__ = ["HEAD_SIZE_FACTOR", "MpiiDataset", "load_head_sizes", "write_example"]

#: PCKh's head size is this fraction of the head box diagonal (``SC_BIAS`` in the MPII evaluation).
HEAD_SIZE_FACTOR = 0.6
#: mmpose 0.x moves the person centre down by this many pixels per unit of scale.
_CENTER_SHIFT = 15.0
#: MPII's ``scale`` unit, in pixels.
_PIXEL_STD = 200.0
#: mmpose 0.x enlarges the box inside the dataset; posecore's pipeline pads by the same factor.
_PADDING = 1.25
_FIELDS = ("image", "center", "scale", "joints", "joints_vis")


class MpiiDataset(TopdownDataset):
    """MPII top-down instances from an HRNet/mmpose json, with PCKh head sizes on request.

    Args:
        ann_file: the json list of people (``mpii_train.json`` / ``mpii_val.json``).
        image_root: folder of the images (default: the json's folder).
        headbox_file: ``mpii_gt_val.mat`` aligned 1:1 with ``ann_file``; adds ``head_size``.
        dataset_index: index of this dataset in a multi-dataset experiment.

    Instances carry ``head_size`` when ``headbox_file`` is given. ``image_size`` is ``None``: the
    json does not state it.
    """

    def __init__(self, ann_file: str, image_root: str | None = None, headbox_file: str | None = None,
                 dataset_index: int = 0) -> None:
        self.ann_file = Path(ann_file)
        self.image_root = Path(image_root) if image_root else self.ann_file.parent
        meta = load_metainfo("mpii")
        entries = _load_entries(self.ann_file)
        head_sizes = load_head_sizes(Path(headbox_file), len(entries), self.ann_file) if headbox_file else None
        image_ids = _image_ids([str(entry.get("image", "")) if isinstance(entry, dict) else "" for entry in entries])
        report = LoadReport(self.ann_file)
        instances = []
        for position, entry in enumerate(entries):
            instance = self._instance(position, entry, image_ids, meta, report)
            if instance is None:
                continue
            if head_sizes is not None:
                instance["head_size"] = float(head_sizes[position])
            instances.append(instance)
        report.finish(len(instances))
        super().__init__(meta, instances, dataset_index)

    def _instance(self, position: int, entry: Any, image_ids: dict[str, int], meta: DatasetMeta,
                  report: LoadReport) -> dict[str, Any] | None:
        if not isinstance(entry, dict):
            raise DataError(f"{self.ann_file}: entry #{position} must be an object with {', '.join(_FIELDS)}; "
                            f"got a {type(entry).__name__}")
        where = f"{self.ann_file}: entry #{position} (image {entry.get('image')!r})"
        require_fields(entry, _FIELDS, where)
        if not isinstance(entry["image"], str) or not entry["image"]:
            raise DataError(f"{where}: field 'image' must be the image's file name; got {entry['image']!r}")
        k = meta.num_keypoints
        joints = _array(entry["joints"], where, "joints")
        visible = _array(entry["joints_vis"], where, "joints_vis").reshape(-1)
        if joints.ndim != 2 or joints.shape[1] < 2 or len(joints) != k:
            count = len(joints) if joints.ndim else 0
            raise DataError(f"{where} has {count} joints (field 'joints', shape {joints.shape}) but metainfo "
                            f"{meta.name!r} declares {k} keypoints of [x, y]")
        if len(visible) != k:
            raise DataError(f"{where} has {len(visible)} values in 'joints_vis' but metainfo {meta.name!r} "
                            f"declares {k}")
        center = _array(entry["center"], where, "center").reshape(-1)
        if center.shape != (2,):
            raise DataError(f"{where}: field 'center' must be [x, y]; got {entry['center']!r}")
        scales = _array(entry["scale"], where, "scale").reshape(-1)
        if scales.size != 1:
            raise DataError(f"{where}: field 'scale' must be one number (person height / 200 px); "
                            f"got {entry['scale']!r}")
        scale = float(scales[0])
        if not scale > 0:
            report.skip("with box of zero area (scale <= 0)", example=where)
            return None
        side = scale * _PIXEL_STD
        if center[0] != -1:
            center = center + (0.0, _CENTER_SHIFT * scale)
        else:  # mmpose 0.x neither shifts nor pads such an entry; undo the pipeline's padding up front
            side /= _PADDING
        center = center - 1.0
        keypoints = (joints[:, :2] - 1.0).astype(np.float32)
        visibility = (visible > 0).astype(np.float32)
        if not visibility.any():
            report.note("with no visible joint", example=where)
        outside = int(((keypoints[visibility > 0] < 0).any(axis=1)).sum())
        if outside:
            report.note("keypoint(s) outside their image", outside, example=where)
        half = side / 2.0
        return {
            "image_path": str(self.image_root / entry["image"]),
            "image_size": None,
            "image_id": image_ids[str(entry["image"])],
            "id": position,
            "category_id": 1,
            "keypoints": keypoints,
            "visibility": visibility,
            "bbox": np.array([center[0] - half, center[1] - half, center[0] + half, center[1] + half], np.float32),
            "bbox_score": 1.0,
        }


def _load_entries(path: Path) -> list[Any]:
    data = read_json(path, "annotation file")
    if not isinstance(data, list):
        raise DataError(f"{path}: an MPII json (HRNet/mmpose layout) is a list of people "
                        f"{{image, center, scale, joints, joints_vis}}; got a {type(data).__name__}")
    return data


def _array(value: Any, where: str, field: str) -> np.ndarray:
    """``value`` as a float64 array of its own shape; ``null``, NaN, infinities and text are errors."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: field {field!r} must hold numbers; got {value!r}") from None
    if not np.isfinite(array).all():
        raise DataError(f"{where}: field {field!r} holds values that are not finite numbers (null, NaN or "
                        f"infinity); got {value!r}")
    return array


def _image_ids(names: list[str]) -> dict[str, int]:
    """The number in each file name, or the order of first appearance when that is not unique."""
    unique = list(dict.fromkeys(names))
    stems = [Path(name).stem for name in unique]
    if all(stem.isdigit() for stem in stems) and len({int(stem) for stem in stems}) == len(stems):
        return {name: int(stem) for name, stem in zip(unique, stems, strict=True)}
    return {name: index for index, name in enumerate(unique)}


def load_head_sizes(path: Path, count: int, ann_file: Path | str) -> np.ndarray:
    """PCKh head sizes (N,) from ``headboxes_src`` (2, 2, N) of an ``mpii_gt_val.mat`` file.

    ``count`` is the number of json entries the file must be aligned with; a different N is an
    error (the full 2958-person file does not fit a subset json, for instance).
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except FileNotFoundError:
        raise DataError(f"head box file (headbox_file) not found: {path}") from None
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError... for a broken file
        raise DataError(f"head box file {path} cannot be read as a MATLAB .mat file: {exc}") from exc
    if "headboxes_src" not in mat:
        keys = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise DataError(f"{path}: variable 'headboxes_src' is missing (variables: {keys}); "
                        "headbox_file must have the layout of mpii_gt_val.mat")
    boxes = np.asarray(mat["headboxes_src"], dtype=np.float64)
    if boxes.ndim == 2 and boxes.shape == (2, 2):
        boxes = boxes[:, :, None]  # MATLAB drops a trailing singleton dimension
    if boxes.ndim != 3 or boxes.shape[:2] != (2, 2):
        raise DataError(f"{path}: 'headboxes_src' must have shape (2, 2, N) ([[x1, y1], [x2, y2]] per person); "
                        f"got {boxes.shape}")
    if boxes.shape[2] != count:
        raise DataError(f"{path} holds head boxes of {boxes.shape[2]} people but {ann_file} lists {count}; "
                        "headbox_file must be aligned 1:1 with ann_file (same people, same order)")
    return HEAD_SIZE_FACTOR * np.linalg.norm(boxes[1] - boxes[0], axis=0)


def write_example(directory: Path) -> dict[str, Any]:
    """Write a tiny MPII dataset (2 images, 3 people, json + head-box .mat) for contract checks."""
    import cv2
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    entries, headboxes = [], []
    for image, people in (("000000001.jpg", 1), ("000000002.jpg", 2)):
        cv2.imwrite(str(directory / image), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
        for person in range(people):
            cx = 25.0 + 30.0 * person
            joints = np.column_stack([rng.uniform(cx - 10, cx + 10, 16), rng.uniform(10, 50, 16)]).round(1)
            visible = np.ones(16, dtype=int)
            visible[0] = person  # one missing ankle, stored as MPII does
            joints[visible == 0] = -1
            entries.append({"image": image, "center": [cx, 28.0], "scale": 0.2, "joints": joints.tolist(),
                            "joints_vis": visible.tolist()})
            headboxes.append([[cx - 4, 8.0], [cx + 4, 16.0]])
    ann_file = directory / "mpii_val.json"
    ann_file.write_text(json.dumps(entries), encoding="utf-8")
    headbox_file = directory / "mpii_gt_val.mat"
    savemat(str(headbox_file), {"headboxes_src": np.transpose(np.array(headboxes), (1, 2, 0))})
    return {"ann_file": str(ann_file), "headbox_file": str(headbox_file)}
