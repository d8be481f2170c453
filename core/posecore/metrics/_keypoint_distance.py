"""Distance metrics over matched instances: PCKh (MPII), PCK, AUC, EPE and NME.

Each prediction is paired with its ground-truth instance (the top-down sample carries
``gt_keypoints``, ``gt_visibility`` and ``gt_bbox`` or ``head_size``); a keypoint is scored only
where ``gt_visibility > 0``. All computations are vectorised numpy.

Conventions and sources:

* **PCKh** follows the MPII evaluation as HRNet and mmpose 0.x implement it (Andriluka et al.,
  CVPR 2014, "2D Human Pose Estimation: New Benchmark and State of the Art Analysis"): head size =
  0.6 x the head-box diagonal, a joint is correct when its error / head size is <= the threshold,
  pelvis and thorax are left out of the mean, values in percent.
* **PCK**, **AUC**, **EPE** and **NME** follow mmpose 1.x's ``keypoint_pck_accuracy``,
  ``keypoint_auc``, ``keypoint_epe`` and ``keypoint_nme``: normalised distances in float32, a
  keypoint is correct when strictly below the threshold, an instance whose normaliser is 0 is not
  scored. PCK also offers the per-instance mean that category-agnostic pose papers report
  (POMNet, Pose Anything: PCK@0.2 by max(w, h) of the GT box, averaged per query instance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from posecore._errors import ConfigError
from posecore.metrics._base import InstanceResult, ResultBuffer, as_array

__all__ = [
    "MPII_JOINT_GROUPS",
    "AUCMetric",
    "EPEMetric",
    "MpiiPCKhMetric",
    "NMEMetric",
    "PCKMetric",
    "normalized_distances",
]

#: MPII's 16 joints: r_ankle, r_knee, r_hip, l_hip, l_knee, l_ankle, pelvis, thorax, upper_neck,
#: head_top, r_wrist, r_elbow, r_shoulder, l_shoulder, l_elbow, l_wrist. Table rows -> joints
#: (a row with two joints is their mean, left and right).
MPII_JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "Head": (9,),
    "Shoulder": (13, 12),
    "Elbow": (14, 11),
    "Wrist": (15, 10),
    "Hip": (3, 2),
    "Knee": (4, 1),
    "Ankle": (5, 0),
}
_MPII_NOT_IN_MEAN = (6, 7)  # pelvis and thorax

#: mmpose's default pairs of keypoints whose distance normalises NME, by dataset name.
NME_DEFAULT_KEYPOINT_INDICES: dict[str, tuple[int, int]] = {
    "horse10": (0, 1),
    "300w": (36, 45),
    "coco_wholebody_face": (36, 45),
    "cofw": (8, 9),
    "wflw": (60, 72),
    "lapa": (66, 79),
}


def normalized_distances(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """mmpose's ``_calc_distances``: ``(N, K)`` float32 distance / ``norm``, -1 where not scored.

    ``pred``, ``gt``: ``(N, K, 2)``; ``mask``: ``(N, K)`` bool; ``norm``: ``(N,)``. Instances whose
    normaliser is 0 are not scored; a negative normaliser is replaced by 1e6.
    """
    mask = mask & (norm != 0)[:, None]
    factor = np.where(norm <= 0, 1e6, norm).astype(np.float64)
    distances = np.full(mask.shape, -1, dtype=np.float32)
    scaled = (pred - gt) / factor[:, None, None]
    distances[mask] = np.linalg.norm(scaled[mask], axis=-1)
    return distances


class _Instances:
    """Results stacked per (category, K): MP-100 mixes keypoint counts, COCO does not."""

    def __init__(self, results: Sequence[InstanceResult], metric: str, *, need: Sequence[str] = ()) -> None:
        self.groups: list[dict[str, np.ndarray]] = []
        if not results:
            raise ConfigError(f"metric {metric!r}: no results to evaluate (update() was never given any)")
        buckets: dict[tuple[int, int], list[InstanceResult]] = {}
        for result in results:
            k = np.shape(result["keypoints"])[0]
            buckets.setdefault((int(result.get("category_id", 0)), k), []).append(result)
        for (_, k), members in sorted(buckets.items()):
            group = {
                "pred": np.stack([as_array(r, "keypoints", (k, 2), metric) for r in members]),
                "gt": np.stack([as_array(r, "gt_keypoints", (k, 2), metric) for r in members]),
                "mask": np.stack([as_array(r, "gt_visibility", (k,), metric) for r in members]) > 0,
            }
            if "gt_bbox" in need:
                boxes = np.stack([as_array(r, "gt_bbox", (4,), metric) for r in members])
                group["bbox_size"] = np.max(boxes[:, 2:] - boxes[:, :2], axis=1)
            if "head_size" in need:
                group["head_size"] = np.array([float(r["head_size"]) for r in members])
            self.groups.append(group)

    def distances(self, norm_of: str | None) -> list[np.ndarray]:
        """Per group, the ``(N, K)`` normalised distances (``norm_of`` = a group key, or None for pixels)."""
        out = []
        for g in self.groups:
            norm = np.ones(len(g["pred"])) if norm_of is None else g[norm_of]
            out.append(normalized_distances(g["pred"], g["gt"], g["mask"], norm))
        return out


def _keypoint_mean_accuracy(distances: list[np.ndarray], thr: float) -> float:
    """Accuracy per keypoint type (category, k) over instances, averaged over types with any
    scored instance (mmpose ``keypoint_pck_accuracy``); 0 if nothing is scored."""
    accuracies = []
    for d in distances:
        valid = d != -1
        count = valid.sum(axis=0)
        correct = ((d < thr) & valid).sum(axis=0)
        accuracies.append(correct[count > 0] / count[count > 0])
    merged = np.concatenate(accuracies) if accuracies else np.zeros(0)
    return float(merged.mean()) if len(merged) else 0.0


def _instance_mean_accuracy(distances: list[np.ndarray], thr: float) -> float:
    """Accuracy per instance over its scored keypoints (0 if none), averaged over instances."""
    per_instance = []
    for d in distances:
        valid = d != -1
        count = valid.sum(axis=1)
        correct = ((d < thr) & valid).sum(axis=1)
        per_instance.append(np.divide(correct, count, out=np.zeros(len(d)), where=count > 0))
    merged = np.concatenate(per_instance)
    return float(merged.mean()) if len(merged) else 0.0


def _required(norm: str) -> tuple[str, ...]:
    base = ("keypoints", "gt_keypoints", "gt_visibility")
    return base + {"bbox": ("gt_bbox",), "head": ("head_size",)}.get(norm, ())


class MpiiPCKhMetric:
    """MPII PCKh (head-normalised PCK) per joint group, the table HRNet and mmpose 0.x print.

    Results need ``keypoints`` and ``gt_keypoints`` (16 MPII joints, same frame), ``gt_visibility``
    (0 for ``jnt_missing``) and ``head_size`` (0.6 x head-box diagonal).

    Args:
        thr: the threshold of the per-joint table (error / head size <= thr).
        mean_thrs: further thresholds reported as the mean only.

    Result table, in percent:

    ==========  ==============================================================
    Head        PCKh of head_top
    Shoulder    mean of left and right shoulder
    Elbow       mean of left and right elbow
    Wrist       mean of left and right wrist
    Hip         mean of left and right hip
    Knee        mean of left and right knee
    Ankle       mean of left and right ankle
    Mean        all joints but pelvis and thorax, weighted by their visible counts
    Mean@0.1    the same at each of ``mean_thrs``
    ==========  ==============================================================
    """

    def __init__(self, thr: float = 0.5, mean_thrs: tuple[float, ...] = (0.1,)) -> None:
        self.thr = float(thr)
        self.mean_thrs = tuple(float(t) for t in mean_thrs)
        self._buffer = ResultBuffer("pckh", ("keypoints", "gt_keypoints", "gt_visibility", "head_size"))

    def reset(self) -> None:
        self._buffer.reset()

    def update(self, results: Sequence[InstanceResult]) -> None:
        self._buffer.extend(results)

    def compute(self) -> dict[str, float]:
        results = self._buffer.unique()
        if not results:
            raise ConfigError("metric 'pckh': no results to evaluate (update() was never given any)")
        pred = np.stack([as_array(r, "keypoints", (16, 2), "pckh") for r in results])
        gt = np.stack([as_array(r, "gt_keypoints", (16, 2), "pckh") for r in results])
        visible = np.stack([as_array(r, "gt_visibility", (16,), "pckh") for r in results]) > 0
        head = np.array([float(r["head_size"]) for r in results])
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = np.linalg.norm(pred - gt, axis=-1) / head[:, None]
        count = visible.sum(axis=0)
        in_mean = np.ones(16, dtype=bool)
        in_mean[list(_MPII_NOT_IN_MEAN)] = False

        def correct(thr: float) -> np.ndarray:
            return ((scaled <= thr) & visible).sum(axis=0)

        hits = correct(self.thr)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_joint = 100.0 * hits / count
        table = {name: float(np.mean(per_joint[list(joints)])) for name, joints in MPII_JOINT_GROUPS.items()}
        total = count[in_mean].sum()
        table["Mean"] = float(100.0 * hits[in_mean].sum() / total) if total else float("nan")
        for thr in self.mean_thrs:
            table[f"Mean@{thr:g}"] = float(100.0 * correct(thr)[in_mean].sum() / total) if total else float("nan")
        return table


class PCKMetric:
    """PCK: the fraction of keypoints whose distance / normaliser is strictly below a threshold.

    Args:
        thresholds: the thresholds (Pose Anything reports 0.05, 0.1, 0.15, 0.2, 0.25 and their mean).
        mean: ``"instance"``: the accuracy over each instance's scored keypoints (0 if it has none),
            averaged over instances, as POMNet / Pose Anything report MP-100; ``"keypoint"``: the
            accuracy of each keypoint type over instances, averaged over types that have any scored
            instance (mmpose ``keypoint_pck_accuracy``; a type is a (category, keypoint) pair);
            ``"both"``.
        norm: ``"bbox"``: max(w, h) of ``gt_bbox``; ``"head"``: ``head_size``.

    Result table (fractions in [0, 1]); ``MEAN`` is ``instance`` or ``keypoint``:

    ================  ===========================================================
    PCK@<thr>/MEAN    PCK at each threshold, e.g. ``PCK@0.2/instance``
    mPCK/MEAN         the mean over the thresholds (only with more than one)
    ================  ===========================================================
    """

    def __init__(
        self,
        thresholds: tuple[float, ...] = (0.2,),
        mean: Literal["instance", "keypoint", "both"] = "both",
        norm: Literal["bbox", "head"] = "bbox",
    ) -> None:
        if mean not in ("instance", "keypoint", "both"):
            raise ConfigError(f"pck: mean={mean!r} is not one of 'instance', 'keypoint', 'both'")
        if norm not in ("bbox", "head"):
            raise ConfigError(f"pck: norm={norm!r} is not one of 'bbox', 'head'")
        if not thresholds:
            raise ConfigError("pck: thresholds is empty; give at least one, e.g. [0.2]")
        self.thresholds = tuple(float(t) for t in thresholds)
        self.means = ("instance", "keypoint") if mean == "both" else (mean,)
        self.norm = norm
        self._buffer = ResultBuffer("pck", _required(norm))

    def reset(self) -> None:
        self._buffer.reset()

    def update(self, results: Sequence[InstanceResult]) -> None:
        self._buffer.extend(results)

    def compute(self) -> dict[str, float]:
        instances = _Instances(
            self._buffer.unique(), "pck", need=("gt_bbox",) if self.norm == "bbox" else ("head_size",)
        )
        distances = instances.distances("bbox_size" if self.norm == "bbox" else "head_size")
        table: dict[str, float] = {}
        for mean in self.means:
            accuracy = _instance_mean_accuracy if mean == "instance" else _keypoint_mean_accuracy
            values = [accuracy(distances, thr) for thr in self.thresholds]
            table.update({f"PCK@{thr:g}/{mean}": value for thr, value in zip(self.thresholds, values, strict=True)})
            if len(values) > 1:
                table[f"mPCK/{mean}"] = float(np.mean(values))
        return table


class AUCMetric:
    """Area under the PCK curve (mmpose ``keypoint_auc``).

    PCK (keypoint mean) with distances divided by ``norm_factor`` pixels at the thresholds
    ``i / num_thresholds`` for i = 0 .. num_thresholds - 1, summed with weight 1 / num_thresholds.

    Args:
        norm_factor: pixels (mmpose: 30).
        num_thresholds: mmpose: 20.

    Result table: ``AUC`` in [0, 1].
    """

    def __init__(self, norm_factor: float = 30.0, num_thresholds: int = 20) -> None:
        if norm_factor <= 0 or num_thresholds < 1:
            raise ConfigError("auc: norm_factor must be > 0 and num_thresholds >= 1")
        self.norm_factor = float(norm_factor)
        self.num_thresholds = int(num_thresholds)
        self._buffer = ResultBuffer("auc", _required("pixels"))

    def reset(self) -> None:
        self._buffer.reset()

    def update(self, results: Sequence[InstanceResult]) -> None:
        self._buffer.extend(results)

    def compute(self) -> dict[str, float]:
        instances = _Instances(self._buffer.unique(), "auc")
        for group in instances.groups:
            group["auc_norm"] = np.full(len(group["pred"]), self.norm_factor)
        distances = instances.distances("auc_norm")
        auc = 0.0
        for i in range(self.num_thresholds):
            auc += 1.0 / self.num_thresholds * _keypoint_mean_accuracy(distances, 1.0 * i / self.num_thresholds)
        return {"AUC": auc}


class EPEMetric:
    """End-point error: the mean pixel distance over scored keypoints (mmpose ``keypoint_epe``).

    Result table: ``EPE`` in pixels.
    """

    def __init__(self) -> None:
        self._buffer = ResultBuffer("epe", _required("pixels"))

    def reset(self) -> None:
        self._buffer.reset()

    def update(self, results: Sequence[InstanceResult]) -> None:
        self._buffer.extend(results)

    def compute(self) -> dict[str, float]:
        distances = _Instances(self._buffer.unique(), "epe").distances(None)
        valid = np.concatenate([d[d != -1] for d in distances])
        return {"EPE": float(valid.sum() / max(1, len(valid)))}


class NMEMetric:
    """Normalised mean error (mmpose ``keypoint_nme``): mean of distance / normaliser over scored keypoints.

    Args:
        norm_mode: ``"bbox_size"``: max(w, h) of ``gt_bbox``; ``"keypoint_distance"``: the GT
            distance between ``keypoint_indices`` (inter-ocular for faces); ``"head_size"``.
        keypoint_indices: the two keypoints for ``"keypoint_distance"``; if omitted, mmpose's
            default of the ``metainfo`` dataset (300w, cofw, wflw, lapa, coco_wholebody_face, horse10).
        metainfo: a keypoint set name or metainfo file, only to look up that default.

    Result table: ``NME`` (a fraction of the normaliser).
    """

    def __init__(
        self,
        norm_mode: Literal["bbox_size", "keypoint_distance", "head_size"] = "bbox_size",
        keypoint_indices: tuple[int, int] | None = None,
        metainfo: str | None = None,
    ) -> None:
        if norm_mode not in ("bbox_size", "keypoint_distance", "head_size"):
            raise ConfigError(
                f"nme: norm_mode={norm_mode!r} is not one of 'bbox_size', 'keypoint_distance', 'head_size'"
            )
        self.norm_mode = norm_mode
        if norm_mode == "keypoint_distance" and keypoint_indices is None:
            name = None
            if metainfo is not None:
                from posecore.data import load_metainfo

                name = load_metainfo(metainfo).name
            if name not in NME_DEFAULT_KEYPOINT_INDICES:
                raise ConfigError(
                    "nme: norm_mode='keypoint_distance' needs keypoint_indices (two keypoint indices, e.g. the outer eye "
                    f"corners [36, 45] of 300W); mmpose defaults exist for {', '.join(NME_DEFAULT_KEYPOINT_INDICES)}"
                    + (f", not for {name!r}" if name else "")
                )
            keypoint_indices = NME_DEFAULT_KEYPOINT_INDICES[name]
        if keypoint_indices is not None and len(keypoint_indices) != 2:
            raise ConfigError(f"nme: keypoint_indices must be two indices; got {keypoint_indices}")
        self.keypoint_indices = None if keypoint_indices is None else tuple(int(i) for i in keypoint_indices)
        needs = {"bbox_size": ("gt_bbox",), "head_size": ("head_size",)}.get(norm_mode, ())
        self._needs = needs
        self._buffer = ResultBuffer("nme", _required("pixels") + needs)

    def reset(self) -> None:
        self._buffer.reset()

    def update(self, results: Sequence[InstanceResult]) -> None:
        self._buffer.extend(results)

    def compute(self) -> dict[str, float]:
        instances = _Instances(self._buffer.unique(), "nme", need=self._needs)
        if self.norm_mode == "keypoint_distance":
            i, j = self.keypoint_indices  # type: ignore[misc]
            for group in instances.groups:
                k = group["gt"].shape[1]
                if not (0 <= i < k and 0 <= j < k):
                    raise ConfigError(f"nme: keypoint_indices ({i}, {j}) are out of range for {k} keypoints")
                group["keypoint_distance"] = np.linalg.norm(group["gt"][:, i] - group["gt"][:, j], axis=-1)
        distances = instances.distances(self.norm_mode)
        valid = np.concatenate([d[d != -1] for d in distances])
        return {"NME": float(valid.sum() / max(1, len(valid)))}
