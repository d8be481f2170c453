"""Instance scores and (soft) OKS non-maximum suppression: how per-instance results become the ranked
detections COCO evaluation scores, as mmpose's ``TopDownCocoDataset.evaluate`` makes them.

Shared by :class:`~posecore.metrics._coco_ap.CocoAPMetric` and the COCO results-file writer, so a
written file ranks exactly as the metric does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posecore.metrics._base import InstanceResult, as_array

__all__ = [
    "keypoint_extent_boxes",
    "nms_order",
    "oks_nms",
    "rescore_instances",
    "score_dtype",
    "scored_keypoints",
    "soft_oks_nms",
    "stack_results",
]


def keypoint_extent_boxes(keypoints: np.ndarray) -> np.ndarray:
    """``(D, K, >=2)`` -> ``(D, 4)`` x, y, w, h of each instance's keypoints (all of them, as loadRes)."""
    if len(keypoints) == 0:
        return np.zeros((0, 4))
    x0, x1 = keypoints[..., 0].min(axis=1), keypoints[..., 0].max(axis=1)
    y0, y1 = keypoints[..., 1].min(axis=1), keypoints[..., 1].max(axis=1)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def rescore_instances(
    keypoint_scores: np.ndarray, bbox_scores: np.ndarray, mode: str, keypoint_score_thr: float
) -> np.ndarray:
    """Instance scores ``(N,)`` from keypoint scores ``(N, K)`` and box scores ``(N,)``, computed in
    the scores' dtype: mmpose adds and averages float32 scores in float32, and a float64 sum ties
    scores that float32 keeps apart (or the reverse), which reorders COCOeval's ranking.

    ``bbox_keypoint``: box score x mean of the keypoint scores above the threshold (0 if none is);
    ``bbox``: the box score; ``keypoint``: mean keypoint score; ``bbox_rle``: box score + mean + max.
    """
    dtype = np.result_type(keypoint_scores, bbox_scores)
    if mode == "bbox":
        return bbox_scores.astype(dtype)
    if mode == "keypoint":
        return keypoint_scores.mean(axis=1)
    if mode == "bbox_rle":
        return bbox_scores + keypoint_scores.mean(axis=1) + keypoint_scores.max(axis=1)
    above = keypoint_scores > keypoint_score_thr
    total = np.zeros(len(keypoint_scores), dtype=keypoint_scores.dtype)
    for k in range(keypoint_scores.shape[1]):  # one keypoint at a time: mmpose's summation order
        total = total + np.where(above[:, k], keypoint_scores[:, k], 0)
    count = above.sum(axis=1).astype(total.dtype)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return bbox_scores * mean


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray, thr: float) -> np.ndarray:
    """Greedy OKS non-maximum suppression of one image's instances; indices kept, best first.

    ``keypoints``: ``(N, K, >=2)``; a lower-scored instance is dropped when its OKS with a kept
    one, using the mean of the two areas as scale and every keypoint, exceeds ``thr``. The OKS is
    rounded to float32 before the comparison, as mmpose stores it.
    """
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        order = rest[_oks_against(keypoints, areas, sigmas, i, rest) <= np.float32(thr)]
    return np.array(keep, dtype=np.int64)


def soft_oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray, thr: float,
                 max_detections: int = 20) -> np.ndarray:
    """Soft OKS-NMS of one image's instances (mmpose's ``soft_oks_nms``); indices kept, in order.

    Instead of dropping the instances that overlap the best one, their scores are damped by
    ``exp(-oks^2 / thr)`` and the rest re-sorted before the next pick; at most ``max_detections``
    are kept, which is COCOeval's 20 per image. The damped scores only decide what is kept and in
    which order: the instances keep their own scores, as mmpose writes them.
    """
    order = scores.argsort()[::-1]
    remaining = scores[order]
    keep = []
    while order.size > 0 and len(keep) < max_detections:
        i = order[0]
        keep.append(i)
        oks = _oks_against(keypoints, areas, sigmas, i, order[1:])
        order, remaining = order[1:], remaining[1:] * np.exp(-(oks**2) / thr)
        resorted = remaining.argsort()[::-1]
        order, remaining = order[resorted], remaining[resorted]
    return np.array(keep, dtype=np.int64)


def _oks_against(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray, i: int, others: np.ndarray) -> np.ndarray:
    """float32 ``(len(others),)`` OKS of instance ``i`` with ``others`` over every keypoint, the scale
    being the mean of the two areas (mmpose's ``oks_iou`` without a visibility threshold)."""
    variances = (sigmas * 2) ** 2
    dx = keypoints[others, :, 0] - keypoints[i, :, 0]
    dy = keypoints[others, :, 1] - keypoints[i, :, 1]
    scale = (areas[i] + areas[others]) / 2 + np.spacing(1)
    e = (dx**2 + dy**2) / variances / scale[:, None] / 2
    return (np.exp(-e).sum(axis=1) / keypoints.shape[1]).astype(np.float32)


def scored_keypoints(results: Sequence[InstanceResult], k: int, score_mode: str,
                     keypoint_score_thr: float) -> tuple[np.ndarray, np.ndarray]:
    """``(N, K, 3)`` x, y, score per keypoint and the ``(N,)`` instance scores of ``score_mode``
    (:func:`rescore_instances`, in :func:`score_dtype`): what both the metric and a results file
    rank by."""
    coords = stack_results(results, "keypoints", (k, 2))
    scores = stack_results(results, "keypoint_scores", (k,))
    bbox_scores = np.array([float(r.get("bbox_score", 1.0)) for r in results])
    dtype = score_dtype(results)
    instance_score = rescore_instances(scores.astype(dtype), bbox_scores.astype(dtype), score_mode, keypoint_score_thr)
    return np.concatenate([coords, scores[:, :, None]], axis=2), instance_score


def score_dtype(results: Sequence[InstanceResult]) -> np.dtype:
    """The floating dtype the scores arrive in: NumPy's promotion of the keypoint scores' and box
    scores' array dtypes (a model's float32 stays float32). Python numbers and lists take the
    arrays' dtype, as NumPy 2 promotes them; scores given only as Python numbers are float64."""
    dtypes = set()
    for result in results:
        for value in (result.get("keypoint_scores"), result.get("bbox_score")):
            if hasattr(value, "detach"):  # a torch tensor: its numpy dtype, without importing torch
                value = value.detach().cpu().numpy()
            if isinstance(value, (np.ndarray, np.generic)):
                dtypes.add(value.dtype)
    dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def nms_order(image_index: np.ndarray, keypoints: np.ndarray, score: np.ndarray, boxes: np.ndarray | None,
              sigmas: np.ndarray, nms_thr: float | None, nms_mode: str = "oks") -> np.ndarray:
    """Indices of the instances OKS-NMS keeps, image by image (sorted ``image_index``); within an
    image, in NMS order. ``nms_mode``: ``"oks"`` (:func:`oks_nms`) or ``"soft_oks"``
    (:func:`soft_oks_nms`). An instance's NMS area is that of its box ``(N, 4)`` x1, y1, x2, y2,
    else of its keypoints' extent. ``nms_thr=None`` keeps every instance."""
    by_image = np.argsort(image_index, kind="stable")
    if nms_thr is None or not len(by_image):
        return by_image
    suppress = {"oks": oks_nms, "soft_oks": soft_oks_nms}[nms_mode]
    if boxes is not None:
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    else:
        extent = keypoint_extent_boxes(keypoints)
        areas = extent[:, 2] * extent[:, 3]
    sorted_images = image_index[by_image]
    cuts = np.flatnonzero(np.diff(sorted_images)) + 1
    kept = []
    for members in np.split(by_image, cuts):
        keep = suppress(keypoints[members], score[members], areas[members], sigmas, nms_thr)
        kept.append(members[keep])
    return np.concatenate(kept)


def stack_results(results: Sequence[InstanceResult], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """``results[i][key]`` stacked as float64 ``(N, *shape)``; a wrong shape names the result."""
    try:
        stacked = np.asarray([r[key] for r in results], dtype=np.float64)  # type: ignore[literal-required]
    except (TypeError, ValueError):
        stacked = None
    if stacked is None or stacked.shape != (len(results), *shape):
        stacked = np.stack([as_array(r, key, shape, "coco_ap") for r in results])
    return stacked
