"""Evaluation: predict every sample of a dataset, map keypoints back to the image, score them.

Works the same in one process or many: every process predicts its shard (padded to equal
length), the per-instance results are gathered, the padding repeats are dropped by sample
index and the results are put back in dataset order, so the metrics see exactly what a single
process would have given them (COCO evaluation breaks score ties by arrival order).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from posecore._inference import Precision, inference_autocast
from posecore.config import ExperimentConfig
from posecore.data._device_decode import decode_deferred_jpegs
from posecore.data._sample import collate_samples
from posecore.engine._sampling import EpochSampler
from posecore.metrics._base import InstanceResult
from posecore.models._base import PoseModel, PoseResult

__all__ = ["IndexedDataset", "crop_to_image", "evaluate", "instance_results", "move_to_device",
           "predict_as_configured", "predict_dataset"]

class IndexedDataset(Dataset):
    """Adds ``sample_index`` to every sample, so results can be de-duplicated and ordered."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        sample["sample_index"] = index
        return sample


def move_to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a collated batch onto ``device`` (lists, metainfo and strings stay), and the
    JPEGs the loader left encoded (``data.jpeg_decode: device``) decoded into their crops there."""
    moved = {key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
             for key, value in batch.items()}
    return decode_deferred_jpegs(moved, torch.device(device))


def crop_to_image(keypoints: torch.Tensor, warp: torch.Tensor) -> torch.Tensor:
    """Input-crop pixels -> image pixels: keypoints (B, K, 2) through the inverse of each sample's
    image-to-crop affine ``warp`` (B, 2, 3); batched, float64 for exactness."""
    matrix = torch.zeros(warp.shape[0], 3, 3, dtype=torch.float64, device=warp.device)
    matrix[:, :2] = warp.double()
    matrix[:, 2, 2] = 1.0
    inverse = torch.linalg.inv(matrix)[:, :2]
    points = keypoints.double()
    return points @ inverse[:, :, :2].transpose(1, 2) + inverse[:, None, :, 2]


def instance_results(batch: dict[str, Any], prediction: PoseResult) -> list[InstanceResult]:
    """One :class:`InstanceResult` per sample of ``batch`` (numpy, image pixels).

    A batch may mix keypoint sets of different sizes (category-agnostic data such as MP-100):
    the model then predicts for the widest, and each sample keeps its own first K keypoints.
    """
    keypoints = crop_to_image(prediction.keypoints.float(), batch["warp"]).cpu().numpy()
    scores = prediction.scores.float().cpu().numpy()
    visibility = batch.get("eval_visibility", batch["visibility"])
    results: list[InstanceResult] = []
    for i in range(len(keypoints)):
        k = len(batch["image_keypoints"][i])
        result: dict[str, Any] = {
            "image_id": int(batch["image_id"][i]),
            "id": int(batch["id"][i]),
            "category_id": int(batch["category_id"][i]),
            "keypoints": keypoints[i][:k],
            "keypoint_scores": scores[i][:k],
            "bbox": _numpy(batch["bbox"][i]),
            "bbox_score": float(batch["bbox_score"][i]) if "bbox_score" in batch else 1.0,
            "gt_keypoints": _numpy(batch["image_keypoints"][i]),
            "gt_visibility": _numpy(visibility[i]),
            "gt_bbox": _numpy(batch["bbox"][i]),
            "sample_index": int(batch["sample_index"][i]),
        }
        if "head_size" in batch:
            result["head_size"] = float(batch["head_size"][i])
        if "episode" in batch:
            result["episode"] = int(batch["episode"][i])
        results.append(result)  # type: ignore[arg-type]
    return results


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def predict_dataset(
    model: PoseModel,
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    flip_test: bool = False,
    autocast: Callable[[], Any] | None = None,
    num_replicas: int = 1,
    rank: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> list[InstanceResult]:
    """This process's share of ``dataset``'s results (with ``sample_index``), in its own order."""
    indexed = IndexedDataset(dataset)
    sampler = EpochSampler([len(indexed)], shuffle=False, num_replicas=num_replicas, rank=rank)
    loader = DataLoader(indexed, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate_samples, generator=torch.Generator(), persistent_workers=False)
    was_training = model.training
    model.eval()
    results: list[InstanceResult] = []
    try:
        with torch.inference_mode():
            for batch in loader:
                batch = move_to_device(batch, torch.device(device))
                with autocast() if autocast is not None else contextlib.nullcontext():
                    prediction = model.predict(batch, flip_test=flip_test)
                results.extend(instance_results(batch, prediction))
                if on_batch is not None:
                    on_batch(len(batch["image_id"]))
    finally:
        model.train(was_training)
    return results


def predict_as_configured(model: PoseModel, dataset: Dataset, config: ExperimentConfig,
                          precision: Precision = "fp32") -> list[InstanceResult]:
    """Every result of ``dataset`` in one process, in dataset order, predicted as ``config`` says:
    its evaluation batch size, loader workers and flip test, on the model's device, in
    ``precision``. What ``posecore eval`` scores, and ``posecore compare`` with it."""
    device = next(model.parameters()).device
    inference_autocast(device, precision)  # checked before the first batch
    return merge_gathered(predict_dataset(model, dataset, batch_size=config.data.eval_batch_size,
                                          num_workers=config.data.num_workers, device=device,
                                          flip_test=config.eval.flip_test,
                                          autocast=lambda: inference_autocast(device, precision)))


def merge_gathered(results: Iterable[InstanceResult]) -> list[InstanceResult]:
    """Results of every process -> dataset order, each sample once (padding repeats dropped)."""
    by_index: dict[int, InstanceResult] = {}
    for result in results:
        by_index.setdefault(int(result["sample_index"]), result)  # type: ignore[typeddict-item]
    return [by_index[index] for index in sorted(by_index)]


def evaluate(results: Sequence[InstanceResult], metrics: Sequence[Any]) -> dict[str, float]:
    """Feed merged results to each metric and join their tables (later keys do not overwrite)."""
    table: dict[str, float] = {}
    for metric in metrics:
        metric.reset()
        metric.update(list(results))
        for key, value in metric.compute().items():
            table.setdefault(key, value)
    return table
