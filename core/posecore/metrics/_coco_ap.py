"""COCO keypoint AP/AR by object keypoint similarity (OKS), with the conventions pose papers use.

The numbers are those of xtcocotools' ``COCOeval`` as mmpose calls it (Lin et al., ECCV 2014,
"Microsoft COCO"; Li et al., CVPR 2019, "CrowdPose"; Jin et al., ECCV 2020, "Whole-Body Human
Pose Estimation in the Wild"), without depending on xtcocotools (unmaintained, broken on
numpy 2). Where xtcocotools differs from pycocotools, posecore follows xtcocotools:

* the dataset's OKS ``sigmas``;
* ``use_area=False``: the OKS scale and the area ranges use the GT box area x 0.53 (AIC and
  CrowdPose have no ``area``);
* a GT instance is ignored when it is a crowd region or none of its keypoints is labelled
  (``v > 0``), counted on the keypoints of the part being evaluated; ``keypoints_crowd`` counts
  ``num_keypoints`` instead (CrowdPose's field counts only ``v == 2``);
* a prediction whose keypoint scores are all <= 0 is dropped;
* ``keypoints_crowd`` reports AP/AR at maxDets 20 and AP(E)/AP(M)/AP(H): the mean of the precision
  array (T x R x K x maxDets, area 'all') over the images with ``crowdIndex`` < 0.2, in
  [0.2, 0.8) and >= 0.8, rounded to 4 decimals, -1 when a split has no image (crowdposetools).

Two backends compute the same numbers bit for bit: ``"pycocotools"`` (the reference: the file is
handed to pycocotools' ``COCOeval`` after the adjustments above) and ``"fast"`` (posecore's own
vectorised OKS matching and accumulation, the default: OKS of all detection/GT pairs at once,
greedy matching for all images, area ranges and thresholds at once, the same floating-point
operations in the same order). faster-coco-eval was tried first and not used: its statistics
differ from pycocotools' in the last bits (1e-17) and its ``use_area=False`` ignores the 0.53 area
for the area ranges (AP(M)/AP(L) come out -1).

Before evaluation, the metric turns per-instance results into COCO results the way mmpose's
``TopDownCocoDataset.evaluate`` does: duplicates dropped, instance score rescored
(``score_mode``) and OKS-NMS per image (``nms_thr``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import numpy as np

from posecore._errors import ConfigError
from posecore.metrics._base import InstanceResult, ResultBuffer, as_array
from posecore.metrics._results import (
    CocoKeypointAnnotations,
    has_wholebody_fields,
    load_coco_keypoint_annotations,
    read_json_file,
)

__all__ = [
    "COCO_KEYPOINT_STATS",
    "CROWDPOSE_STATS",
    "WHOLEBODY_PARTS",
    "CocoAPMetric",
    "KeypointDetections",
    "KeypointGroundTruth",
    "coco_results",
    "evaluate_oks",
    "nms_order",
    "oks_nms",
    "rescore_instances",
    "scored_keypoints",
]

#: Result keys of ``iou_type='keypoints'``, in pycocotools' ``stats`` order.
COCO_KEYPOINT_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
#: Result keys of ``iou_type='keypoints_crowd'`` (CrowdPose).
CROWDPOSE_STATS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP(E)", "AP(M)", "AP(H)")
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

# COCOeval's keypoint parameters, built with the same expressions so that every value is identical.
_IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
_REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_MAX_DETS = [20]
_AREA_RANGES = [[0**2, 1e5**2], [32**2, 96**2], [96**2, 1e5**2]]
_AREA_LABELS = ["all", "medium", "large"]
_NO_AREA_FACTOR = 0.53  # xtcocotools / crowdposetools: area ~ 0.53 x box area when 'area' is not used
_CROWD_SPLITS = (0.2, 0.8)  # crowdIndex split points of CrowdPose's easy / medium / hard


@attrs.frozen(eq=False)
class KeypointGroundTruth:
    """The ground truth of one evaluation (one part), ``N`` annotations in file order.

    ``area`` is the file's area (NaN if absent), ``num_keypoints`` the file's field (-1 if absent).
    """

    image_ids: np.ndarray  # (I,) sorted
    category_ids: np.ndarray  # (C,) sorted
    image_index: np.ndarray  # (N,) into image_ids
    category_index: np.ndarray  # (N,) into category_ids
    keypoints: np.ndarray  # (N, K, 3) x, y, v
    bbox: np.ndarray  # (N, 4) x, y, w, h
    area: np.ndarray  # (N,)
    iscrowd: np.ndarray  # (N,) bool
    num_keypoints: np.ndarray  # (N,)
    crowd_index: np.ndarray  # (I,) NaN where absent

    def part(self, start: int, stop: int) -> KeypointGroundTruth:
        return attrs.evolve(self, keypoints=self.keypoints[:, start:stop])


@attrs.frozen(eq=False)
class KeypointDetections:
    """``D`` predicted instances in evaluation order (COCO results order).

    ``area_box`` is the x, y, w, h box whose w x h is the detection's area for the area ranges
    (pycocotools' ``loadRes`` takes the keypoints' extent, or the result's ``bbox`` if it has one).
    """

    image_index: np.ndarray  # (D,)
    category_index: np.ndarray  # (D,)
    keypoints: np.ndarray  # (D, K, 3) x, y, score
    score: np.ndarray  # (D,)
    area_box: np.ndarray  # (D, 4)

    def part(self, start: int, stop: int) -> KeypointDetections:
        return attrs.evolve(self, keypoints=self.keypoints[:, start:stop])

    def __len__(self) -> int:
        return len(self.score)


def keypoint_extent_boxes(keypoints: np.ndarray) -> np.ndarray:
    """``(D, K, >=2)`` -> ``(D, 4)`` x, y, w, h of each instance's keypoints (all of them, as loadRes)."""
    if len(keypoints) == 0:
        return np.zeros((0, 4))
    x0, x1 = keypoints[..., 0].min(axis=1), keypoints[..., 0].max(axis=1)
    y0, y1 = keypoints[..., 1].min(axis=1), keypoints[..., 1].max(axis=1)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


# --------------------------------------------------------------------------------------------
# rescoring and OKS-NMS (mmpose's TopDownCocoDataset.evaluate)


def rescore_instances(
    keypoint_scores: np.ndarray, bbox_scores: np.ndarray, mode: str, keypoint_score_thr: float
) -> np.ndarray:
    """Instance scores ``(N,)`` from keypoint scores ``(N, K)`` and box scores ``(N,)``.

    ``bbox_keypoint``: box score x mean of the keypoint scores above the threshold (0 if none is);
    ``bbox``: the box score; ``keypoint``: mean keypoint score; ``bbox_rle``: box score + mean + max.
    """
    if mode == "bbox":
        return bbox_scores.astype(np.float64)
    if mode == "keypoint":
        return keypoint_scores.mean(axis=1)
    if mode == "bbox_rle":
        return bbox_scores + keypoint_scores.mean(axis=1) + keypoint_scores.max(axis=1)
    above = keypoint_scores > keypoint_score_thr
    total = np.zeros(len(keypoint_scores))
    for k in range(keypoint_scores.shape[1]):  # one keypoint at a time: mmpose's summation order
        total = total + np.where(above[:, k], keypoint_scores[:, k], 0.0)
    count = above.sum(axis=1)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return bbox_scores * mean


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray, thr: float) -> np.ndarray:
    """Greedy OKS non-maximum suppression of one image's instances; indices kept, best first.

    ``keypoints``: ``(N, K, >=2)``; a lower-scored instance is dropped when its OKS with a kept
    one, using the mean of the two areas as scale and every keypoint, exceeds ``thr``. The OKS is
    rounded to float32 before the comparison, as mmpose stores it.
    """
    order = scores.argsort()[::-1]
    variances = (sigmas * 2) ** 2
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        dx = keypoints[rest, :, 0] - keypoints[i, :, 0]
        dy = keypoints[rest, :, 1] - keypoints[i, :, 1]
        scale = (areas[i] + areas[rest]) / 2 + np.spacing(1)
        e = (dx**2 + dy**2) / variances / scale[:, None] / 2
        oks = (np.exp(-e).sum(axis=1) / keypoints.shape[1]).astype(np.float32)
        order = rest[oks <= np.float32(thr)]
    return np.array(keep, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# the evaluation itself


def _ignored(gt: KeypointGroundTruth, crowd_mode: bool) -> np.ndarray:
    if crowd_mode:
        labelled = gt.num_keypoints
    else:
        labelled = np.count_nonzero(gt.keypoints[..., 2] > 0, axis=1)
    return gt.iscrowd | (labelled == 0)


def _effective_area(gt: KeypointGroundTruth, use_area: bool) -> np.ndarray:
    if use_area:
        return gt.area
    return gt.bbox[:, 2] * gt.bbox[:, 3] * _NO_AREA_FACTOR


def _with_scored_keypoints(det: KeypointDetections) -> KeypointDetections:
    keep = np.count_nonzero(det.keypoints[..., 2] > 0, axis=1) > 0
    if keep.all():
        return det
    return KeypointDetections(*(getattr(det, f.name)[keep] for f in attrs.fields(KeypointDetections)))


def _summarize(
    precision: np.ndarray, recall: np.ndarray, ap: int, iou_thr: float | None = None, area: str = "all"
) -> float:
    """One COCOeval summary number, with COCOeval's own indexing so the mean sums in its order."""
    aind = [i for i, label in enumerate(_AREA_LABELS) if label == area]
    mind = [i for i, m in enumerate(_MAX_DETS) if m == 20]
    if ap == 1:
        s = precision
        if iou_thr is not None:
            s = s[np.where(iou_thr == _IOU_THRS)[0]]
        s = s[:, :, :, aind, mind]
    else:
        s = recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == _IOU_THRS)[0]]
        s = s[:, :, aind, mind]
    return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))


def _keypoint_stats(precision: np.ndarray, recall: np.ndarray) -> list[float]:
    return [
        _summarize(precision, recall, 1),
        _summarize(precision, recall, 1, iou_thr=0.5),
        _summarize(precision, recall, 1, iou_thr=0.75),
        _summarize(precision, recall, 1, area="medium"),
        _summarize(precision, recall, 1, area="large"),
        _summarize(precision, recall, 0),
        _summarize(precision, recall, 0, iou_thr=0.5),
        _summarize(precision, recall, 0, iou_thr=0.75),
        _summarize(precision, recall, 0, area="medium"),
        _summarize(precision, recall, 0, area="large"),
    ]


def _crowd_split_image_ids(gt: KeypointGroundTruth) -> list[np.ndarray]:
    easy, hard = _CROWD_SPLITS
    index = gt.crowd_index
    return [gt.image_ids[index < easy], gt.image_ids[(index >= easy) & (index < hard)], gt.image_ids[index >= hard]]


def _type_result(precision: np.ndarray) -> float:
    return float(round(np.mean(precision[:, :, :, 0, :]), 4))


class _FastOksEvaluation:
    """Per-detection match flags for every image, area range and OKS threshold, then COCO's
    accumulation for any subset of images. Same arithmetic as pycocotools' COCOeval."""

    def __init__(
        self, gt: KeypointGroundTruth, det: KeypointDetections, sigmas: np.ndarray, *, use_area: bool, crowd_mode: bool
    ) -> None:
        det = _with_scored_keypoints(det)
        num_images, num_areas, num_thrs = len(gt.image_ids), len(_AREA_RANGES), len(_IOU_THRS)
        self.num_categories = len(gt.category_ids)
        self.num_images = num_images
        ranges = np.array(_AREA_RANGES, dtype=np.float64)

        # GT sorted by (category, image), file order within; detections by (category, image, score).
        gt_group = gt.category_index * num_images + gt.image_index
        gt_order = np.argsort(gt_group, kind="stable")
        gt_group = gt_group[gt_order]
        gt_kpts = gt.keypoints[gt_order]
        gt_area = _effective_area(gt, use_area)[gt_order]
        gt_bbox = gt.bbox[gt_order]
        gt_crowd = gt.iscrowd[gt_order]
        gt_ignored = _ignored(gt, crowd_mode)[gt_order]
        det_group_all = det.category_index * num_images + det.image_index
        det_order = np.lexsort((-det.score, det_group_all))
        det_group_all = det_group_all[det_order]
        starts = np.r_[0, np.flatnonzero(np.diff(det_group_all)) + 1] if len(det_order) else np.zeros(0, np.int64)
        rank = np.arange(len(det_order)) - np.repeat(starts, np.diff(np.r_[starts, len(det_order)]))
        kept = det_order[rank < _MAX_DETS[-1]]
        det_group = det_group_all[rank < _MAX_DETS[-1]]
        det_rank = rank[rank < _MAX_DETS[-1]]
        det_kpts = det.keypoints[kept]
        det_box = det.area_box[kept]
        det_area = det_box[:, 2] * det_box[:, 3]
        self.det_score = det.score[kept]
        self.det_group = det_group

        groups = np.union1d(gt_group, det_group)
        self.groups = groups
        self.group_category = groups // num_images
        self.group_image = groups % num_images
        gt_start = np.searchsorted(gt_group, groups, side="left")
        gt_count = np.searchsorted(gt_group, groups, side="right") - gt_start
        det_start = np.searchsorted(det_group, groups, side="left")
        det_count = np.searchsorted(det_group, groups, side="right") - det_start
        det_group_index = np.searchsorted(groups, det_group)

        # GT ignore flags per area range, and the count of non-ignored GT per group.
        out_of_range = (gt_area[:, None] < ranges[None, :, 0]) | (gt_area[:, None] > ranges[None, :, 1])
        gt_ignore = gt_ignored[:, None] | out_of_range  # (N, A)
        per_group_gt = np.repeat(np.arange(len(groups)), gt_count)
        self.group_npig = np.zeros((len(groups), num_areas), dtype=np.int64)
        np.add.at(self.group_npig, per_group_gt, (~gt_ignore).astype(np.int64))
        det_out = (det_area[:, None] < ranges[None, :, 0]) | (det_area[:, None] > ranges[None, :, 1])  # (D, A)

        oks, pair_det, pair_gt = self._pairwise_oks(
            gt_kpts, gt_bbox, gt_area, det_kpts, sigmas, gt_start[det_group_index], gt_count[det_group_index]
        )

        # Unmatched detections are ignored when outside the area range; matches overwrite below.
        self.matched = np.zeros((len(kept), num_areas, num_thrs), dtype=bool)
        self.ignored = np.repeat(det_out[:, :, None], num_thrs, axis=2)
        thresholds = np.minimum(_IOU_THRS, 1 - 1e-10)
        pair_group = det_group_index[pair_det]
        pair_local = pair_gt - gt_start[pair_group]
        for size in np.unique(gt_count[(gt_count > 0) & (det_count > 0)]):
            bucket = np.flatnonzero((gt_count == size) & (det_count > 0))
            row_of_group = np.full(len(groups), -1)
            row_of_group[bucket] = np.arange(len(bucket))
            max_dets = int(det_count[bucket].max())
            ious = np.full((len(bucket), max_dets, size), -np.inf)
            in_bucket = row_of_group[pair_group] >= 0
            ious[row_of_group[pair_group[in_bucket]], det_rank[pair_det[in_bucket]], pair_local[in_bucket]] = oks[
                in_bucket
            ]
            gt_index = gt_start[bucket][:, None] + np.arange(size)  # (B, G)
            det_index = det_start[bucket][:, None] + np.arange(max_dets)  # (B, Dm)
            det_valid = np.arange(max_dets)[None, :] < det_count[bucket][:, None]
            det_index = np.where(det_valid, det_index, 0)
            self._match_bucket(
                ious, gt_ignore[gt_index].transpose(0, 2, 1), gt_crowd[gt_index], det_index, det_valid, thresholds
            )

    @staticmethod
    def _pairwise_oks(
        gt_kpts: np.ndarray,
        gt_bbox: np.ndarray,
        gt_area: np.ndarray,
        det_kpts: np.ndarray,
        sigmas: np.ndarray,
        gt_start_per_det: np.ndarray,
        gt_count_per_det: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """OKS of every (detection, GT) pair of the same image and category.

        Pairs are grouped by their number of scored keypoints so that each group is one
        contiguous (pairs, n) array: numpy then sums every row exactly as COCOeval sums its 1-D
        array, and the OKS agree to the last bit.
        """
        num_pairs = int(gt_count_per_det.sum())
        pair_det = np.repeat(np.arange(len(det_kpts)), gt_count_per_det)
        offsets = np.arange(num_pairs) - np.repeat(np.cumsum(gt_count_per_det) - gt_count_per_det, gt_count_per_det)
        pair_gt = np.repeat(gt_start_per_det, gt_count_per_det) + offsets
        oks = np.zeros(num_pairs)
        if num_pairs == 0:
            return oks, pair_det, pair_gt
        num_kpts = gt_kpts.shape[1]
        variances = (sigmas * 2) ** 2
        visible = gt_kpts[..., 2] > 0
        labelled = visible.sum(axis=1)
        scored_first = np.argsort(~visible, axis=1, kind="stable")  # labelled keypoints first, in order
        size_of_gt = np.where(labelled > 0, labelled, num_kpts)
        pair_size = size_of_gt[pair_gt]
        eps = np.spacing(1)
        for size in np.unique(pair_size):
            sel = np.flatnonzero(pair_size == size)
            g, d = pair_gt[sel], pair_det[sel]
            idx = scored_first[g, :size]
            xg, yg = gt_kpts[g[:, None], idx, 0], gt_kpts[g[:, None], idx, 1]
            xd, yd = det_kpts[d[:, None], idx, 0], det_kpts[d[:, None], idx, 1]
            dx, dy = xd - xg, yd - yg
            unlabelled = labelled[g] == 0
            if unlabelled.any():  # distance to the box doubled around the GT, as COCOeval does
                bb = gt_bbox[g[unlabelled]]
                x0, x1 = bb[:, 0] - bb[:, 2], bb[:, 0] + bb[:, 2] * 2
                y0, y1 = bb[:, 1] - bb[:, 3], bb[:, 1] + bb[:, 3] * 2
                xu, yu = xd[unlabelled], yd[unlabelled]
                dx[unlabelled] = np.maximum(0, x0[:, None] - xu) + np.maximum(0, xu - x1[:, None])
                dy[unlabelled] = np.maximum(0, y0[:, None] - yu) + np.maximum(0, yu - y1[:, None])
            e = (dx**2 + dy**2) / variances[idx] / (gt_area[g] + eps)[:, None] / 2
            oks[sel] = np.ascontiguousarray(np.exp(-e)).sum(axis=1) / size
        return oks, pair_det, pair_gt

    def _match_bucket(
        self,
        ious: np.ndarray,
        gt_ignore: np.ndarray,
        gt_crowd: np.ndarray,
        det_index: np.ndarray,
        det_valid: np.ndarray,
        thresholds: np.ndarray,
    ) -> None:
        """COCOeval's greedy matching for B images with G GT each, all areas and thresholds at once.

        ``ious``: (B, Dm, G); ``gt_ignore``: (B, A, G). A detection takes, among the GT it may
        still match with OKS >= the threshold, the best non-ignored one, else the best ignored
        one; on ties the later GT wins (COCOeval's ``>=`` scan).
        """
        num_groups, max_dets, size = ious.shape
        num_areas, num_thrs = gt_ignore.shape[1], len(thresholds)
        # Groups with more detections first, so step d only touches the groups that have a d-th one.
        order = np.argsort(-det_valid.sum(axis=1), kind="stable")
        ious, gt_ignore, gt_crowd = ious[order], gt_ignore[order], gt_crowd[order]
        det_index, det_valid = det_index[order], det_valid[order]
        active_at = det_valid.sum(axis=0)  # groups with a d-th detection, for each d
        taken = np.zeros((num_groups, num_areas, num_thrs, size), dtype=bool)
        ignore = gt_ignore[:, :, None, :]
        crowd = gt_crowd[:, None, None, :]
        thrs = thresholds[None, None, :, None]
        positions = np.arange(size)
        for d in range(max_dets):
            n = int(active_at[d])
            iou = ious[:n, d, :][:, None, None, :]  # (n, 1, 1, G)
            allowed = (~taken[:n] | crowd[:n]) & (iou >= thrs)
            regular = allowed & ~ignore[:n]
            candidates = np.where(regular.any(axis=-1, keepdims=True), regular, allowed)
            values = np.where(candidates, iou, -np.inf)
            # argmax finds the first maximum; on the reversed axis that is the last one, as COCOeval picks
            choice = (size - 1) - np.argmax(values[..., ::-1], axis=-1)  # (n, A, T)
            found = candidates.any(axis=-1)
            taken[:n] |= found[..., None] & (positions == choice[..., None])
            chosen_ignored = np.take_along_axis(
                np.broadcast_to(ignore[:n], candidates.shape), choice[..., None], axis=-1
            )[..., 0]
            rows = det_index[:n, d]
            self.matched[rows] = found
            self.ignored[rows] = np.where(found, chosen_ignored, self.ignored[rows])

    def accumulate(
        self, image_ids_subset: np.ndarray | None = None, image_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """COCOeval.accumulate: precision (T, R, C, A, M) and recall (T, C, A, M), -1 where undefined."""
        num_thrs, num_recalls, num_areas = len(_IOU_THRS), len(_REC_THRS), len(_AREA_RANGES)
        precision = -np.ones((num_thrs, num_recalls, self.num_categories, num_areas, len(_MAX_DETS)))
        recall = -np.ones((num_thrs, self.num_categories, num_areas, len(_MAX_DETS)))
        group_in = np.ones(len(self.groups), dtype=bool)
        if image_ids_subset is not None:
            assert image_ids is not None
            group_in = np.isin(image_ids[self.group_image], image_ids_subset)
        det_in = group_in[np.searchsorted(self.groups, self.det_group)] if len(self.det_group) else np.zeros(0, bool)
        det_category = self.det_group // self.num_images
        for k in range(self.num_categories):
            groups_k = group_in & (self.group_category == k)
            if not groups_k.any():
                continue
            sel = np.flatnonzero(det_in & (det_category == k))
            scores = self.det_score[sel]
            order = np.argsort(-scores, kind="mergesort")
            for a in range(num_areas):
                npig = int(self.group_npig[groups_k, a].sum())
                if npig == 0:
                    continue
                dtm = self.matched[sel, a, :].T[:, order]
                dt_ig = self.ignored[sel, a, :].T[:, order]
                tps = np.logical_and(dtm, np.logical_not(dt_ig))
                fps = np.logical_and(np.logical_not(dtm), np.logical_not(dt_ig))
                tp_sum = np.cumsum(tps, axis=1).astype(dtype=float)
                fp_sum = np.cumsum(fps, axis=1).astype(dtype=float)
                nd = tp_sum.shape[1]
                rc = tp_sum / npig
                pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                recall[:, k, a, 0] = rc[:, -1] if nd else 0
                if nd:
                    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                for t in range(num_thrs):
                    q = np.zeros(num_recalls)
                    if nd:
                        inds = np.searchsorted(rc[t], _REC_THRS, side="left")
                        inside = inds < nd
                        q[inside] = pr[t, inds[inside]]
                    precision[t, :, k, a, 0] = q
        return precision, recall


def _evaluate_fast(
    gt: KeypointGroundTruth, det: KeypointDetections, sigmas: np.ndarray, use_area: bool, crowd_mode: bool
) -> list[float]:
    evaluation = _FastOksEvaluation(gt, det, sigmas, use_area=use_area, crowd_mode=crowd_mode)
    precision, recall = evaluation.accumulate()
    stats = _keypoint_stats(precision, recall)
    if not crowd_mode:
        return stats
    types = [_type_result(evaluation.accumulate(ids, gt.image_ids)[0]) for ids in _crowd_split_image_ids(gt)]
    return [stats[i] for i in (0, 1, 2, 5, 6, 7)] + types


def _evaluate_pycocotools(
    gt: KeypointGroundTruth, det: KeypointDetections, sigmas: np.ndarray, use_area: bool, crowd_mode: bool
) -> list[float]:
    """The reference: pycocotools' COCOeval on the same instances, adjusted to xtcocotools' rules."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    annotations = []
    for n in range(len(gt.image_index)):
        bbox = gt.bbox[n].tolist()
        keypoints = gt.keypoints[n].reshape(-1).tolist()
        annotations.append(
            {
                "id": n + 1,  # pycocotools treats id 0 as "unmatched"; xtcocotools does not
                "image_id": int(gt.image_ids[gt.image_index[n]]),
                "category_id": int(gt.category_ids[gt.category_index[n]]),
                "keypoints": keypoints,
                "bbox": bbox,
                "area": float(gt.area[n]) if use_area else bbox[2] * bbox[3] * _NO_AREA_FACTOR,
                "iscrowd": int(gt.iscrowd[n]),
                "num_keypoints": int(gt.num_keypoints[n]) if crowd_mode else sum(v > 0 for v in keypoints[2::3]),
            }
        )
    results = []
    for n in range(len(det)):
        keypoints = det.keypoints[n].reshape(-1).tolist()
        if not any(s > 0 for s in keypoints[2::3]):
            continue
        results.append(
            {
                "image_id": int(gt.image_ids[det.image_index[n]]),
                "category_id": int(gt.category_ids[det.category_index[n]]),
                "keypoints": keypoints,
                "score": float(det.score[n]),
                "bbox": det.area_box[n].tolist(),
            }
        )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": [{"id": int(i)} for i in gt.image_ids],
            "annotations": annotations,
            "categories": [{"id": int(c)} for c in gt.category_ids],
        }
        coco.createIndex()
        if results:
            detections = coco.loadRes(results)
        else:  # loadRes cannot read an empty list
            detections = COCO()
            detections.dataset = {
                "images": coco.dataset["images"],
                "annotations": [],
                "categories": coco.dataset["categories"],
            }
            detections.createIndex()
        evaluator = COCOeval(coco, detections, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        stats = [float(s) for s in evaluator.stats]
        if not crowd_mode:
            return stats
        types = []
        for ids in _crowd_split_image_ids(gt):
            evaluator.params.imgIds = [int(i) for i in ids]
            evaluator.evaluate()
            evaluator.accumulate()
            types.append(_type_result(evaluator.eval["precision"]))
    return [stats[i] for i in (0, 1, 2, 5, 6, 7)] + types


def evaluate_oks(
    gt: KeypointGroundTruth,
    det: KeypointDetections,
    sigmas: Sequence[float],
    *,
    use_area: bool = True,
    iou_type: Literal["keypoints", "keypoints_crowd"] = "keypoints",
    backend: Literal["fast", "pycocotools"] = "fast",
) -> dict[str, float]:
    """COCO keypoint statistics of ``det`` against ``gt`` (see the module docstring for the rules)."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    crowd_mode = iou_type == "keypoints_crowd"
    run = _evaluate_fast if backend == "fast" else _evaluate_pycocotools
    stats = run(gt, det, sigmas, use_area, crowd_mode)
    return dict(zip(CROWDPOSE_STATS if crowd_mode else COCO_KEYPOINT_STATS, stats, strict=True))


# --------------------------------------------------------------------------------------------
# the metric


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
        detection_area: Literal["keypoints", "bbox"] = "keypoints",
        parts: Literal["coco_wholebody"] | None = None,
        backend: Literal["fast", "pycocotools"] = "fast",
    ) -> None:
        _check_choice("iou_type", iou_type, ("keypoints", "keypoints_crowd"))
        _check_choice("score_mode", score_mode, ("bbox_keypoint", "bbox", "keypoint", "bbox_rle"))
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
                boxes = _stack(results, "bbox", (4,))
            elif self.detection_area == "bbox":
                raise ConfigError("coco_ap: detection_area='bbox' needs 'bbox' in every result; some results lack it")
        keypoints, instance_score = scored_keypoints(results, k, self.score_mode, self.keypoint_score_thr)
        order = nms_order(image_index, keypoints, instance_score, boxes, self.sigmas, self.nms_thr)
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


def scored_keypoints(results: Sequence[InstanceResult], k: int, score_mode: str,
                     keypoint_score_thr: float) -> tuple[np.ndarray, np.ndarray]:
    """``(N, K, 3)`` x, y, score per keypoint and the ``(N,)`` instance scores of ``score_mode``
    (:func:`rescore_instances`): what both the metric and a results file rank by."""
    coords = _stack(results, "keypoints", (k, 2))
    scores = _stack(results, "keypoint_scores", (k,))
    bbox_scores = np.array([float(r.get("bbox_score", 1.0)) for r in results])
    instance_score = rescore_instances(scores, bbox_scores, score_mode, keypoint_score_thr)
    return np.concatenate([coords, scores[:, :, None]], axis=2), instance_score


def nms_order(image_index: np.ndarray, keypoints: np.ndarray, score: np.ndarray, boxes: np.ndarray | None,
              sigmas: np.ndarray, nms_thr: float | None) -> np.ndarray:
    """Indices of the instances OKS-NMS keeps, image by image (sorted ``image_index``); within an
    image, in NMS order. An instance's NMS area is that of its box ``(N, 4)`` x1, y1, x2, y2, else
    of its keypoints' extent. ``nms_thr=None`` keeps every instance."""
    by_image = np.argsort(image_index, kind="stable")
    if nms_thr is None or not len(by_image):
        return by_image
    if boxes is not None:
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    else:
        extent = keypoint_extent_boxes(keypoints)
        areas = extent[:, 2] * extent[:, 3]
    sorted_images = image_index[by_image]
    cuts = np.flatnonzero(np.diff(sorted_images)) + 1
    kept = []
    for members in np.split(by_image, cuts):
        keep = oks_nms(keypoints[members], score[members], areas[members], sigmas, nms_thr)
        kept.append(members[keep])
    return np.concatenate(kept)


def coco_results(
    results: Sequence[InstanceResult],
    sigmas: np.ndarray,
    *,
    score_mode: str = "bbox_keypoint",
    keypoint_score_thr: float = 0.2,
    nms_thr: float | None = 0.9,
) -> list[dict[str, Any]]:
    """``results`` as a COCO keypoint results file holds them (``image_id``, ``category_id``,
    ``keypoints`` as ``[x, y, score] * K``, ``score``), rescored and OKS-NMSed exactly as
    :class:`CocoAPMetric` ranks them. Needs no ground truth: this is what an evaluation server
    (COCO test-dev) takes."""
    if not results:
        return []
    k = len(results[0]["keypoints"])
    image_ids = np.array([int(r["image_id"]) for r in results], dtype=np.int64)
    keypoints, instance_score = scored_keypoints(results, k, score_mode, keypoint_score_thr)
    boxes = _stack(results, "bbox", (4,)) if all("bbox" in r for r in results) else None
    order = nms_order(image_ids, keypoints, instance_score, boxes, np.asarray(sigmas, np.float64), nms_thr)
    return [
        {"image_id": int(image_ids[i]), "category_id": int(results[i].get("category_id", 1)),
         "keypoints": [round(float(v), 3) for v in keypoints[i].ravel()], "score": float(instance_score[i])}
        for i in order
    ]


def _stack(results: Sequence[InstanceResult], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """``results[i][key]`` stacked as float64 ``(N, *shape)``; a wrong shape names the result."""
    try:
        stacked = np.asarray([r[key] for r in results], dtype=np.float64)  # type: ignore[literal-required]
    except (TypeError, ValueError):
        stacked = None
    if stacked is None or stacked.shape != (len(results), *shape):
        stacked = np.stack([as_array(r, key, shape, "coco_ap") for r in results])
    return stacked


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
