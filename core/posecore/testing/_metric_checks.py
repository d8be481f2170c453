"""The metric contract check: ``compute()`` depends on the set of results, not on how they arrived.

The engine hands a metric the results of every process gathered, and a distributed sampler pads
each process's share with repeats of the first samples (:class:`~posecore.engine._sampling.EpochSampler`).
So the same instances may come in any order and some of them twice; the table must not change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posecore._registry import Registries
from posecore.config._spec import ComponentSpec
from posecore.metrics._base import InstanceResult

__all__ = ["check_metric", "example_results", "padded_like_processes"]

#: Keypoints of made-up instances when the example has no annotation file: MPII's 16, the count
#: PCKh requires; metrics that score any keypoint set accept it too.
_KEYPOINTS = 16
#: Agreement asked of two tables: exact but for rounding. A mean over instances that arrived in
#: another order sums in another order, and mmpose's distance metrics (PCK, NME) sum float32.
_RELATIVE = 1e-6


def _instance(rng: np.random.Generator, image_id: int, ann_id: int, category_id: int, gt: np.ndarray,
              visible: np.ndarray, box: np.ndarray, bbox_score: float) -> InstanceResult:
    """A prediction near ``gt`` (within a few percent of the box), with every field an
    :class:`InstanceResult` may carry, so any metric finds what it needs."""
    size = float(max(box[2] - box[0], box[3] - box[1], 1.0))
    keypoints = gt + rng.normal(0.0, 0.04 * size, gt.shape)
    return {
        "image_id": image_id, "id": ann_id, "category_id": category_id,
        "keypoints": keypoints, "keypoint_scores": rng.uniform(0.3, 1.0, len(gt)),
        "bbox": box.copy(), "bbox_score": bbox_score,
        "gt_keypoints": gt.copy(), "gt_visibility": visible.astype(np.float64), "gt_bbox": box.copy(),
        "head_size": 0.2 * size,  # a head about a fifth of the box: PCKh then sees hits and misses
    }


def _from_annotation_file(path: Path, rng: np.random.Generator) -> list[InstanceResult]:
    """One prediction per annotation of a COCO-style file, plus one detector box per image that
    matches no annotation (a false positive)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    results = []
    for ann in data["annotations"]:
        triplets = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
        x, y, w, h = (float(v) for v in ann["bbox"])
        box = np.array([x, y, x + w, y + h])
        results.append(_instance(rng, int(ann["image_id"]), int(ann["id"]), int(ann.get("category_id", 1)),
                                 triplets[:, :2], triplets[:, 2] > 0, box, 1.0))
    for image in data["images"]:
        first = next(r for r in results if r["image_id"] == int(image["id"]))
        box = first["bbox"] + np.array([30.0, 10.0, 30.0, 10.0])
        stray = _instance(rng, int(image["id"]), -1, first["category_id"], first["gt_keypoints"] + [30.0, 10.0],
                          first["gt_visibility"] > 0, box, 0.5)
        results.append(stray)
    return results


def _made_up(rng: np.random.Generator) -> list[InstanceResult]:
    """Seven instances of two categories on four images, one keypoint of each unlabelled."""
    results = []
    for n in range(7):
        box = np.array([10.0 * n, 5.0 * n, 10.0 * n + 60.0, 5.0 * n + 90.0])
        gt = box[:2] + rng.uniform(0.0, 1.0, (_KEYPOINTS, 2)) * (box[2:] - box[:2])
        visible = np.ones(_KEYPOINTS, bool)
        visible[n % _KEYPOINTS] = False
        results.append(_instance(rng, n % 4, n, 1 + n % 2, gt, visible, box, 1.0))
    return results


def example_results(kwargs: Mapping[str, Any]) -> list[InstanceResult]:
    """Results a metric built from ``kwargs`` can score: from its ``ann_file`` (the ground truth the
    engine gives a metric) when it has one, else made up; instance scores all differ, since COCO
    evaluation breaks score ties by arrival order (the engine restores dataset order for that)."""
    rng = np.random.default_rng(0)
    ann_file = kwargs.get("ann_file")
    results = _from_annotation_file(Path(ann_file), rng) if ann_file else _made_up(rng)
    for n, result in enumerate(results):
        result["bbox_score"] = float(result["bbox_score"]) - 1e-3 * n
    return results


def padded_like_processes(results: Sequence[InstanceResult], processes: int) -> list[InstanceResult]:
    """``results`` as the engine gathers them from ``processes`` processes without its own de-duplication:
    padded to a multiple of ``processes`` with repeats of the first ones, dealt out ``rank::processes``,
    and concatenated rank after rank. Repeats are equal copies, as a re-predicted sample gives."""
    per_process = math.ceil(len(results) / processes)
    padded = list(results) + list(results[: per_process * processes - len(results)])
    return [dict(result) for rank in range(processes) for result in padded[rank::processes]]  # type: ignore[misc]


def _table(metric: Any, batches: Sequence[Sequence[InstanceResult]]) -> dict[str, float]:
    metric.reset()
    for batch in batches:
        metric.update(list(batch))
    return metric.compute()


def _same(first: Mapping[str, float], second: Mapping[str, float]) -> bool:
    if list(first) != list(second):
        return False
    return all((math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=_RELATIVE, abs_tol=_RELATIVE)
               for a, b in ((float(first[k]), float(second[k])) for k in first))


def check_metric(registries: Registries, name: str, workdir: Path) -> None:
    """Builds from its example; ``reset``/``update``/``compute`` give a non-empty table of floats that is
    the same for the results in another order and batching, and with the repeats of multi-process
    padding (2 and 3 processes)."""
    kwargs = registries.metrics.get(name).example_kwargs(workdir)
    metric = registries.metrics.build(ComponentSpec(name, kwargs))
    for method in ("reset", "update", "compute"):
        assert callable(getattr(metric, method, None)), f"metric {name!r} needs a {method}() method"
    results = example_results(kwargs)
    reference = _table(metric, [results[i : i + 3] for i in range(0, len(results), 3)])
    assert reference and all(isinstance(v, float) for v in reference.values()), (
        f"metric {name!r}: compute() must give a non-empty {{name: float}} table; got {reference!r}")
    order = np.random.default_rng(1).permutation(len(results))
    shuffled = _table(metric, [[results[i] for i in order[:2]], [results[i] for i in order[2:]]])
    assert _same(reference, shuffled), (
        f"metric {name!r}: the same results in another order give another table:\n{reference}\n{shuffled}")
    for processes in (2, 3):
        gathered = padded_like_processes(results, processes)
        padded = _table(metric, [gathered[i : i + 4] for i in range(0, len(gathered), 4)])
        assert _same(reference, padded), (
            f"metric {name!r}: results padded with repeats as {processes} processes give them change the table "
            f"(drop duplicates, e.g. with posecore.metrics.ResultBuffer):\n{reference}\n{padded}")
