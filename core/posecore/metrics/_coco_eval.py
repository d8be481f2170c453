"""COCO keypoint evaluation by object keypoint similarity (OKS), with the conventions pose papers use.

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
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Literal

import attrs
import numpy as np

__all__ = [
    "COCO_KEYPOINT_STATS",
    "CROWDPOSE_STATS",
    "KeypointDetections",
    "KeypointGroundTruth",
    "evaluate_oks",
]

#: Result keys of ``iou_type='keypoints'``, in pycocotools' ``stats`` order.
COCO_KEYPOINT_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
#: Result keys of ``iou_type='keypoints_crowd'`` (CrowdPose).
CROWDPOSE_STATS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP(E)", "AP(M)", "AP(H)")

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
