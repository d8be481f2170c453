"""MP-100 (Xu et al., "Pose for Everything", ECCV 2022): category-agnostic pose estimation.

One COCO-format file holds many categories, each with its own keypoints (8 to 68) and skeleton,
so every instance carries ``meta``: a :class:`DatasetMeta` of its category, named
``mp100/<category name>``, with the category's keypoint names (``"0"``..``"K-1"`` where the file
lists none, as for both ``face`` categories), an identity flip (CAPE methods do not flip) and a
0-based skeleton. K comes from the annotations (``len(keypoints) // 3``), checked against the
category's names and across its annotations.

Skeletons exist in two releases. The original MP-100 files mix 1-based links (AP-10K bodies,
person, hand, macaque, fly, locust), 0-based ones (car, bus, suv) and none (58 categories); the
PoseAnything release gives every category 0-based links. ``skeleton`` chooses:

* ``"file"``: the file's own links, made 0-based; the base is read from the indices (a link to
  index 0 means 0-based, one to index K means 1-based; links within 1..K-1 only are ambiguous and an
  error);
* ``"updated"`` / ``"original"``: that release's links for the category, from the table shipped in
  ``posecore/data/keypoint_sets/mp100.json`` (already 0-based), whatever the file holds;
* ``"annotation"``: the file's links exactly as written, read as 0-based, as PoseAnything's code
  reads ``categories[].skeleton`` (it pads to 100 slots, so a link to an index at or beyond K
  only reaches a masked slot and carries nothing there: such links are dropped, and counted in
  the loading report). The skeletons are then the file's release, as in the released code.

Records follow PoseAnything/CapeFormer (``TestPoseDataset``): instances are listed image by image
in the file's ``images`` order, each image's annotations in file order; crowd annotations
(``iscrowd``) are skipped; the box is mmpose 0.x's clipped box and must have positive size (and
``area`` > 0 where given); an annotation whose keypoints are all zero or whose ``num_keypoints``
is 0 is skipped. Every skip is counted in the loading report. Visibility is ``min(1, v)``. Nothing
is padded here: PoseAnything pads to 100 keypoint slots inside its model.

Items, chosen by ``episodes`` and ``num_episodes``:

* ``episodes=False``: one item per instance, like any top-down dataset.
* ``episodes=True, num_episodes=0`` (training): PoseAnything's balanced random pairs. Each category
  with instances gets as many items as the largest category has instances; item ``i`` belongs to
  category ``i // that count`` and draws ``num_shots + 1`` distinct instances of it (the last is the
  query) from ``numpy.random.default_rng((seed, epoch, i))``, so any worker draws the same pairs.
  Shuffle indices with the sampler and call :meth:`MP100Dataset.set_epoch` on this dataset every
  epoch to draw new pairs, as PoseAnything's ``ShufflePairedSamplesHook`` does (a wrapping
  :class:`~posecore.data._dataset.PipelineDataset` keeps its own epoch and does not forward it).
* ``episodes=True, num_episodes > 0`` (validation, test): the fixed episodes of PoseAnything's
  ``make_paired_samples``. For each category in the order of the file's ``categories``, and for each
  of ``num_episodes`` episodes, ``random.Random(seed).sample`` (CPython's, one generator for the
  whole file) draws ``num_shots + num_queries`` distinct instances of the category from its list;
  the first ``num_shots`` are the supports and each of the others is a query paired with them.
  ``seed=1`` reproduces the official episodes (PoseAnything seeds Python's ``random`` with 1).

An episode item is its query's sample with ``support``: the list of ``num_shots`` support samples
(annotations; :meth:`MP100Dataset.__getitem__` reads their images too, and
:class:`~posecore.data._dataset.PipelineDataset` transforms each of them) and ``episode`` (the
episode's number). Its ``id`` is the query's annotation id, so evaluation items repeat ids when an
instance is the query of several episodes; ``(episode, id)`` is unique. Every item also has
``eval_visibility``: the keypoints a PCK evaluation counts, those visible in the query AND in every
support (the query's ``visibility`` without episodes).

``dataset.meta`` describes the dataset as a whole: ``mp100``, with as many keypoint slots as the
file's widest category, named by position, no flip and no skeleton. Samples always carry their
own category's ``meta``; use it, not ``dataset.meta``, for anything per keypoint.
"""

from __future__ import annotations

import functools
import json
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from posecore._errors import ConfigError, DataError
from posecore.data._coco import _clean_box, keypoint_triplets, load_coco_json
from posecore.data._dataset import (
    LoadReport,
    TopdownDataset,
    as_integer,
    as_number,
    image_size_of,
    require_fields,
    require_unique_id,
)
from posecore.data._images import read_image
from posecore.data._metainfo import DatasetMeta
from posecore.data._sample import Sample

__all__ = [
    "MP100Dataset",
    "SKELETON_SOURCES",
    "mp100_categories",
    "mp100_splits",
    "skeleton_to_zero_based",
    "write_example",
]

SKELETON_SOURCES = ("file", "updated", "original", "annotation")
_TABLE = Path(__file__).with_name("keypoint_sets") / "mp100.json"


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return json.loads(_TABLE.read_text(encoding="utf-8"))


def mp100_categories() -> dict[int, dict[str, Any]]:
    """The shipped MP-100 fact table: category id -> ``{id, name, supercategory, num_keypoints,
    keypoint_names, skeleton_updated, skeleton_original, original_release_base}`` (skeletons 0-based)."""
    return {int(category["id"]): category for category in _table()["categories"]}


def mp100_splits() -> dict[int, dict[str, list[int]]]:
    """MP-100's five category splits: split number (1..5) -> ``{"train", "val", "test"}`` category
    ids (70 / 10 / 20, disjoint; each category is a test category of exactly one split)."""
    return {int(split): {part: list(ids) for part, ids in parts.items()} for split, parts in _table()["splits"].items()}


def skeleton_to_zero_based(links: Sequence[Sequence[int]], num_keypoints: int,
                           where: str) -> tuple[tuple[int, int], ...]:
    """0-based links from a skeleton written 0- or 1-based, telling which from the indices.

    A link to index 0 means 0-based; one to index K means 1-based (COCO style). Links that touch
    neither could be either, and that is an error rather than a guess.
    """
    if not links:
        return ()
    try:
        pairs = np.asarray(links, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: skeleton must be a list of [i, j] index pairs; got {links!r}") from None
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise DataError(f"{where}: skeleton must be a list of [i, j] index pairs; got {links!r}")
    low, high, k = int(pairs.min()), int(pairs.max()), num_keypoints
    if low < 0 or high > k or (low == 0 and high == k):
        raise DataError(f"{where}: skeleton indices run from {low} to {high}, which fits neither 0-based (0..{k - 1}) "
                        f"nor 1-based (1..{k}) indexing of its {k} keypoints")
    if high == k:
        base = 1
    elif low == 0:
        base = 0
    else:
        raise DataError(f"{where}: skeleton indices lie within 1..{k - 1}, so whether they count from 0 or 1 cannot "
                        "be told; write them 0-based, or take MP-100's own skeletons with skeleton='updated' or "
                        "'original'")
    return tuple((int(a) - base, int(b) - base) for a, b in pairs)


class MP100Dataset(TopdownDataset):
    """MP-100 instances with per-category keypoint sets, as instances or as support/query episodes.

    Args:
        ann_file: an MP-100 json (``mp100_split1_test.json``...), either release.
        image_root: folder the images' ``file_name`` s (``<category folder>/<file>``) are relative
            to (default: ``ann_file``'s folder).
        skeleton: where skeletons come from: ``"file"``, ``"updated"`` (PoseAnything release),
            ``"original"`` (MP-100 release) or ``"annotation"`` (the file's links as written, as
            PoseAnything reads them); see the module docstring.
        episodes: yield (supports, query) episodes instead of single instances.
        num_shots: supports per episode (S).
        num_queries: queries per evaluation episode.
        num_episodes: evaluation episodes per category; 0 draws random training pairs instead.
        seed: seed of the episodes (1 reproduces PoseAnything's evaluation episodes).
        dataset_index: index of this dataset in a multi-dataset experiment.
    """

    def __init__(
        self,
        ann_file: str,
        image_root: str | None = None,
        skeleton: Literal["file", "updated", "original", "annotation"] = "file",
        episodes: bool = False,
        num_shots: int = 1,
        num_queries: int = 15,
        num_episodes: int = 0,
        seed: int = 1,
        dataset_index: int = 0,
    ) -> None:
        _check_arguments(skeleton, episodes, num_shots, num_queries, num_episodes, seed)
        self.ann_file = Path(ann_file)
        self.image_root = Path(image_root) if image_root else self.ann_file.parent
        self.skeleton_source = skeleton
        self.episodes = episodes
        self.num_shots = num_shots
        self.num_queries = num_queries
        self.num_episodes = num_episodes
        self.seed = seed
        self.epoch = 0
        data = load_coco_json(self.ann_file)
        if "categories" not in data:
            raise DataError(f"{self.ann_file}: top-level field 'categories' is missing (MP-100 files define each "
                            "category's keypoints and skeleton there)")
        self.categories = self._index_categories(data["categories"])
        self.category_metas: dict[Any, DatasetMeta] = {}
        report = LoadReport(self.ann_file)
        instances = self._read_instances(data["images"], data["annotations"], report)
        #: category id -> positions of its instances in ``instances``, categories in file order.
        self.category_instances: dict[Any, list[int]] = {cat_id: [] for cat_id in self.categories}
        for position, instance in enumerate(instances):
            self.category_instances[instance["category_id"]].append(position)
        empty = [cat_id for cat_id, members in self.category_instances.items() if not members]
        if empty and instances and episodes:
            report.note(f"categor{'y' if len(empty) == 1 else 'ies'} without any instance (no episodes)", len(empty),
                        example=f"category id {empty[0]}")
        report.finish(len(instances))
        super().__init__(self._whole_dataset_meta(), instances, dataset_index)
        self._eligible = [cat_id for cat_id, members in self.category_instances.items() if members]
        self._per_category = max(len(self.category_instances[cat_id]) for cat_id in self._eligible)
        self._pairs: list[tuple[tuple[int, ...], int, int]] = []
        if episodes:
            needed = num_shots + (num_queries if num_episodes else 1)
            for cat_id in self._eligible:
                self._check_enough(cat_id, needed)
            if num_episodes:
                self._pairs = self._evaluation_pairs()

    def _whole_dataset_meta(self) -> DatasetMeta:
        """``mp100`` with one slot per keypoint of the file's widest category (see the module docstring)."""
        widest = max(meta.num_keypoints for meta in self.category_metas.values())
        return DatasetMeta(name="mp100", keypoint_names=[str(i) for i in range(widest)], flip_indices=range(widest))

    # -- parsing -------------------------------------------------------------------------------

    def _index_categories(self, categories: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        index = {}
        for position, category in enumerate(categories):
            require_fields(category, ("id",), f"{self.ann_file}: categories[{position}]")
            where = f"{self.ann_file}: category {category['id']} {category.get('name', '')!r}"
            if category["id"] in index:
                raise DataError(f"{where} is defined twice in 'categories' (ids must be unique)")
            index[category["id"]] = {**category, "where": where}
        return index

    def _read_instances(self, images: list[dict[str, Any]], annotations: list[dict[str, Any]],
                        report: LoadReport) -> list[dict[str, Any]]:
        image_index: dict[Any, dict[str, Any]] = {}
        positions: dict[Any, int] = {}
        for position, image in enumerate(images):
            require_fields(image, ("id", "file_name"), f"{self.ann_file}: images[{position}]")
            require_unique_id(positions, image["id"], position, f"{self.ann_file}: 'images'", "image")
            image_index[image["id"]] = image
        by_image: dict[Any, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        ids: dict[Any, int] = {}
        for position, ann in enumerate(annotations):
            where = self._where(ann, position)
            require_fields(ann, ("image_id", "category_id", "bbox", "keypoints"), where)
            if "id" in ann:
                require_unique_id(ids, as_integer(ann["id"], where, "id"), position, f"{self.ann_file}: 'annotations'",
                                  "annotation")
            if ann["image_id"] not in image_index:
                raise DataError(f"{where} names unknown image_id {ann['image_id']!r} "
                                f"(not in the 'images' of {self.ann_file})")
            by_image[ann["image_id"]].append((position, ann))
        instances = []
        for image_id, image in image_index.items():  # PoseAnything lists instances image by image
            size = image_size_of(image, f"{self.ann_file}: image {image_id}")
            for position, ann in by_image.get(image_id, ()):
                instance = self._instance(position, ann, image, size, report)
                if instance is not None:
                    instances.append(instance)
        return instances

    def _where(self, ann: dict[str, Any], position: int) -> str:
        return f"{self.ann_file}: annotation id {ann.get('id', f'#{position}')} (image {ann.get('image_id')})"

    def _instance(self, position: int, ann: dict[str, Any], image: dict[str, Any], size: tuple[int, int] | None,
                  report: LoadReport) -> dict[str, Any] | None:
        where = self._where(ann, position)
        category = self.categories.get(ann["category_id"])
        if category is None:
            raise DataError(f"{where} names category_id {ann['category_id']!r}, which 'categories' does not define")
        keypoints = keypoint_triplets(ann["keypoints"], where)
        meta = self._category_meta(category, len(keypoints), where, report)
        if ann.get("iscrowd", 0):
            report.skip("crowd annotation(s) (iscrowd = 1)")
            return None
        bbox = _clean_box(ann["bbox"], size, where)
        if bbox is None or ("area" in ann and not as_number(ann["area"], where, "area") > 0):
            report.skip("with box of zero area")
            return None
        if not keypoints.any() or ann.get("num_keypoints", 1) == 0:
            report.skip("with no labelled keypoint")
            return None
        visibility = np.minimum(keypoints[:, 2], 1.0)
        if size is not None:
            labelled = visibility > 0
            x, y = keypoints[labelled, 0], keypoints[labelled, 1]
            outside = int(((x < 0) | (y < 0) | (x >= size[0]) | (y >= size[1])).sum())
            if outside:
                report.note("keypoint(s) outside their image", outside, example=where)
        return {
            "image_path": str(self.image_root / image["file_name"]),
            "image_size": size,
            "image_id": ann["image_id"],
            "id": as_integer(ann["id"], where, "id") if "id" in ann else position,
            "category_id": ann["category_id"],
            "keypoints": np.ascontiguousarray(keypoints[:, :2]),
            "visibility": visibility,
            "bbox": bbox,
            "bbox_score": 1.0,
            "meta": meta,
        }

    def _category_meta(self, category: dict[str, Any], k: int, where: str, report: LoadReport) -> DatasetMeta:
        """The category's keypoint set, made on its first annotation; K is checked on every one."""
        meta = self.category_metas.get(category["id"])
        if meta is None:
            names = list(category.get("keypoints") or [])
            if names and len(names) != k:
                raise DataError(f"{where} has {k} keypoints but {category['where']} names {len(names)}")
            skeleton = self._skeleton(category, k, report)
            try:
                meta = DatasetMeta(name=f"mp100/{category.get('name', category['id'])}",
                                   keypoint_names=names or [str(i) for i in range(k)], flip_indices=range(k),
                                   skeleton=skeleton)
            except ValueError as exc:
                raise DataError(f"{category['where']}: {exc}") from None
            self.category_metas[category["id"]] = meta
        elif meta.num_keypoints != k:
            if category.get("keypoints"):
                raise DataError(f"{where} has {k} keypoints but {category['where']} names {meta.num_keypoints}")
            raise DataError(f"{where} has {k} keypoints but the earlier annotations of {category['where']} have "
                            f"{meta.num_keypoints} (all annotations of a category share its keypoints)")
        return meta

    def _skeleton(self, category: dict[str, Any], k: int, report: LoadReport) -> tuple[tuple[int, int], ...]:
        if self.skeleton_source == "file":
            return skeleton_to_zero_based(category.get("skeleton") or [], k, category["where"])
        if self.skeleton_source == "annotation":
            return _links_as_written(category.get("skeleton") or [], k, category["where"], report)
        facts = mp100_categories().get(category["id"]) if isinstance(category["id"], int) else None
        if facts is None or facts["name"] != category.get("name"):
            known = (f"MP-100's category {category['id']} is {facts['name']!r}" if facts
                     else "it is not an MP-100 category id")
            raise DataError(f"{category['where']}: skeleton={self.skeleton_source!r} takes MP-100's own skeletons, but "
                            f"{known}; use skeleton='file' for other datasets")
        if facts["num_keypoints"] != k:
            raise DataError(f"{category['where']}: its annotations have {k} keypoints but MP-100's category has "
                            f"{facts['num_keypoints']}")
        return tuple(map(tuple, facts[f"skeleton_{self.skeleton_source}"]))

    # -- episodes ------------------------------------------------------------------------------

    def _check_enough(self, cat_id: Any, needed: int) -> None:
        have = len(self.category_instances[cat_id])
        if have < needed:
            what = (f"num_shots + num_queries = {self.num_shots} + {self.num_queries}" if self.num_episodes
                    else f"num_shots + 1 = {self.num_shots} + 1")
            raise DataError(f"{self.categories[cat_id]['where']} has {have} usable instance(s); an episode draws "
                            f"{needed} distinct ones ({what}); lower num_shots or num_queries, or leave episodes off")

    def _evaluation_pairs(self) -> list[tuple[tuple[int, ...], int, int]]:
        rng = random.Random(self.seed)
        pairs, episode = [], 0
        for cat_id in self._eligible:  # the file's category order
            members = self.category_instances[cat_id]
            for _ in range(self.num_episodes):
                drawn = rng.sample(members, self.num_shots + self.num_queries)
                supports = tuple(drawn[: self.num_shots])
                pairs.extend((supports, query, episode) for query in drawn[self.num_shots:])
                episode += 1
        return pairs

    def set_epoch(self, epoch: int) -> None:
        """Draw new training pairs (``episodes=True, num_episodes=0``); harmless otherwise."""
        self.epoch = epoch

    def pair(self, index: int) -> tuple[tuple[int, ...], int, int]:
        """Item ``index`` of an episode dataset as (support positions, query position, episode);
        positions index ``instances``."""
        if not self.episodes:
            raise ValueError("MP100Dataset.pair: this dataset yields single instances (episodes=False)")
        if self.num_episodes:
            return self._pairs[index]
        if not 0 <= index < len(self):
            raise IndexError(f"episode index {index} out of range for {len(self)} items")
        members = self.category_instances[self._eligible[index // self._per_category]]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        drawn = [members[int(i)] for i in rng.choice(len(members), self.num_shots + 1, replace=False)]
        return tuple(drawn[: self.num_shots]), drawn[self.num_shots], index

    # -- items ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        if not self.episodes:
            return len(self.instances)
        return len(self._pairs) if self.num_episodes else len(self._eligible) * self._per_category

    def annotation(self, index: int) -> Sample:
        """Item ``index`` without images: an instance, or an episode's query with its ``support``."""
        if not self.episodes:
            sample = super().annotation(index)
            sample["eval_visibility"] = sample["visibility"].copy()  # type: ignore[typeddict-unknown-key]
            return sample
        supports, query, episode = self.pair(index)
        sample = super().annotation(query)
        support_samples = [TopdownDataset.annotation(self, position) for position in supports]
        valid = sample["visibility"].copy()
        for support in support_samples:
            valid *= support["visibility"]
        sample.update(support=support_samples, eval_visibility=valid, episode=episode)  # type: ignore[typeddict-item]
        return sample

    def __getitem__(self, index: int) -> Sample:
        sample = self.annotation(index)
        for item in (sample, *sample.get("support", ())):  # type: ignore[misc]
            item["image"] = read_image(item["image_path"], image_id=item["image_id"],
                                       expected_size=item.get("image_size"))
        return sample


def _links_as_written(links: Sequence[Sequence[int]], k: int, where: str,
                      report: LoadReport) -> tuple[tuple[int, int], ...]:
    """``skeleton="annotation"``: the links as PoseAnything's code reads them, 0-based and unchanged.
    A link touching an index outside 0..K-1 would only reach a padded, masked slot of its 100
    (a 1-based file's last keypoint, say), so it is dropped here, and noted."""
    try:
        pairs = [(int(a), int(b)) for a, b in links]
    except (TypeError, ValueError):
        raise DataError(f"{where}: skeleton must be a list of [i, j] index pairs; got {links!r}") from None
    kept = tuple((a, b) for a, b in pairs if 0 <= a < k and 0 <= b < k)
    if len(kept) < len(pairs):
        report.note("skeleton link(s) to a keypoint index outside 0..K-1 (skeleton='annotation' reads them "
                    "0-based, as PoseAnything does; they reach no keypoint)", len(pairs) - len(kept), example=where)
    return kept


def _check_arguments(skeleton: str, episodes: bool, num_shots: int, num_queries: int, num_episodes: int,
                     seed: int) -> None:
    if skeleton not in SKELETON_SOURCES:
        allowed = ", ".join(map(repr, SKELETON_SOURCES))
        raise ConfigError(f"MP100Dataset: skeleton must be one of {allowed}; got {skeleton!r}")
    bounds = (("num_shots", num_shots, 1), ("num_queries", num_queries, 1), ("num_episodes", num_episodes, 0),
              ("seed", seed, 0))
    for name, value, low in bounds:
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"MP100Dataset: {name} must be an integer >= {low}; got {value!r}")
    if num_episodes and not episodes:
        raise ConfigError(f"MP100Dataset: num_episodes={num_episodes} makes evaluation episodes, which needs "
                          "episodes=True (or set num_episodes=0 for single instances)")


def write_example(directory: Path) -> dict[str, Any]:
    """Write a tiny MP-100-format dataset (2 categories of 5 keypoints, 3 instances each, one
    skeleton 0-based and one 1-based as in the original release) and return the arguments of
    an evaluation-episode dataset over it (1 shot, 2 queries, 1 episode per category)."""
    import cv2

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    categories = [
        {"id": 7, "name": "stool", "supercategory": "furniture", "keypoints": ["0", "1", "2", "3", "4"],
         "skeleton": [[0, 1], [1, 2], [2, 3], [3, 4]]},
        {"id": 3, "name": "starfish", "supercategory": "animal", "keypoints": [],
         "skeleton": [[1, 2], [1, 3], [1, 4], [1, 5]]},
    ]
    images, annotations = [], []
    for number in range(6):
        category = categories[number % 2]
        file_name = f"{category['name']}/{number:03d}.jpg"
        (directory / category["name"]).mkdir(exist_ok=True)
        cv2.imwrite(str(directory / file_name), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
        image_id = 1000 * category["id"] + number
        images.append({"id": image_id, "file_name": file_name, "width": 48, "height": 40})
        points = np.column_stack([rng.uniform(6, 42, 5), rng.uniform(6, 34, 5), np.full(5, 2.0)]).round(1)
        annotations.append({"id": image_id + 1, "image_id": image_id, "category_id": category["id"],
                            "keypoints": points.ravel().tolist(), "num_keypoints": 5, "bbox": [4, 4, 40, 32],
                            "area": 40 * 32, "iscrowd": 0})
    ann_file = directory / "mp100_split1_test.json"
    ann_file.write_text(json.dumps({"info": {"description": "posecore example"}, "images": images,
                                    "annotations": annotations, "categories": categories}), encoding="utf-8")
    return {"ann_file": str(ann_file), "episodes": True, "num_shots": 1, "num_queries": 2, "num_episodes": 1}
