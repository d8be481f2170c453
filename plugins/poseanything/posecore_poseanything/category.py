"""Custom categories without code: support images, their keypoints and a skeleton, from JSON/YAML.

A category file (``--category FILE``)::

    name: sofa                        # optional (default: the file's name)
    keypoint_names: [front_left, ...] # optional; K comes from the supports' keypoints
    skeleton: [[0, 1], [1, 2]]        # limbs as pairs of keypoint indices, 0-based
    skeleton_base: 0                  # optional: 1 when the pairs count from 1 (COCO style)
    supports:                         # one entry per shot, all with the same K keypoints
      - image: sofa1.jpg              # relative to this file's folder
        keypoints: [[x, y], [x, y, 0], ...]   # image pixels; a third value 0: not visible here
        bbox: [x1, y1, x2, y2]        # optional (default: the whole image)

The same pieces also come as separate files (``--support IMAGE --support-keypoints FILE
--skeleton FILE``): a keypoints file holds ``[[x, y], ...]`` (or ``{keypoints: [...]}``) and a
skeleton file ``[[i, j], ...]`` (or ``{skeleton: [...], skeleton_base: 0}``).

Images may be any size or aspect ratio and in colour or grey: they are read as RGB and the box is
warped into the model's square crop exactly as in training.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import yaml

from posecore import ConfigError, save_image
from posecore.config import atomic_write_text
from posecore.data import DatasetMeta, read_image

__all__ = ["Category", "SupportShot", "category_from_files", "load_category", "save_category"]


@attrs.frozen(eq=False)
class SupportShot:
    """One support image with its keypoints.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        keypoints: (K, 2) x, y in image pixels.
        visibility: (K,) 1 where the keypoint is marked, 0 where not visible in this shot.
        bbox: (4,) x1, y1, x2, y2 of the instance (default: the whole image).
        source: the image's path, for messages.
    """

    image: np.ndarray
    keypoints: np.ndarray
    visibility: np.ndarray
    bbox: np.ndarray
    source: str


@attrs.frozen(eq=False)
class Category:
    """A keypoint definition shown by examples: ``shots`` and the limbs between keypoints."""

    name: str
    shots: tuple[SupportShot, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    keypoint_names: tuple[str, ...] = ()

    @property
    def num_keypoints(self) -> int:
        return len(self.shots[0].keypoints)

    @property
    def meta(self) -> DatasetMeta:
        """The category as a posecore keypoint set (for the model's graph and for drawing)."""
        names = self.keypoint_names or tuple(str(i) for i in range(self.num_keypoints))
        return DatasetMeta(name=self.name, keypoint_names=names, flip_indices=range(len(names)),
                           skeleton=self.skeleton)


def _read(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)  # YAML is a superset of JSON: one reader for both
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid JSON/YAML: {exc}") from None


def _keypoints(value: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``[[x, y], [x, y, v], ...]`` -> keypoints (K, 2), visibility (K,)."""
    if isinstance(value, dict) and "keypoints" in value:
        value = value["keypoints"]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: keypoints must be a non-empty list of [x, y] (or [x, y, visible]) pairs; "
                          f"got {value!r:.80}")
    points, visible = [], []
    for index, point in enumerate(value):
        if not isinstance(point, (list, tuple)) or len(point) not in (2, 3) or not all(
                isinstance(c, (int, float)) and not isinstance(c, bool) and np.isfinite(c) for c in point):
            raise ConfigError(f"{where}: keypoint {index} must be [x, y] or [x, y, visible] numbers; got {point!r}")
        points.append(point[:2])
        visible.append(1.0 if len(point) == 2 or point[2] > 0 else 0.0)
    return np.asarray(points, np.float32), np.asarray(visible, np.float32)


def _skeleton(value: Any, base: Any, num_keypoints: int, where: str) -> tuple[tuple[int, int], ...]:
    """0-based links from ``[[i, j], ...]`` counted from ``base`` (0 or 1)."""
    if isinstance(value, dict):
        base = value.get("skeleton_base", base)
        value = value.get("skeleton", [])
    if base not in (0, 1):
        raise ConfigError(f"{where}: skeleton_base must be 0 or 1; got {base!r}")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: skeleton must be a list of [i, j] keypoint index pairs; got {value!r:.80}")
    links = []
    for index, link in enumerate(value):
        if (not isinstance(link, (list, tuple)) or len(link) != 2
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in link)):
            raise ConfigError(f"{where}: skeleton entry {index} must be a pair of keypoint indices [i, j]; got {link!r}")
        a, b = link[0] - base, link[1] - base
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints):
            raise ConfigError(f"{where}: skeleton entry {index} {list(link)} names a keypoint outside "
                              f"{base}..{num_keypoints - 1 + base} (the supports have {num_keypoints} keypoints, "
                              f"counted from {base}; set skeleton_base: 1 for 1-based pairs)")
        links.append((a, b))
    return tuple(links)


def _shot(image_path: Path, keypoints: Any, bbox: Any, where: str) -> SupportShot:
    image = read_image(image_path)
    points, visible = _keypoints(keypoints, where)
    height, width = image.shape[:2]
    if bbox is None:
        box = np.array([0.0, 0.0, width - 1.0, height - 1.0], np.float32)
    else:
        box = np.asarray(bbox, np.float32).reshape(-1) if isinstance(bbox, list) else np.zeros(0)
        if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]):
            raise ConfigError(f"{where}: bbox must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1; got {bbox!r}")
    if not visible.any():
        raise ConfigError(f"{where}: no keypoint is marked visible")
    return SupportShot(image, points, visible, box, str(image_path))


def _check_same_k(shots: Sequence[SupportShot], where: str) -> None:
    counts = [len(shot.keypoints) for shot in shots]
    if len(set(counts)) > 1:
        raise ConfigError(f"{where}: every support needs the same keypoints; the supports have {counts} keypoints")


def load_category(path: str | Path) -> Category:
    """A category file (see the module docstring)."""
    path = Path(path)
    data = _read(path, "category file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a category file is a mapping with 'supports' and 'skeleton'; got "
                          f"{type(data).__name__}")
    unknown = set(data) - {"name", "keypoint_names", "skeleton", "skeleton_base", "supports"}
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}; a category file has name, "
                          "keypoint_names, skeleton, skeleton_base and supports")
    supports = data.get("supports")
    if not isinstance(supports, list) or not supports:
        raise ConfigError(f"{path}: 'supports' must list at least one {{image, keypoints}} entry")
    shots = []
    for index, entry in enumerate(supports):
        where = f"{path}: supports[{index}]"
        if not isinstance(entry, dict) or "image" not in entry or "keypoints" not in entry:
            raise ConfigError(f"{where} needs 'image' and 'keypoints'")
        shots.append(_shot(path.parent / str(entry["image"]), entry["keypoints"], entry.get("bbox"), where))
    _check_same_k(shots, str(path))
    k = len(shots[0].keypoints)
    names = tuple(str(n) for n in data.get("keypoint_names") or ())
    if names and len(names) != k:
        raise ConfigError(f"{path}: keypoint_names lists {len(names)} names but the supports have {k} keypoints")
    skeleton = _skeleton(data.get("skeleton") or [], data.get("skeleton_base", 0), k, f"{path}: skeleton")
    return Category(str(data.get("name") or path.stem), tuple(shots), skeleton, names)


def category_from_files(images: Sequence[str | Path], keypoint_files: Sequence[str | Path],
                        skeleton_file: str | Path | None) -> Category:
    """A category from ``--support IMAGE`` (per shot), ``--support-keypoints FILE`` (one per image)
    and ``--skeleton FILE``."""
    if not images:
        raise ConfigError("poseanything needs a support: --category FILE, or --support IMAGE with "
                          "--support-keypoints FILE (and --skeleton FILE)")
    if len(keypoint_files) != len(images):
        raise ConfigError(f"give one --support-keypoints FILE per --support IMAGE; got {len(images)} image(s) and "
                          f"{len(keypoint_files)} keypoint file(s)")
    shots = [_shot(Path(image), _read(Path(points), "keypoints file"), None, str(points))
             for image, points in zip(images, keypoint_files, strict=True)]
    _check_same_k(shots, "--support-keypoints")
    skeleton: tuple[tuple[int, int], ...] = ()
    if skeleton_file is not None:
        skeleton = _skeleton(_read(Path(skeleton_file), "skeleton file"), 0, len(shots[0].keypoints),
                             str(skeleton_file))
    return Category(Path(images[0]).stem, tuple(shots), skeleton)


def save_category(category: Category, folder: str | Path) -> Path:
    """Write ``category`` as a category file, ``folder/<name>.yaml``, with each support image beside
    it (``<name>-support<i>.png``, lossless); :func:`load_category` and ``posecore predict
    --category`` read it back as the same category. Files are written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", category.name).strip("-.") or "category"
    supports = []
    for index, shot in enumerate(category.shots):
        image = f"{stem}-support{index}.png"
        save_image(shot.image, folder / image)
        points = [[round(float(x), 2), round(float(y), 2)] + ([] if visible > 0 else [0])
                  for (x, y), visible in zip(shot.keypoints, shot.visibility, strict=True)]
        supports.append({"image": image, "keypoints": points, "bbox": [round(float(v), 2) for v in shot.bbox]})
    document: dict[str, Any] = {"name": category.name}
    if category.keypoint_names:
        document["keypoint_names"] = list(category.keypoint_names)
    document["skeleton"] = [list(link) for link in category.skeleton]
    document["supports"] = supports
    return atomic_write_text(folder / f"{stem}.yaml", yaml.safe_dump(document, sort_keys=False))
