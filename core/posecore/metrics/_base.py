"""The metric contract: per-instance results in, a flat ``{name: value}`` table out.

The engine calls a metric the way detectron2 calls an evaluator: ``reset()`` before an
evaluation, ``update(results)`` with the results of every process gathered (in dataset order;
``posecore eval`` and tests may call it several times), and ``compute()`` at the end. A
distributed sampler pads each process's share with repeated samples, so every metric here first
drops duplicates by :func:`instance_key`. ``posecore.testing`` checks both properties for every
registered metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypedDict, runtime_checkable

import numpy as np

from posecore._errors import ConfigError

__all__ = ["InstanceKey", "InstanceResult", "Metric", "ResultBuffer", "instance_key"]


class InstanceResult(TypedDict, total=False):
    """One predicted instance, as a model's decoder and the dataset give it to a metric.

    Shapes use ``K`` for the number of keypoints. Coordinates are image pixels.
    """

    image_id: int
    id: int  # annotation id of the GT instance whose box was used; -1 for detector boxes
    category_id: int
    keypoints: np.ndarray  # (K, 2) predicted x, y in image pixels
    keypoint_scores: np.ndarray  # (K,)
    bbox: np.ndarray  # (4,) x1, y1, x2, y2 of the input box, image pixels
    bbox_score: float  # 1.0 for ground-truth boxes
    gt_keypoints: np.ndarray  # (K, 2) ground truth in image pixels (top-down samples carry it)
    gt_visibility: np.ndarray  # (K,) 0 = not labelled / not to be scored
    gt_bbox: np.ndarray  # (4,) x1, y1, x2, y2
    head_size: float  # MPII: 0.6 x head-box diagonal
    episode: int  # few-shot evaluation: the episode this query belongs to
    sample_index: int  # the sample's index in its dataset (engine), or the entry's position in a results file


@runtime_checkable
class Metric(Protocol):
    """What the engine needs from a metric.

    ``compute`` returns the metric's documented result table: keys in display order, plain
    Python floats. It must give the same table whatever order the results arrived in and however
    many duplicates a distributed sampler added.
    """

    def reset(self) -> None: ...

    def update(self, results: Sequence[InstanceResult]) -> None: ...

    def compute(self) -> dict[str, float]: ...


InstanceKey = tuple[int, int, tuple[float, ...], int, int, bytes]


def instance_key(result: InstanceResult) -> InstanceKey:
    """The identity of a result: ``(image_id, id, bbox, episode, sample_index)``; ``id``, ``episode``
    and ``sample_index`` are -1 and ``bbox`` empty when absent. Few-shot evaluation makes one
    instance the query of several episodes; ``episode`` keeps those apart. The entries of a
    results file carry their position as ``sample_index``, so a file is scored as written, each
    entry counted, even when two are equal: only the repeats of multi-process padding collapse.

    A result with neither ``id`` nor ``bbox`` (a bottom-up person) is identified by its predicted
    keypoints as well, so that only exact copies collapse.
    """
    bbox = result.get("bbox")
    box = () if bbox is None else tuple(float(v) for v in np.asarray(bbox, dtype=np.float64).reshape(-1))
    ann_id = int(result.get("id", -1))
    extra = b""
    if not box and ann_id == -1 and "keypoints" in result:
        extra = np.ascontiguousarray(result["keypoints"], dtype=np.float64).tobytes()
    return (int(result.get("image_id", -1)), ann_id, box, int(result.get("episode", -1)),
            int(result.get("sample_index", -1)), extra)


class ResultBuffer:
    """Collects results across ``update`` calls and hands them back without duplicates.

    The order of arrival is kept: COCO evaluation breaks score ties by it, and keeping it makes a
    results file score exactly as pycocotools scores it.
    """

    def __init__(self, metric: str, required: Iterable[str]) -> None:
        self.metric = metric
        self.required = tuple(required)
        self._results: list[InstanceResult] = []

    def reset(self) -> None:
        self._results = []

    def extend(self, results: Sequence[InstanceResult]) -> None:
        for index, result in enumerate(results):
            missing = [key for key in self.required if key not in result]
            if missing:
                raise ConfigError(
                    f"metric {self.metric!r}: result #{len(self._results) + index} "
                    f"(image_id={result.get('image_id', '?')}) lacks {', '.join(map(repr, missing))}; "
                    f"every result given to this metric needs: {', '.join(self.required)}"
                )
        self._results.extend(results)

    def unique(self) -> list[InstanceResult]:
        """The results in arrival order, without duplicates (the first copy of each key wins)."""
        seen: dict[InstanceKey, InstanceResult] = {}
        for result in self._results:
            seen.setdefault(instance_key(result), result)
        return list(seen.values())

    def __len__(self) -> int:
        return len(self._results)


def as_array(result: InstanceResult, key: str, shape: tuple[int | None, ...], metric: str) -> np.ndarray:
    """``result[key]`` as a float64 array of ``shape`` (``None`` = any size), or a clear error."""
    value: Any = result[key]  # type: ignore[literal-required]
    if hasattr(value, "detach"):  # a torch tensor slipped through: accept it without importing torch
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, array.shape, strict=False)):
        expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ConfigError(
            f"metric {metric!r}: result for image_id={result.get('image_id', '?')} has {key!r} of shape "
            f"{tuple(array.shape)}; expected {expected}"
        )
    return array
