"""The COCO keypoint AP/AR metric: per-instance results in, COCOeval's statistics out.

Before evaluation, the metric turns per-instance results into COCO results the way mmpose's
``TopDownCocoDataset.evaluate`` does: duplicates dropped, instance score rescored
(``score_mode``) and OKS-NMS or soft OKS-NMS per image (``nms_mode``, ``nms_thr``) (:mod:`posecore.metrics._oks`); then one of
the two evaluation backends scores them with xtcocotools' conventions
(:mod:`posecore.metrics._coco_eval`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from posecore._errors import ConfigError
from posecore.metrics._base import InstanceResult, ResultBuffer
from posecore.metrics._coco_eval import KeypointDetections, KeypointGroundTruth, evaluate_oks
from posecore.metrics._oks import keypoint_extent_boxes, nms_order, scored_keypoints, stack_results
from posecore.metrics._results import (
    CocoKeypointAnnotations,
    has_wholebody_fields,
    load_coco_keypoint_annotations,
    read_json_file,
)

__all__ = ["WHOLEBODY_PARTS", "CocoAPMetric", "coco_results"]

#: COCO-WholeBody's parts as keypoint index ranges of the 133 (body, foot, face, hands), and all.
WHOLEBODY_PARTS: dict[str, tuple[int, int]] = {
    "body": (0, 17),
    "foot": (17, 23),
    "face": (23, 91),
    "left_hand": (91, 112),
    "right_hand": (112, 133),
    "wholebody": (0, 133),
}
_PARTITIONS = {"coco_wholebody": WHOLEBODY_PARTS}
NMS_MODES = ("oks", "soft_oks")


class CocoAPMetric:
    """COCO keypoint AP/AR (OKS) against a COCO-style annotation file.

    Args:
        ann_file: the ground truth (COCO, CrowdPose, AIC, OCHuman, AP-10K, Animal-Pose, Human-Art,
            COCO-WholeBody ... in COCO keypoint format).
        metainfo: a built-in keypoint set name (``"coco"``, ``"crowdpose"``) or a metainfo file,
            for the OKS sigmas. If omitted, a 17-keypoint file whose keypoint names are COCO's
            uses COCO's sigmas; anything else is an error asking for it.
        sigmas: explicit OKS sigmas, one per keypoint, instead of ``metainfo``.
        use_area: use the annotations' ``area``; ``False`` uses 0.53 x the GT box area (AIC, CrowdPose).
        iou_type: ``"keypoints"``, or ``"keypoints_crowd"`` for CrowdPose's AP(E)/AP(M)/AP(H)
            (needs ``crowdIndex`` on the images and ``num_keypoints`` on the annotations).
        score_mode: instance score: ``"bbox_keypoint"`` (box score x mean keypoint score above
            ``keypoint_score_thr``, 0 if none; mmpose's default), ``"bbox"``, ``"keypoint"`` or
            ``"bbox_rle"`` (box score + mean + max keypoint score).
        keypoint_score_thr: see ``score_mode``.
        nms_thr: OKS-NMS threshold per image (mmpose: 0.9); ``None`` keeps every instance. The NMS
            area of an instance is that of its ``bbox``, else of its keypoints' extent.
        nms_mode: ``"oks"`` (greedy OKS-NMS, mmpose's default ``oks_nms``) or ``"soft_oks"``
            (mmpose's ``soft_oks_nms``: overlapping instances' scores are damped by
            ``exp(-oks^2 / nms_thr)`` and re-sorted instead of dropped, at most 20 kept per image;
            the kept instances keep their own scores).
        detection_area: what a prediction's area is for the medium/large ranges: ``"keypoints"``
            (the extent of its keypoints: pycocotools for results without ``bbox``, mmpose 0.x) or
            ``"bbox"`` (its ``bbox``: pycocotools for results with one, mmpose 1.x).
        parts: ``"coco_wholebody"`` reports AP/AR per COCO-WholeBody part (body, foot, face,
            left_hand, right_hand) and for all 133 keypoints (wholebody), as mmpose 0.x does.
        backend: ``"fast"`` (posecore's vectorised evaluator) or ``"pycocotools"`` (the reference).

    Result table (``compute()``), values in [0, 1] as COCOeval gives them (papers print x100),
    -1 where undefined (no GT in that range):

    ========  ========================================================================
    AP        mean AP over OKS 0.50:0.05:0.95, maxDets 20, all areas
    AP50      AP at OKS 0.50
    AP75      AP at OKS 0.75
    APm       AP for GT of area 32^2 .. 96^2 (``iou_type='keypoints'`` only)
    APl       AP for GT of area > 96^2 (``iou_type='keypoints'`` only)
    AR        mean recall over OKS 0.50:0.95
    AR50      recall at OKS 0.50
    AR75      recall at OKS 0.75
    ARm, ARl  recall for medium / large GT (``iou_type='keypoints'`` only)
    AP(E)     ``keypoints_crowd`` only: AP on images with crowdIndex < 0.2 (4 decimals)
    AP(M)     ``keypoints_crowd`` only: 0.2 <= crowdIndex < 0.8
    AP(H)     ``keypoints_crowd`` only: crowdIndex >= 0.8
    ========  ========================================================================

    With ``parts="coco_wholebody"`` each key is prefixed by its part: ``body/AP`` ...
    ``wholebody/ARl``.

    Example::

        metric = CocoAPMetric("data/coco/annotations/person_keypoints_val2017.json", metainfo="coco")
        metric.update(results)        # InstanceResult dicts: image_id, keypoints, keypoint_scores, bbox_score, bbox
        metric.compute()["AP"]
    """

    def __init__(
        self,
        ann_file: str,
        metainfo: str | None = None,
        sigmas: tuple[float, ...] | None = None,
        use_area: bool = True,
        iou_type: Literal["keypoints", "keypoints_crowd"] = "keypoints",
        score_mode: Literal["bbox_keypoint", "bbox", "keypoint", "bbox_rle"] = "bbox_keypoint",
        keypoint_score_thr: float = 0.2,
        nms_thr: float | None = 0.9,
        nms_mode: Literal["oks", "soft_oks"] = "oks",
        detection_area: Literal["keypoints", "bbox"] = "keypoints",
        parts: Literal["coco_wholebody"] | None = None,
        backend: Literal["fast", "pycocotools"] = "fast",
    ) -> None:
        _check_choice("iou_type", iou_type, ("keypoints", "keypoints_crowd"))
        _check_choice("score_mode", score_mode, ("bbox_keypoint", "bbox", "keypoint", "bbox_rle"))
        _check_choice("nms_mode", nms_mode, NMS_MODES)
        _check_choice("detection_area", detection_area, ("keypoints", "bbox"))
        _check_choice("backend", backend, ("fast", "pycocotools"))
        if parts is not None:
            _check_choice("parts", parts, tuple(_PARTITIONS))
        self.ann_file = str(ann_file)
        self.use_area = bool(use_area)
        self.iou_type = iou_type
        self.score_mode = score_mode
        self.keypoint_score_thr = float(keypoint_score_thr)
        self.nms_thr = None if nms_thr is None else float(nms_thr)
        self.nms_mode = nms_mode
        self.detection_area = detection_area
        self.backend = backend
        self.parts = _PARTITIONS[parts] if parts is not None else None

        data = read_json_file(self.ann_file, "ground-truth")
        given = _sigmas_from(metainfo, sigmas)
        wholebody = (
            isinstance(data, dict)
            and has_wholebody_fields(data)
            and (parts == "coco_wholebody" or (given is not None and len(given) == 133))
        )
        self.annotations = load_coco_keypoint_annotations(self.ann_file, wholebody=wholebody, data=data)
        self.num_keypoints = self.annotations.num_keypoints_of()
        self.sigmas = given if given is not None else _default_sigmas(self.annotations, self.num_keypoints)
        if len(self.sigmas) != self.num_keypoints:
            source = f"metainfo {metainfo!r}" if metainfo is not None else "sigmas"
            raise ConfigError(
                f"coco_ap: {source} gives {len(self.sigmas)} OKS sigmas but {self.ann_file} has {self.num_keypoints} "
                "keypoints per annotation; use the metainfo of this dataset"
            )
        if self.parts is not None and self.num_keypoints != 133:
            raise ConfigError(
                f"coco_ap: parts='coco_wholebody' needs the 133 COCO-WholeBody keypoints; {self.ann_file} gives "
                f"{self.num_keypoints} (use a COCO-WholeBody file with foot_kpts/face_kpts/lefthand_kpts/righthand_kpts)"
            )
        self.ground_truth = self._ground_truth()
        self._buffer = ResultBuffer("coco_ap", ("image_id", "keypoints", "keypoint_scores"))

    def _ground_truth(self) -> KeypointGroundTruth:
        ann = self.annotations
        path = self.ann_file
        bad = np.flatnonzero(np.isnan(ann.bbox).any(axis=1))
        if len(bad):
            raise ConfigError(
                f"{path}: annotation {int(ann.ids[bad[0]])} has no 'bbox'; COCO keypoint evaluation needs one per annotation"
            )
        if self.use_area:
            missing = np.flatnonzero(np.isnan(ann.area))
            if len(missing):
                raise ConfigError(
                    f"{path}: annotation {int(ann.ids[missing[0]])} has no 'area' ({len(missing)} of {len(ann)} lack it); "
                    "for datasets without area (AIC, CrowdPose) use use_area=False (0.53 x box area)"
                )
        crowd_index = np.array([ann.crowd_index.get(int(i), np.nan) for i in ann.image_ids], dtype=np.float64)
        if self.iou_type == "keypoints_crowd":
            if np.isnan(crowd_index).any():
                first = int(ann.image_ids[np.isnan(crowd_index)][0])
                raise ConfigError(
                    f"{path}: image {first} has no 'crowdIndex'; iou_type='keypoints_crowd' (CrowdPose) needs it on every "
                    "image. Use iou_type='keypoints' for other datasets"
                )
            if (ann.num_keypoints < 0).any():
                first = int(ann.ids[ann.num_keypoints < 0][0])
                raise ConfigError(
                    f"{path}: annotation {first} has no 'num_keypoints', which iou_type='keypoints_crowd' needs"
                )
        category_ids = np.array(sorted(ann.categories), dtype=np.int64)
        return KeypointGroundTruth(
            image_ids=ann.image_ids,
            category_ids=category_ids,
            image_index=np.searchsorted(ann.image_ids, ann.image_id),
            category_index=np.searchsorted(category_ids, ann.category_id),
            keypoints=ann.stacked_keypoints(),
            bbox=ann.bbox,
            area=ann.area,
            iscrowd=ann.iscrowd,
            num_keypoints=ann.num_keypoints,
            crowd_index=crowd_index,
        )

    def reset(self) -> None:
        self._buffer.reset()

    def update(self, results: Sequence[InstanceResult]) -> None:
        self._buffer.extend(results)

    def compute(self) -> dict[str, float]:
        detections = self.detections(self._buffer.unique())
        if self.parts is None:
            return evaluate_oks(
                self.ground_truth,
                detections,
                self.sigmas,
                use_area=self.use_area,
                iou_type=self.iou_type,
                backend=self.backend,
            )
        table: dict[str, float] = {}
        for name, (start, stop) in self.parts.items():
            stats = evaluate_oks(
                self.ground_truth.part(start, stop),
                detections.part(start, stop),
                self.sigmas[start:stop],
                use_area=self.use_area,
                iou_type=self.iou_type,
                backend=self.backend,
            )
            table.update({f"{name}/{key}": value for key, value in stats.items()})
        return table

    def detections(self, results: Sequence[InstanceResult]) -> KeypointDetections:
        """Check, rescore and OKS-NMS ``results`` into the detections COCO evaluation ranks."""
        gt, k = self.ground_truth, self.num_keypoints
        if not results:
            return KeypointDetections(
                np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, k, 3)), np.zeros(0), np.zeros((0, 4))
            )
        image_ids = np.array([int(r["image_id"]) for r in results], dtype=np.int64)
        image_index = np.searchsorted(gt.image_ids, image_ids)
        unknown = (image_index >= len(gt.image_ids)) | (
            gt.image_ids[np.minimum(image_index, len(gt.image_ids) - 1)] != image_ids
        )
        if unknown.any():
            raise ConfigError(
                f"coco_ap: a result has image_id {int(image_ids[unknown][0])}, which is not an image of {self.ann_file} "
                f"({int(unknown.sum())} results are); evaluate against the annotation file of the images predicted"
            )
        category_index = self._category_index(results)
        boxes = None
        if self.detection_area == "bbox" or any("bbox" in r for r in results):
            if all("bbox" in r for r in results):
                boxes = stack_results(results, "bbox", (4,))
            elif self.detection_area == "bbox":
                raise ConfigError("coco_ap: detection_area='bbox' needs 'bbox' in every result; some results lack it")
        keypoints, instance_score = scored_keypoints(results, k, self.score_mode, self.keypoint_score_thr)
        order = nms_order(image_index, keypoints, instance_score, boxes, self.sigmas, self.nms_thr, self.nms_mode)
        if self.detection_area == "bbox":
            assert boxes is not None
            area_box = np.stack(
                [boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1
            )
        else:
            first, last = next(iter(self.parts.values())) if self.parts else (0, k)
            area_box = keypoint_extent_boxes(keypoints[:, first:last])
        return KeypointDetections(
            image_index[order], category_index[order], keypoints[order], instance_score[order], area_box[order]
        )

    def _category_index(self, results: Sequence[InstanceResult]) -> np.ndarray:
        gt = self.ground_truth
        if all("category_id" in r for r in results):
            category_ids = np.array([int(r["category_id"]) for r in results], dtype=np.int64)
        elif len(gt.category_ids) == 1:
            category_ids = np.full(len(results), gt.category_ids[0])
        else:
            raise ConfigError(
                f"coco_ap: {self.ann_file} has {len(gt.category_ids)} categories, so every result needs 'category_id'"
            )
        index = np.searchsorted(gt.category_ids, category_ids)
        unknown = (index >= len(gt.category_ids)) | (
            gt.category_ids[np.minimum(index, len(gt.category_ids) - 1)] != category_ids
        )
        if unknown.any():
            raise ConfigError(
                f"coco_ap: a result has category_id {int(category_ids[unknown][0])}, which is not a category of {self.ann_file}"
            )
        return index


def coco_results(
    results: Sequence[InstanceResult],
    sigmas: np.ndarray,
    *,
    score_mode: str = "bbox_keypoint",
    keypoint_score_thr: float = 0.2,
    nms_thr: float | None = 0.9,
    nms_mode: str = "oks",
) -> list[dict[str, Any]]:
    """``results`` as a COCO keypoint results file holds them (``image_id``, ``category_id``,
    ``keypoints`` as ``[x, y, score] * K``, ``score``), rescored and OKS-NMSed exactly as
    :class:`CocoAPMetric` ranks them. Needs no ground truth: this is what an evaluation server
    (COCO test-dev) takes."""
    _check_choice("nms_mode", nms_mode, NMS_MODES)
    if not results:
        return []
    k = len(results[0]["keypoints"])
    image_ids = np.array([int(r["image_id"]) for r in results], dtype=np.int64)
    keypoints, instance_score = scored_keypoints(results, k, score_mode, keypoint_score_thr)
    boxes = stack_results(results, "bbox", (4,)) if all("bbox" in r for r in results) else None
    order = nms_order(image_ids, keypoints, instance_score, boxes, np.asarray(sigmas, np.float64), nms_thr, nms_mode)
    return [
        {"image_id": int(image_ids[i]), "category_id": int(results[i].get("category_id", 1)),
         "keypoints": [round(float(v), 3) for v in keypoints[i].ravel()], "score": float(instance_score[i])}
        for i in order
    ]


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        from posecore._errors import did_you_mean

        raise ConfigError(
            f"coco_ap: {name}={value!r} is not one of {', '.join(map(repr, choices))}{did_you_mean(str(value), choices)}"
        )


def _sigmas_from(metainfo: str | None, sigmas: Sequence[float] | None) -> np.ndarray | None:
    if sigmas is not None:
        if metainfo is not None:
            raise ConfigError("coco_ap: give either metainfo or sigmas, not both")
        return np.asarray(sigmas, dtype=np.float64)
    if metainfo is None:
        return None
    from posecore.data import load_metainfo

    meta = load_metainfo(metainfo)
    if not meta.sigmas:
        raise ConfigError(
            f"coco_ap: metainfo {metainfo!r} ({meta.name}) defines no OKS sigmas, so COCO AP cannot be computed for "
            "it; give sigmas= explicitly or use a PCK-style metric"
        )
    return np.asarray(meta.sigmas, dtype=np.float64)


def _default_sigmas(annotations: CocoKeypointAnnotations, num_keypoints: int) -> np.ndarray:
    """COCO's sigmas, but only for a file that is visibly COCO's 17 keypoints."""
    from posecore.data import load_metainfo

    coco = load_metainfo("coco")
    names = {tuple(annotations.category_keypoint_names(c)) for c in annotations.categories}
    if num_keypoints == coco.num_keypoints and names == {tuple(coco.keypoint_names)}:
        return np.asarray(coco.sigmas, dtype=np.float64)
    shown = ", ".join(list(next(iter(names)))[:4]) if names and next(iter(names)) else "no names"
    raise ConfigError(
        f"coco_ap: {annotations.path} has {num_keypoints} keypoints per annotation ({shown}, ...), not COCO's 17, so "
        "posecore cannot guess its OKS sigmas; pass metainfo= (a built-in name such as 'crowdpose', 'aic', 'ap10k', "
        "or a metainfo file) or sigmas="
    )
