"""Reading ground-truth and prediction files for evaluation, with errors that say how to fix them.

Ground truth:
    * COCO-style keypoint annotation files (COCO, CrowdPose, AIC, OCHuman, AP-10K, Animal-Pose,
      Human-Art, COCO-WholeBody, MP-100): :func:`load_coco_keypoint_annotations`.
    * MPII's ``mpii_gt_val.mat`` layout (``pos_gt_src`` 16x2xN, ``jnt_missing`` 16xN,
      ``headboxes_src`` 2x2xN): :func:`load_mpii_ground_truth`.

Predictions:
    * the COCO results layout, a JSON list of ``{image_id, category_id, keypoints: [x, y, s] * K,
      score}`` with optional ``id`` (the GT annotation the prediction is for) and ``bbox``
      (``[x, y, w, h]``): :func:`load_coco_predictions`;
    * for MPII, ``{"pos_pred": N x 16 x 2}`` or a COCO results list aligned with the GT columns:
      :func:`load_mpii_predictions`.

Every coordinate is compared in the frame the files use; nothing is shifted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from posecore._errors import ConfigError
from posecore._fileio import read_json
from posecore.metrics._base import InstanceResult

__all__ = [
    "WHOLEBODY_PART_FIELDS",
    "CocoKeypointAnnotations",
    "CocoPrediction",
    "MpiiGroundTruth",
    "load_coco_keypoint_annotations",
    "load_coco_predictions",
    "load_mpii_ground_truth",
    "load_mpii_predictions",
    "match_predictions_to_annotations",
    "parse_coco_predictions",
    "predictions_to_instances",
    "read_json_file",
]

#: COCO-WholeBody stores the 17 body keypoints in ``keypoints`` and the other parts in these
#: fields; the 133-keypoint order is body, then these in this order.
WHOLEBODY_PART_FIELDS = ("foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
#: MPII's head-box diagonal is scaled by this factor to give the head size (HRNet's SC_BIAS).
MPII_HEAD_SIZE_FACTOR = 0.6


def read_json_file(path: str | Path, what: str) -> Any:
    """Parse a JSON file the user named on the command line; problems are :class:`ConfigError`."""
    return read_json(path, f"{what} file", ConfigError)


@attrs.frozen(eq=False)
class CocoKeypointAnnotations:
    """A COCO-style keypoint annotation file as arrays (``N`` annotations, in file order).

    Attributes:
        path: the file.
        image_ids: ``(I,)`` every image id of the file, sorted (the images COCO evaluation covers).
        crowd_index: ``{image_id: crowdIndex}`` for the images that carry one (CrowdPose).
        categories: ``{category_id: category dict}`` from the file's ``categories``.
        ids, image_id, category_id: ``(N,)`` int64.
        keypoints: ``N`` arrays of shape ``(K_i, 3)``: x, y, visibility. ``K_i`` can vary with the
            category (MP-100); :meth:`stacked_keypoints` gives ``(N, K, 3)`` when it does not.
        bbox: ``(N, 4)`` x, y, w, h; NaN where an annotation has no ``bbox``.
        area: ``(N,)``; NaN where an annotation has no ``area`` (AIC, CrowdPose).
        iscrowd: ``(N,)`` bool; False where absent.
        num_keypoints: ``(N,)`` the file's ``num_keypoints``; -1 where absent.
        wholebody: whether ``keypoints`` are COCO-WholeBody's 133 (body + the part fields).
    """

    path: str
    image_ids: np.ndarray
    crowd_index: dict[int, float]
    categories: dict[int, dict[str, Any]]
    ids: np.ndarray
    image_id: np.ndarray
    category_id: np.ndarray
    keypoints: list[np.ndarray]
    bbox: np.ndarray
    area: np.ndarray
    iscrowd: np.ndarray
    num_keypoints: np.ndarray
    wholebody: bool = False

    def __len__(self) -> int:
        return len(self.ids)

    def num_keypoints_of(self) -> int:
        """The one ``K`` of every annotation; an error naming two annotations if it varies."""
        sizes = {len(k) for k in self.keypoints}
        if len(sizes) > 1:
            first = {len(k): int(i) for k, i in zip(self.keypoints, self.ids, strict=True)}
            shown = ", ".join(f"annotation {i} has {k}" for k, i in sorted(first.items())[:3])
            raise ConfigError(
                f"{self.path}: annotations have different numbers of keypoints ({shown}); COCO AP needs one "
                "keypoint definition per evaluation (for MP-100-style files use the pck metric)"
            )
        if not sizes:
            raise ConfigError(f"{self.path}: field 'annotations' is empty; there is nothing to evaluate against")
        return sizes.pop()

    def stacked_keypoints(self) -> np.ndarray:
        """``(N, K, 3)`` float64 keypoints (one K for all annotations)."""
        k = self.num_keypoints_of()
        return np.stack(self.keypoints) if self.keypoints else np.zeros((0, k, 3))

    def category_keypoint_names(self, category_id: int) -> list[str]:
        return list(self.categories.get(category_id, {}).get("keypoints") or [])

    def index_of_ids(self) -> dict[int, int]:
        return {int(i): n for n, i in enumerate(self.ids)}


def has_wholebody_fields(data: Mapping[str, Any]) -> bool:
    """Whether every annotation carries COCO-WholeBody's part fields."""
    annotations = data.get("annotations") or []
    return bool(annotations) and all(
        isinstance(a, Mapping) and all(f in a for f in WHOLEBODY_PART_FIELDS) for a in annotations
    )


def _number_list(value: Any, path: str, where: str, field: str) -> np.ndarray:
    """``value`` as a 1-D float64 array of finite numbers, or an error naming the file, the entry, the
    field and the position. Text ("81"), null, NaN and infinities are errors: numpy would turn
    them into numbers or NaN, and a NaN keypoint or score silently scores as a miss or breaks the
    ranking."""
    if isinstance(value, (list, tuple)):
        try:
            array = np.asarray(value)
        except ValueError:  # nested lists of different lengths
            array = None
        if array is not None and array.ndim == 1:
            if array.dtype.kind not in "iuf":
                position = next(n for n, v in enumerate(value) if isinstance(v, bool) or not isinstance(v, (int, float)))
                raise ConfigError(f"{path}: {where} field {field!r} holds {json.dumps(value[position])} at position "
                                  f"{position}; every value must be a number (not text or null)")
            array = array.astype(np.float64)
            bad = np.flatnonzero(~np.isfinite(array))
            if len(bad):
                raise ConfigError(
                    f"{path}: {where} field {field!r} holds {json.dumps(value[bad[0]])} at position {int(bad[0])} "
                    f"({len(bad)} such value(s)); every value must be a finite number (no NaN or Infinity)"
                )
            return array
    raise ConfigError(f"{path}: {where} field {field!r} must be a list of numbers; got {str(value)[:60]}")


def load_coco_keypoint_annotations(
    path: str | Path, *, wholebody: bool = False, data: Mapping[str, Any] | None = None
) -> CocoKeypointAnnotations:
    """Read a COCO-style keypoint annotation file (``data``: its already parsed JSON, if at hand).

    ``wholebody=True`` concatenates ``keypoints`` with :data:`WHOLEBODY_PART_FIELDS` into the
    133 COCO-WholeBody keypoints.
    """
    path = str(path)
    if data is None:
        data = read_json_file(path, "ground-truth")
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: a COCO annotation file holds a JSON object with 'images', 'annotations' and "
            f"'categories'; this one holds a {type(data).__name__}"
            + (" (it looks like a predictions file: pass it as --pred)" if isinstance(data, list) else "")
        )
    for field in ("images", "annotations", "categories"):
        if field not in data:
            raise ConfigError(
                f"{path}: required field {field!r} is missing; a COCO keypoint file needs 'images', "
                "'annotations' and 'categories'"
                + (
                    " (is this an image-info or detections file rather than the annotations?)"
                    if field == "annotations"
                    else ""
                )
            )
        if not isinstance(data[field], list):
            raise ConfigError(f"{path}: field {field!r} must be a list; got {type(data[field]).__name__}")
    if not data["categories"]:
        raise ConfigError(f"{path}: field 'categories' is empty; add the keypoint category (id, name, keypoints)")

    image_ids, crowd_index = [], {}
    for n, image in enumerate(data["images"]):
        if not isinstance(image, Mapping) or "id" not in image:
            raise ConfigError(f"{path}: images[{n}] has no 'id'")
        image_ids.append(int(image["id"]))
        if "crowdIndex" in image:
            crowd_index[int(image["id"])] = float(image["crowdIndex"])
    categories = {}
    for n, category in enumerate(data["categories"]):
        if not isinstance(category, Mapping) or "id" not in category:
            raise ConfigError(f"{path}: categories[{n}] has no 'id'")
        categories[int(category["id"])] = dict(category)

    known_images = set(image_ids)
    ids, image_of, category_of, keypoints, boxes, areas, crowd, counts = [], [], [], [], [], [], [], []
    for n, ann in enumerate(data["annotations"]):
        where = f"annotations[{n}]" + (f" (id {ann['id']})" if isinstance(ann, Mapping) and "id" in ann else "")
        if not isinstance(ann, Mapping):
            raise ConfigError(f"{path}: {where} must be an object; got {type(ann).__name__}")
        for field in ("id", "image_id", "category_id", "keypoints"):
            if field not in ann:
                raise ConfigError(
                    f"{path}: {where} has no {field!r}; every keypoint annotation needs id, image_id, category_id and keypoints"
                )
        if int(ann["image_id"]) not in known_images:
            raise ConfigError(f"{path}: {where} refers to image_id {ann['image_id']}, which is not in 'images'")
        if int(ann["category_id"]) not in categories:
            raise ConfigError(
                f"{path}: {where} refers to category_id {ann['category_id']}, which is not in 'categories'"
            )
        flat = _number_list(ann["keypoints"], path, where, "keypoints")
        if wholebody:
            for field in WHOLEBODY_PART_FIELDS:
                if field not in ann:
                    raise ConfigError(
                        f"{path}: {where} has no {field!r}; COCO-WholeBody evaluation needs every part field"
                    )
                flat = np.concatenate([flat, _number_list(ann[field], path, where, field)])
        if len(flat) % 3:
            raise ConfigError(
                f"{path}: {where} field 'keypoints' has {len(flat)} numbers; expected x, y, v per keypoint (a multiple of 3)"
            )
        ids.append(int(ann["id"]))
        image_of.append(int(ann["image_id"]))
        category_of.append(int(ann["category_id"]))
        keypoints.append(flat.reshape(-1, 3))
        box = ann.get("bbox")
        boxes.append(_number_list(box, path, where, "bbox") if box is not None else np.full(4, np.nan))
        if len(boxes[-1]) != 4:
            raise ConfigError(f"{path}: {where} field 'bbox' must be [x, y, w, h]; got {box}")
        areas.append(float(ann["area"]) if "area" in ann else np.nan)
        crowd.append(bool(ann.get("iscrowd", 0)))
        counts.append(int(ann["num_keypoints"]) if "num_keypoints" in ann else -1)
    duplicates = len(ids) - len(set(ids))
    if duplicates:
        raise ConfigError(f"{path}: {duplicates} annotation ids are repeated; every annotation needs its own 'id'")
    return CocoKeypointAnnotations(
        path=path,
        image_ids=np.array(sorted(known_images), dtype=np.int64),
        crowd_index=crowd_index,
        categories=categories,
        ids=np.array(ids, dtype=np.int64),
        image_id=np.array(image_of, dtype=np.int64),
        category_id=np.array(category_of, dtype=np.int64),
        keypoints=keypoints,
        bbox=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        area=np.array(areas, dtype=np.float64),
        iscrowd=np.array(crowd, dtype=bool),
        num_keypoints=np.array(counts, dtype=np.int64),
        wholebody=wholebody,
    )


@attrs.frozen(eq=False)
class CocoPrediction:
    """One entry of a COCO results file. ``bbox`` is x, y, w, h (or None); ``id`` the GT annotation."""

    image_id: int
    category_id: int
    keypoints: np.ndarray  # (K, 3) x, y, score
    score: float | None
    id: int | None
    bbox: np.ndarray | None
    index: int  # position in the file, for messages


def load_coco_predictions(path: str | Path, gt: CocoKeypointAnnotations) -> list[CocoPrediction]:
    """Read and check a COCO results file against the ground truth it will be scored on.

    Raises :class:`ConfigError` for an empty file or list, a missing field, an unknown image or
    category id, a wrong number of keypoints, or ``bbox`` on some entries but not others.
    """
    return parse_coco_predictions(read_json_file(path, "predictions"), gt, str(path))


def parse_coco_predictions(data: Any, gt: CocoKeypointAnnotations, path: str = "<predictions>") -> list[CocoPrediction]:
    """:func:`load_coco_predictions` for an already parsed results list (``path`` is for messages)."""
    if isinstance(data, Mapping) and "annotations" in data and isinstance(data["annotations"], list):
        raise ConfigError(
            f"{path}: this is an annotation file (it has 'annotations'), not predictions; a predictions file "
            "is a JSON list of {image_id, category_id, keypoints, score}"
        )
    if not isinstance(data, list):
        raise ConfigError(
            f"{path}: a predictions file is a JSON list of {{image_id, category_id, keypoints: [x, y, score] * K, "
            f"score}} (the COCO results layout); this one holds a {type(data).__name__}"
        )
    if not data:
        raise ConfigError(f"{path}: the predictions list is empty; there is nothing to evaluate")
    known_images = set(gt.image_ids.tolist())
    single_category = next(iter(gt.categories)) if len(gt.categories) == 1 else None
    expected_k = _keypoints_per_category(gt)
    predictions = []
    with_bbox = 0
    for n, entry in enumerate(data):
        where = f"prediction [{n}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{path}: {where} must be an object; got {type(entry).__name__}")
        for field in ("image_id", "keypoints"):
            if field not in entry:
                raise ConfigError(
                    f"{path}: {where} has no {field!r}; each prediction needs image_id and keypoints ([x, y, score] * K)"
                )
        image_id = int(entry["image_id"])
        if image_id not in known_images:
            raise ConfigError(
                f"{path}: {where} has image_id {image_id}, which is not an image of the ground truth {gt.path}; "
                "remove it or evaluate against the annotation file it was predicted for"
            )
        if "category_id" in entry:
            category_id = int(entry["category_id"])
        elif single_category is not None:
            category_id = single_category
        else:
            raise ConfigError(
                f"{path}: {where} has no 'category_id' and {gt.path} has {len(gt.categories)} categories; add it"
            )
        if category_id not in gt.categories:
            raise ConfigError(f"{path}: {where} has category_id {category_id}, which is not a category of {gt.path}")
        flat = _number_list(entry["keypoints"], path, where, "keypoints")
        if gt.wholebody and len(flat) == 17 * 3 and all(f in entry for f in WHOLEBODY_PART_FIELDS):
            for field in WHOLEBODY_PART_FIELDS:
                flat = np.concatenate([flat, _number_list(entry[field], path, where, field)])
        k = expected_k.get(category_id)
        if k is not None and len(flat) != 3 * k:
            raise ConfigError(
                f"{path}: {where} field 'keypoints' has {len(flat)} numbers ({len(flat) / 3:g} keypoints); the ground "
                f"truth has {k} keypoints for category {category_id}, so it needs {3 * k} ([x, y, score] per keypoint)"
            )
        if len(flat) % 3:
            raise ConfigError(
                f"{path}: {where} field 'keypoints' needs [x, y, score] per keypoint; got {len(flat)} numbers"
            )
        score = entry.get("score")
        if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)
                                  or not math.isfinite(score)):
            raise ConfigError(f"{path}: {where} field 'score' must be a finite number; got {score!r}")
        bbox = entry.get("bbox")
        if bbox is not None and len(bbox) == 0:
            bbox = None
        if bbox is not None:
            bbox = _number_list(bbox, path, where, "bbox")
            if bbox.shape != (4,):
                raise ConfigError(f"{path}: {where} field 'bbox' must be [x, y, w, h]")
            with_bbox += 1
        predictions.append(
            CocoPrediction(
                image_id=image_id,
                category_id=category_id,
                keypoints=flat.reshape(-1, 3),
                score=None if score is None else float(score),
                id=None if entry.get("id") is None else int(entry["id"]),
                bbox=bbox,
                index=n,
            )
        )
    if 0 < with_bbox < len(predictions):
        raise ConfigError(
            f"{path}: {with_bbox} of {len(predictions)} predictions have a 'bbox'; give it on all of them or none "
            "(COCO's loadRes reads the detection area from it)"
        )
    return predictions


def _keypoints_per_category(gt: CocoKeypointAnnotations) -> dict[int, int]:
    """K per category: from its annotations, else from its keypoint names."""
    found: dict[int, int] = {}
    for category_id, keypoints in zip(gt.category_id.tolist(), gt.keypoints, strict=True):
        found.setdefault(category_id, len(keypoints))
    for category_id, category in gt.categories.items():
        names = category.get("keypoints") or []
        if category_id not in found and names:
            found[category_id] = 133 if gt.wholebody else len(names)
    return found


def predictions_to_instances(
    predictions: Sequence[CocoPrediction], *, require_score: bool = True
) -> list[InstanceResult]:
    """COCO results entries as :class:`InstanceResult` (``bbox`` converted to x1, y1, x2, y2).

    Each carries its position in the file as ``sample_index``, so the metrics score the file as
    written, as pycocotools does: two equal entries are two predictions, not a padding repeat.
    """
    instances: list[InstanceResult] = []
    for p in predictions:
        if p.score is None and require_score:
            raise ConfigError(
                f"prediction [{p.index}] (image_id {p.image_id}) has no 'score'; COCO AP ranks predictions by it. "
                "Add the instance score (1.0 if you have none)"
            )
        result = InstanceResult(
            image_id=p.image_id,
            id=-1 if p.id is None else p.id,
            category_id=p.category_id,
            keypoints=p.keypoints[:, :2],
            keypoint_scores=p.keypoints[:, 2],
            bbox_score=1.0 if p.score is None else p.score,
            sample_index=p.index,
        )
        if p.bbox is not None:
            x, y, w, h = p.bbox
            result["bbox"] = np.array([x, y, x + w, y + h])
        instances.append(result)
    return instances


def match_predictions_to_annotations(
    predictions: Sequence[CocoPrediction], gt: CocoKeypointAnnotations, pred_path: str
) -> list[InstanceResult]:
    """Pair each prediction with its ground-truth instance, for the instance-level metrics.

    A prediction is matched by its ``id`` (a GT annotation id) when it has one, else by
    ``image_id`` when that image has exactly one annotation. The result carries ``gt_keypoints``,
    ``gt_visibility`` (the GT ``v``), ``gt_bbox`` and ``bbox`` (x1, y1, x2, y2 of the GT box).
    """
    by_id = gt.index_of_ids()
    per_image: dict[int, list[int]] = {}
    for n, image_id in enumerate(gt.image_id.tolist()):
        per_image.setdefault(image_id, []).append(n)
    used: dict[int, int] = {}
    instances: list[InstanceResult] = []
    for p in predictions:
        where = f"{pred_path}: prediction [{p.index}]"
        if p.id is not None:
            if p.id not in by_id:
                raise ConfigError(
                    f"{where} has id {p.id}, which is no annotation id of {gt.path}; fix or remove its 'id'"
                )
            n = by_id[p.id]
            if int(gt.image_id[n]) != p.image_id:
                raise ConfigError(
                    f"{where}: annotation {p.id} belongs to image {int(gt.image_id[n])}, not to image_id {p.image_id}"
                )
        else:
            candidates = per_image.get(p.image_id, [])
            if len(candidates) != 1:
                raise ConfigError(
                    f"{where} has no 'id' and image {p.image_id} has {len(candidates)} ground-truth instances in "
                    f"{gt.path}; add to each prediction the 'id' of the annotation it predicts"
                )
            n = candidates[0]
        if n in used:
            raise ConfigError(
                f"{where} predicts annotation {int(gt.ids[n])}, which prediction [{used[n]}] already predicts; "
                "keep one prediction per ground-truth instance"
            )
        used[n] = p.index
        gt_kpts = gt.keypoints[n]
        if len(gt_kpts) != len(p.keypoints):
            raise ConfigError(
                f"{where} has {len(p.keypoints)} keypoints; annotation {int(gt.ids[n])} has {len(gt_kpts)}"
            )
        x, y, w, h = gt.bbox[n]
        box = np.array([x, y, x + w, y + h])
        instances.append(
            InstanceResult(
                image_id=p.image_id,
                id=int(gt.ids[n]),
                category_id=int(gt.category_id[n]),
                keypoints=p.keypoints[:, :2],
                keypoint_scores=p.keypoints[:, 2],
                bbox=box,
                bbox_score=1.0 if p.score is None else p.score,
                gt_keypoints=gt_kpts[:, :2],
                gt_visibility=gt_kpts[:, 2],
                gt_bbox=box,
            )
        )
    return instances


@attrs.frozen(eq=False)
class MpiiGroundTruth:
    """MPII validation ground truth in HRNet's ``gt_valid.mat`` layout, as ``N``-first arrays."""

    path: str
    keypoints: np.ndarray  # (N, 16, 2)
    visible: np.ndarray  # (N, 16) bool, from 1 - jnt_missing
    head_size: np.ndarray  # (N,) 0.6 x head-box diagonal

    def __len__(self) -> int:
        return len(self.keypoints)


def load_mpii_ground_truth(path: str | Path) -> MpiiGroundTruth:
    """Read ``pos_gt_src`` (16x2xN), ``jnt_missing`` (16xN) and ``headboxes_src`` (2x2xN)."""
    from scipy.io import loadmat

    path = str(path)
    try:
        mat = loadmat(path)
    except FileNotFoundError:
        raise ConfigError(f"ground-truth file not found: {path}") from None
    except Exception as exc:  # scipy raises several types for a file that is not MAT
        raise ConfigError(f"{path} cannot be read as a MATLAB .mat file ({exc})") from None
    arrays = {}
    for key, rows in (("pos_gt_src", (16, 2)), ("jnt_missing", (16,)), ("headboxes_src", (2, 2))):
        if key not in mat:
            raise ConfigError(
                f"{path}: required field {key!r} is missing; an MPII ground-truth .mat needs pos_gt_src (16x2xN), "
                "jnt_missing (16xN) and headboxes_src (2x2xN), as in HRNet's gt_valid.mat"
            )
        array = np.asarray(mat[key])
        if array.ndim != len(rows) + 1 or array.shape[:-1] != rows:
            raise ConfigError(f"{path}: field {key!r} has shape {array.shape}; expected {rows + ('N',)}")
        arrays[key] = array
    n = {a.shape[-1] for a in arrays.values()}
    if len(n) != 1:
        raise ConfigError(f"{path}: pos_gt_src, jnt_missing and headboxes_src disagree on the number of people")
    boxes = arrays["headboxes_src"].astype(np.float64)
    head_size = np.linalg.norm(boxes[1] - boxes[0], axis=0) * MPII_HEAD_SIZE_FACTOR
    return MpiiGroundTruth(
        path=path,
        keypoints=np.transpose(arrays["pos_gt_src"].astype(np.float64), (2, 0, 1)),
        visible=(1 - arrays["jnt_missing"].astype(np.int64)).T.astype(bool),
        head_size=head_size,
    )


def load_mpii_predictions(path: str | Path, gt: MpiiGroundTruth) -> list[InstanceResult]:
    """MPII predictions aligned with the GT columns: ``{"pos_pred": N x 16 x 2}`` or a COCO
    results list of ``N`` entries in GT order. The result's ``image_id`` and ``id`` are the column."""
    path = str(path)
    data = read_json_file(path, "predictions")
    if isinstance(data, Mapping):
        if "pos_pred" not in data:
            raise ConfigError(
                f"{path}: required field 'pos_pred' is missing; MPII predictions are {{\"pos_pred\": N x 16 x 2}} "
                "or a COCO results list in the order of the ground truth"
            )
        try:
            coords = np.asarray(data["pos_pred"], dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: field 'pos_pred' must be a N x 16 x 2 array of numbers") from None
        if not np.isfinite(coords).all():
            person, joint = np.argwhere(~np.isfinite(coords))[0][:2]
            raise ConfigError(f"{path}: field 'pos_pred' holds a value that is not a finite number (NaN, Infinity or "
                              f"null) at person {person}, joint {joint}")
        scores = np.ones(coords.shape[:2])
    elif isinstance(data, list):
        if not data:
            raise ConfigError(f"{path}: the predictions list is empty; there is nothing to evaluate")
        rows = []
        for n, entry in enumerate(data):
            if not isinstance(entry, Mapping) or "keypoints" not in entry:
                raise ConfigError(f"{path}: prediction [{n}] has no 'keypoints' ([x, y, score] * 16)")
            flat = _number_list(entry["keypoints"], path, f"prediction [{n}]", "keypoints")
            if len(flat) != 48:
                raise ConfigError(
                    f"{path}: prediction [{n}] field 'keypoints' has {len(flat)} numbers; MPII needs 48 ([x, y, score] * 16)"
                )
            rows.append(flat)
        triples = np.asarray(rows, dtype=np.float64).reshape(-1, 16, 3)
        coords, scores = triples[..., :2], triples[..., 2]
    else:
        raise ConfigError(f'{path}: expected {{"pos_pred": ...}} or a list of predictions; got {type(data).__name__}')
    if coords.ndim != 3 or coords.shape[1:] != (16, 2):
        raise ConfigError(f"{path}: predictions have shape {coords.shape}; MPII needs N x 16 x 2")
    if len(coords) != len(gt):
        raise ConfigError(
            f"{path} has {len(coords)} people but the ground truth {gt.path} has {len(gt)}; predictions must be "
            "aligned 1:1 with the ground-truth columns"
        )
    return [
        InstanceResult(
            image_id=n,
            id=n,
            keypoints=coords[n],
            keypoint_scores=scores[n],
            gt_keypoints=gt.keypoints[n],
            gt_visibility=gt.visible[n].astype(np.float64),
            head_size=float(gt.head_size[n]),
        )
        for n in range(len(gt))
    ]
