"""Dataset metainfo: keypoint names, flip partners, skeleton, OKS sigmas, weights and colours.

Loadable from the JSON/YAML files posecore uses for every dataset (0-based indices), so that a
user can bring a new COCO-style dataset with one metainfo file and no code. The keypoint sets of
the datasets the core reads ship inside the package (``posecore/data/keypoint_sets``), so they
are also loadable by name ("coco", "crowdpose", ...).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from posecore._errors import ConfigError, did_you_mean

__all__ = ["DatasetMeta", "builtin_keypoint_sets", "load_metainfo"]

_BUILTIN_DIR = Path(__file__).with_name("keypoint_sets")


def _floats(value: Sequence[float] | None) -> tuple[float, ...]:
    return tuple(float(v) for v in value or ())


def _pairs(value: Sequence[Sequence[int]] | None) -> tuple[tuple[int, int], ...]:
    return tuple((int(a), int(b)) for a, b in value or ())


def _colors(value: Sequence[Sequence[int]] | None) -> tuple[tuple[int, int, int], ...]:
    return tuple(tuple(int(c) for c in rgb) for rgb in value or ())  # type: ignore[misc]


@attrs.frozen
class DatasetMeta:
    """Facts about one keypoint definition. Per-keypoint tuples have length ``num_keypoints``
    (or are empty when the dataset does not define them)."""

    name: str
    keypoint_names: tuple[str, ...] = attrs.field(converter=tuple)
    flip_indices: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    skeleton: tuple[tuple[int, int], ...] = attrs.field(default=(), converter=_pairs)
    sigmas: tuple[float, ...] = attrs.field(default=(), converter=_floats)
    joint_weights: tuple[float, ...] = attrs.field(default=(), converter=_floats)
    keypoint_colors: tuple[tuple[int, int, int], ...] = attrs.field(default=(), converter=_colors)
    skeleton_colors: tuple[tuple[int, int, int], ...] = attrs.field(default=(), converter=_colors)
    upper_body_ids: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    lower_body_ids: tuple[int, ...] = attrs.field(default=(), converter=tuple)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def __attrs_post_init__(self) -> None:
        k = self.num_keypoints
        if k == 0:
            raise ValueError(f"DatasetMeta {self.name!r}: keypoint_names is empty")
        for field in ("flip_indices", "sigmas", "joint_weights", "keypoint_colors"):
            value = getattr(self, field)
            if value and len(value) != k:
                raise ValueError(f"DatasetMeta {self.name!r}: {field} has {len(value)} entries, expected {k}")
        if self.flip_indices and sorted(self.flip_indices) != list(range(k)):
            raise ValueError(f"DatasetMeta {self.name!r}: flip_indices must be a permutation of 0..{k - 1}")
        unpaired = [i for i, j in enumerate(self.flip_indices) if self.flip_indices[j] != i]
        if unpaired:
            raise ValueError(
                f"DatasetMeta {self.name!r}: flip_indices must pair keypoints (flipping twice is the "
                f"identity); keypoints {unpaired} are not"
            )
        bad = [pair for pair in self.skeleton if not all(0 <= i < k for i in pair)]
        if bad:
            raise ValueError(
                f"DatasetMeta {self.name!r}: skeleton links {bad} index past the {k} keypoints "
                "(indices are 0-based; COCO files store them 1-based)"
            )
        if self.skeleton_colors and len(self.skeleton_colors) != len(self.skeleton):
            raise ValueError(f"DatasetMeta {self.name!r}: skeleton_colors must have one colour per link")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "metainfo") -> DatasetMeta:
        """Read posecore's metainfo mapping (``dataset_name``, ``keypoint_names``, ``skeleton_links``...)."""
        if not (data.get("dataset_name") or data.get("name")):
            raise ConfigError(f"{source}: required field 'dataset_name' is missing")
        try:
            return cls(
                name=data.get("dataset_name") or data["name"],
                keypoint_names=data["keypoint_names"],
                flip_indices=data.get("flip_indices") or (),
                skeleton=data.get("skeleton_links") or data.get("skeleton") or (),
                sigmas=data.get("sigmas") or (),
                joint_weights=data.get("joint_weights") or (),
                keypoint_colors=data.get("keypoint_colors") or (),
                skeleton_colors=data.get("skeleton_link_colors") or data.get("skeleton_colors") or (),
                upper_body_ids=data.get("upper_body_ids") or (),
                lower_body_ids=data.get("lower_body_ids") or (),
            )
        except KeyError as exc:
            raise ConfigError(f"{source}: required field {exc.args[0]!r} is missing") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}") from None


def builtin_keypoint_sets() -> list[str]:
    """Names of the keypoint sets shipped with posecore, loadable with :func:`load_metainfo`."""
    return sorted(path.stem for path in _BUILTIN_DIR.glob("*.json"))


@functools.lru_cache(maxsize=64)
def _load_builtin(name: str) -> DatasetMeta:
    path = _BUILTIN_DIR / f"{name}.json"
    return DatasetMeta.from_dict(json.loads(path.read_text(encoding="utf-8")), source=f"built-in keypoint set {name!r}")


def load_metainfo(source: str | Path) -> DatasetMeta:
    """Load a metainfo JSON or YAML file, or a built-in keypoint set by name (``"coco"``)."""
    if isinstance(source, str) and source in builtin_keypoint_sets():
        return _load_builtin(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = did_you_mean(str(source), builtin_keypoint_sets()) if "/" not in str(source) else ""
        raise ConfigError(
            f"metainfo file not found: {path}{hint} (give a JSON/YAML file or a built-in keypoint set: "
            f"{', '.join(builtin_keypoint_sets())})"
        ) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"metainfo file {path} cannot be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"metainfo file {path} must hold a mapping")
    return DatasetMeta.from_dict(data, source=f"metainfo file {path}")
