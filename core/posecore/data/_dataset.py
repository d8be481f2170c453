"""The top-down dataset base every reader builds on, and the wrapper that runs a pipeline.

Readers parse their annotation format once into a list of plain instance records and hand the
rest to :class:`TopdownDataset`: copying records into samples, reading images, reporting what
was skipped. :class:`PipelineDataset` applies a transform pipeline with a random generator
derived from ``(seed, epoch, index)``, so augmentation does not depend on the number of
workers or on which worker serves which index, and a resumed run sees the same samples.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from posecore._errors import DataError
from posecore.data._images import read_image
from posecore.data._metainfo import DatasetMeta
from posecore.data._sample import Sample

__all__ = [
    "LoadReport",
    "PipelineDataset",
    "TopdownDataset",
    "as_integer",
    "as_number",
    "as_numbers",
    "image_size_of",
    "require_fields",
    "require_unique_id",
]

#: A transform pipeline: ``(sample, rng) -> sample``.
Pipeline = Callable[[dict[str, Any], np.random.Generator], dict[str, Any]]


class LoadReport:
    """Counts what a reader skipped or found odd, and says so once at the end of loading.

    ``skip`` is for instances left out on purpose (no labelled keypoint, zero-area box, detection
    below the score threshold); ``note`` for kept instances worth knowing about (keypoints
    outside the image). Nothing is dropped without being counted in the final warning.
    """

    def __init__(self, source: str | Path) -> None:
        self.source = str(source)
        self.skipped: Counter[str] = Counter()
        self.noted: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def skip(self, reason: str, count: int = 1, example: str | None = None) -> None:
        self.skipped[reason] += count
        if example is not None:
            self.examples.setdefault(reason, example)

    def note(self, reason: str, count: int = 1, example: str | None = None) -> None:
        self.noted[reason] += count
        if example is not None:
            self.examples.setdefault(reason, example)

    def _describe(self, counts: Counter[str]) -> str:
        return ", ".join(
            f"{n} {reason}" + (f" (first: {self.examples[reason]})" if reason in self.examples else "")
            for reason, n in counts.items()
        )

    def finish(self, kept: int) -> None:
        """Warn about skipped and noted instances; raise if nothing is left."""
        if kept == 0:
            raise DataError(f"{self.source}: no usable instance ({self._describe(self.skipped) or 'the file lists none'})")
        parts = []
        if self.skipped:
            parts.append(f"skipped {sum(self.skipped.values())} instance(s): {self._describe(self.skipped)}")
        if self.noted:
            parts.append(f"kept, but {self._describe(self.noted)}")
        if parts:
            warnings.warn(f"{self.source}: {kept} instance(s) loaded; {'; '.join(parts)}", stacklevel=_caller_level())


class TopdownDataset(Dataset):
    """One sample per person (or animal, hand, object) instance.

    Subclasses parse their format into ``instances``: dicts with ``image_path``, ``image_id``,
    ``id``, ``category_id``, ``keypoints`` (K, 2), ``visibility`` (K,), ``bbox`` (4,) x1, y1,
    x2, y2, ``bbox_score``, optionally ``image_size`` (width, height), ``meta`` (when the
    keypoint set differs per instance, as in MP-100) and any extra fields their metrics need
    (``head_size`` for MPII). Arrays are float32 and copied into every sample.

    Attributes:
        meta: the dataset's keypoint set.
        dataset_index: index of this dataset in a multi-dataset experiment.
    """

    def __init__(self, meta: DatasetMeta, instances: list[dict[str, Any]], dataset_index: int = 0) -> None:
        self.meta = meta
        self.instances = instances
        self.dataset_index = dataset_index

    def __len__(self) -> int:
        return len(self.instances)

    def annotation(self, index: int) -> Sample:
        """The sample without its image (pipelines read it themselves)."""
        sample: dict[str, Any] = {
            key: value.copy() if isinstance(value, np.ndarray) else value for key, value in self.instances[index].items()
        }
        sample.setdefault("meta", self.meta)
        sample["dataset_index"] = self.dataset_index
        return sample  # type: ignore[return-value]

    def __getitem__(self, index: int) -> Sample:
        sample = self.annotation(index)
        sample["image"] = read_image(sample["image_path"], image_id=sample["image_id"],
                                     expected_size=sample.get("image_size"))
        return sample


class PipelineDataset(Dataset):
    """``dataset`` with ``pipeline`` applied to every sample.

    Args:
        dataset: a :class:`TopdownDataset` (its images are then read once, by the pipeline) or
            any dataset of samples with their image. Samples with a ``support`` list (few-shot
            episodes) have each support sample transformed too, with its own generator.
        pipeline: ``(sample, rng) -> sample``.
        seed: base seed; sample ``i`` of epoch ``e`` uses ``np.random.default_rng((seed, e, i))``.
    """

    def __init__(self, dataset: Dataset, pipeline: Pipeline, seed: int = 0) -> None:
        self.dataset = dataset
        self.pipeline = pipeline
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        annotation = getattr(self.dataset, "annotation", None)
        sample = dict(annotation(index) if annotation is not None else self.dataset[index])
        if "support" in sample:  # few-shot episodes: every support sample goes through the pipeline too
            sample["support"] = [
                self.pipeline(dict(support), np.random.default_rng((self.seed, self.epoch, index, shot + 1)))
                for shot, support in enumerate(sample["support"])
            ]
        return self.pipeline(sample, np.random.default_rng((self.seed, self.epoch, index)))

    @property
    def meta(self) -> DatasetMeta | None:
        return getattr(self.dataset, "meta", None)


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside posecore, so a warning points at user code."""
    package = str(Path(__file__).resolve().parents[1])
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def require_fields(record: Mapping[str, Any], fields: tuple[str, ...], where: str, fix: str = "") -> None:
    """Raise a :class:`DataError` naming the missing fields of one annotation record."""
    missing = [field for field in fields if field not in record]
    if missing:
        raise DataError(f"{where} lacks required field(s) {', '.join(map(repr, missing))}{fix}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_numbers(value: Any, where: str, field: str, *, count: int | None = None,
               multiple_of: int | None = None) -> np.ndarray:
    """``value`` as a flat float64 array of finite numbers, or a :class:`DataError` naming the field.

    JSON ``null`` (which numpy would turn into NaN), NaN, infinities and strings are errors:
    a coordinate nobody can compute with must not slip into training silently.
    """
    try:
        raw = np.asarray(value)
        array = raw.astype(np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{where}: field {field!r} must be a list of numbers; got {_shown(value)}") from None
    if isinstance(value, (str, bytes, Mapping)) or raw.ndim == 0:
        raise DataError(f"{where}: field {field!r} must be a list of numbers; got {_shown(value)}")
    if raw.dtype.kind in "USO":  # numpy turns "81" into 81.0 without a word
        _reject_text(value, where, field)
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        raise DataError(f"{where}: field {field!r} holds {len(bad)} value(s) that are not finite numbers "
                        f"(null, NaN or infinity), the first at position {int(bad[0])}")
    if count is not None and array.size != count:
        raise DataError(f"{where}: field {field!r} must hold {count} numbers; got {array.size}: {_shown(value)}")
    if multiple_of is not None and array.size % multiple_of:
        raise DataError(f"{where}: field {field!r} must hold groups of {multiple_of} numbers; it has {array.size}")
    return array


def _reject_text(value: Any, where: str, field: str) -> None:
    """Text that looks like a number is still an error: a file that quotes its numbers was written
    by something that may have mangled them too."""
    for position, item in enumerate(np.asarray(value, dtype=object).reshape(-1)):
        if isinstance(item, str):
            raise DataError(f"{where}: field {field!r} holds the text {_shown(item)} at position {position}; "
                            "numbers must be JSON numbers, without quotes")


def as_number(value: Any, where: str, field: str) -> float:
    """``value`` as a finite float (an area, a score), or a :class:`DataError` naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
        raise DataError(f"{where}: field {field!r} must be a finite number; got {_shown(value)}")
    return float(value)


def as_integer(value: Any, where: str, field: str) -> int:
    """``value`` as an int (ids, category ids), or a :class:`DataError` naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise DataError(f"{where}: field {field!r} must be an integer; got {_shown(value)}")
    return int(value)


def image_size_of(image: Mapping[str, Any], where: str) -> tuple[float, float] | None:
    """An image record's ``(width, height)``, ``None`` when it does not state both; sizes that are
    not positive numbers are a :class:`DataError`."""
    if "width" not in image or "height" not in image:
        return None
    width, height = image["width"], image["height"]
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise DataError(f"{where}: field {name!r} must be a positive number of pixels; got {_shown(value)}")
    return width, height


def require_unique_id(seen: dict[Any, int], key: Any, position: int, where: str, what: str) -> None:
    """Record that ``what`` (``"image"``, ``"annotation"``) id ``key`` sits at ``position``; a second
    record with the same id is a :class:`DataError` (the later one would silently replace or
    shadow the first)."""
    if key in seen:
        raise DataError(f"{where}: {what} id {key!r} is used twice (entries {seen[key]} and {position}); "
                        f"every {what} needs its own id")
    seen[key] = position
