"""``vlpose_styled``: any dataset's samples with the ``style`` field VLPose picks its prompt by.

The original derives the style from the image path (``img_path.split('/')[-2]``: Human-Art's
``images/<group>/<scene>/<file>``). Here it is an explicit sample field, filled by this wrapper:

* ``source="parent_dir"``: the name of the image file's parent folder (Human-Art);
* ``source="cycle"``: ``styles[i % len(styles)]`` for sample ``i`` (synthetic data, tests);
* ``source="fixed"``: ``styles[0]`` for every sample.

A sample that already has a ``style`` keeps it.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Annotated, Any, Literal

from torch.utils.data import Dataset

from posecore import ConfigError, DataError, Nested

__all__ = ["StyledDataset", "write_styled_example"]


class StyledDataset(Dataset):
    """``dataset`` with a ``style`` per sample.

    Args:
        dataset: a ``datasets`` component (nested spec).
        source: ``parent_dir``, ``cycle`` or ``fixed`` (see the module docstring).
        styles: the styles of ``cycle`` / ``fixed``.
        dataset_index: index of this dataset in a multi-dataset experiment (the engine sets it).
    """

    def __init__(self, dataset: Annotated[Dataset, Nested("datasets")],
                 source: Literal["parent_dir", "cycle", "fixed"] = "parent_dir", styles: tuple[str, ...] = (),
                 dataset_index: int = 0) -> None:
        if source not in ("parent_dir", "cycle", "fixed"):
            raise ConfigError(f"vlpose_styled.source must be parent_dir, cycle or fixed; got {source!r}")
        if source != "parent_dir" and not styles:
            raise ConfigError(f"vlpose_styled.styles must name at least one style for source {source!r}")
        if getattr(dataset, "meta", None) is None:
            raise ConfigError("vlpose_styled.dataset must be a dataset with a keypoint set ('meta')")
        self.dataset = dataset
        self.source = source
        self.styles = tuple(styles)
        self.meta = dataset.meta
        self.dataset_index = dataset_index

    def __getattr__(self, name: str) -> Any:
        # The wrapped dataset's attributes (ann_file for COCO AP, has_ground_truth, ...).
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _style(self, sample: dict[str, Any], index: int) -> dict[str, Any]:
        sample = dict(sample)
        sample["dataset_index"] = self.dataset_index
        if "style" in sample:
            return sample
        if self.source == "parent_dir":
            path = sample.get("image_path")
            if not path:
                raise DataError("vlpose_styled: source parent_dir needs the samples' image_path")
            sample["style"] = PurePath(str(path)).parent.name
        elif self.source == "cycle":
            sample["style"] = self.styles[index % len(self.styles)]
        else:
            sample["style"] = self.styles[0]
        return sample

    def annotation(self, index: int) -> dict[str, Any]:
        """The sample without its image (the pipeline reads it)."""
        read = getattr(self.dataset, "annotation", None)
        return self._style(read(index) if read is not None else self.dataset[index], index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._style(self.dataset[index], index)


def write_styled_example(directory: Path) -> dict[str, Any]:
    """Contract-check example: 6 synthetic images, two styles in turn."""
    inner = {"type": "synthetic_people", "split": "train", "num_images": 6, "cache_dir": str(directory)}
    return {"dataset": inner, "source": "cycle", "styles": ["cartoon", "sketch"]}
