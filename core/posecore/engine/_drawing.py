"""Pictures of a run's predictions: the keypoints drawn on the original images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posecore._visualize import contact_sheet, draw_pose, save_image
from posecore.data._images import read_image
from posecore.metrics._base import InstanceResult

__all__ = ["draw_results"]


def draw_results(results: Sequence[InstanceResult], dataset: Any, folder: Path, count: int) -> list[Path]:
    """Draw the first ``count`` images' predicted instances (all instances of each image) into
    ``folder/<image id>.jpg`` and a contact sheet ``folder/overview.jpg``."""
    source = getattr(dataset, "dataset", dataset)  # through a PipelineDataset
    by_image: dict[Any, list[InstanceResult]] = {}
    for result in results:
        if result["image_id"] in by_image or len(by_image) < count:
            by_image.setdefault(result["image_id"], []).append(result)
    written, pictures = [], []
    for image_id, instances in by_image.items():
        first = source.annotation(int(instances[0]["sample_index"]))  # type: ignore[typeddict-item]
        canvas = read_image(first["image_path"], image_id=image_id)
        for result in instances:
            meta = source.annotation(int(result["sample_index"]))["meta"]  # type: ignore[typeddict-item]
            canvas = draw_pose(canvas, result["keypoints"], result["keypoint_scores"], meta, bbox=result.get("bbox"))
        written.append(save_image(canvas, folder / f"{image_id}.jpg"))
        pictures.append(canvas)
    if pictures:
        written.append(save_image(contact_sheet(pictures, columns=4, cell=320), folder / "overview.jpg"))
    return written
