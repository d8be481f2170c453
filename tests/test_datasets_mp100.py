"""MP-100 reader on the shared annotation subsets: records, per-category keypoint sets, skeleton
releases, support/query episodes (PoseAnything section 4.4) and bad input. Expectations are derived
here from the files, independently of the reader."""

from __future__ import annotations

import json
import random
import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from posecore._errors import ConfigError, DataError
from posecore.data import check_sample, collate_samples, load_metainfo
from posecore.data._dataset import PipelineDataset
from posecore.data._mp100 import MP100Dataset, mp100_categories

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ANNOTATIONS = SHARED / "mp100" / "annotations"
SPLIT1 = ANNOTATIONS / "mp100_split1_test_subset.json"
SPLIT1_ORIGINAL = ANNOTATIONS / "mp100_split1_test_subset_original_release.json"
SPLIT4 = ANNOTATIONS / "mp100_split4_test_subset.json"
FACTS = SHARED / "metainfo" / "mp100.json"

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared sample data not found at {SHARED}")

#: README: the original release's skeletons are 1-based for these, 0-based for car, bus and suv.
ONE_BASED_NAMES = {"person", "hand", "macaque", "fly", "locust"}


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _variant(tmp_path: Path, change, source: Path = SPLIT1) -> Path:
    data = _read(source)
    change(data)
    return _write(tmp_path / source.name, data)


def _build(*args: Any, **kwargs: Any) -> tuple[MP100Dataset, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = MP100Dataset(*args, **kwargs)
    return dataset, [str(w.message) for w in caught]


def _expected_records(path: Path) -> list[dict[str, Any]]:
    """PoseAnything's records: image by image, annotations in file order, its skip rules."""
    data = _read(path)
    by_image = defaultdict(list)
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    records = []
    for image in data["images"]:
        for ann in by_image[image["id"]]:
            x, y, w, h = ann["bbox"]
            x1, y1 = max(0, x), max(0, y)
            x2, y2 = min(image["width"] - 1, x1 + max(0, w - 1)), min(image["height"] - 1, y1 + max(0, h - 1))
            if ann.get("iscrowd") or not (("area" not in ann or ann["area"] > 0) and x2 > x1 and y2 > y1):
                continue
            if max(ann["keypoints"]) == 0 or ann.get("num_keypoints") == 0:
                continue
            records.append({"ann": ann, "image": image, "bbox": [x1, y1, x2, y2]})
    return records


def _expected_pairs(path: Path, shots: int, queries: int, episodes: int, seed: int) -> list[tuple[list[int], int]]:
    """Section 4.4: per category in the file's order, CPython random.sample of S + Q annotation ids."""
    members = defaultdict(list)
    for record in _expected_records(path):
        members[record["ann"]["category_id"]].append(record["ann"]["id"])
    rng = random.Random(seed)
    pairs = []
    for category in _read(path)["categories"]:
        for _ in range(episodes):
            drawn = rng.sample(members[category["id"]], shots + queries)
            pairs.extend((drawn[:shots], query) for query in drawn[shots:])
    return pairs


def _fake_images(root: Path, path: Path) -> dict[int, tuple[int, int]]:
    """Flat JPEGs of the annotated sizes at every file_name of ``path`` (MP-100 ships no images;
    the reader holds each image to its annotated width and height); id -> (h, w)."""
    shapes = {}
    for number, image in enumerate(_read(path)["images"]):
        target = root / image["file_name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shapes[image["id"]] = (image["height"], image["width"])
        cv2.imwrite(str(target), np.full((*shapes[image["id"]], 3), 20 + 10 * number, dtype=np.uint8))
    return shapes


def _skeletons(dataset: MP100Dataset) -> dict[int, tuple[tuple[int, int], ...]]:
    return {cat_id: meta.skeleton for cat_id, meta in dataset.category_metas.items()}


# ---------------------------------------------------------------------------------------------
# records


@pytest.mark.parametrize(
    ("path", "count", "keypoints"),
    [
        (SPLIT1, 16, {10: 9, 2: 17, 14: 15, 39: 13, 84: 10, 60: 29, 78: 39}),
        (SPLIT1_ORIGINAL, 16, {10: 9, 2: 17, 14: 15, 39: 13, 84: 10, 60: 29, 78: 39}),
        (SPLIT4, 9, {40: 68, 80: 21, 38: 13, 92: 17}),
    ],
    ids=["split1", "split1-original", "split4"],
)
def test_instance_counts_and_categories(path: Path, count: int, keypoints: dict[int, int]) -> None:
    dataset, _ = _build(str(path))
    assert len(dataset) == count == len(_expected_records(path))
    assert list(dataset.category_metas) == list(keypoints)  # first seen in image order; same as the file here
    assert {cat: meta.num_keypoints for cat, meta in dataset.category_metas.items()} == keypoints
    assert dataset.meta.name == "mp100" and dataset.meta.num_keypoints == max(keypoints.values())
    assert dataset.meta.flip_indices == tuple(range(max(keypoints.values())))


@pytest.mark.parametrize("path", [SPLIT1, SPLIT4], ids=["split1", "split4"])
def test_records_match_the_file(path: Path, tmp_path: Path) -> None:
    dataset, _ = _build(str(path), image_root=str(tmp_path), dataset_index=1)
    categories = {category["id"]: category for category in _read(path)["categories"]}
    records = _expected_records(path)
    assert [s["id"] for s in dataset.instances] == [r["ann"]["id"] for r in records]
    for position, record in enumerate(records):
        sample = dataset.annotation(position)
        ann, image, category = record["ann"], record["image"], categories[record["ann"]["category_id"]]
        points = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        k = len(points)
        assert sample["image_id"] == ann["image_id"] and sample["category_id"] == ann["category_id"]
        assert Path(sample["image_path"]) == tmp_path / image["file_name"]
        assert sample["image_size"] == (image["width"], image["height"]) and sample["dataset_index"] == 1
        np.testing.assert_allclose(sample["keypoints"], points[:, :2], atol=1e-3)
        np.testing.assert_array_equal(sample["visibility"], np.minimum(points[:, 2], 1))
        np.testing.assert_allclose(sample["bbox"], record["bbox"], atol=1e-3)
        np.testing.assert_array_equal(sample["eval_visibility"], sample["visibility"])
        meta = sample["meta"]
        assert meta.name == f"mp100/{category['name']}" and meta.num_keypoints == k
        assert meta.keypoint_names == tuple(category["keypoints"] or [str(i) for i in range(k)])
        assert meta.flip_indices == tuple(range(k))
        assert "support" not in sample


def test_face_with_empty_names_gets_positional_names() -> None:
    dataset, _ = _build(str(SPLIT4))
    face = dataset.category_metas[40]
    assert face.name == "mp100/face" and face.keypoint_names == tuple(str(i) for i in range(68))


def test_keypoints_outside_the_image_are_counted() -> None:
    expected, first = 0, None
    for record in _expected_records(SPLIT4):
        points = np.array(record["ann"]["keypoints"]).reshape(-1, 3)
        x, y = points[points[:, 2] > 0, 0], points[points[:, 2] > 0, 1]
        outside = int(((x < 0) | (y < 0) | (x >= record["image"]["width"]) | (y >= record["image"]["height"])).sum())
        expected += outside
        first = first or (record["ann"]["id"] if outside else None)
    dataset, messages = _build(str(SPLIT4))
    assert expected > 0 and len(dataset) == 9 and len(messages) == 1
    assert f"kept, but {expected} keypoint(s) outside their image" in messages[0]
    assert f"annotation id {first}" in messages[0]


# ---------------------------------------------------------------------------------------------
# skeletons


def test_file_skeleton_of_the_updated_release_is_kept() -> None:
    for path in (SPLIT1, SPLIT4):
        dataset, _ = _build(str(path))
        expected = {c["id"]: tuple(tuple(link) for link in c["skeleton"]) for c in _read(path)["categories"]}
        assert _skeletons(dataset) == expected
        assert all(dataset.category_metas[c].skeleton for c in expected)  # every category has links


def test_file_skeleton_of_the_original_release_is_made_zero_based() -> None:
    dataset, _ = _build(str(SPLIT1_ORIGINAL))
    for category in _read(SPLIT1_ORIGINAL)["categories"]:
        raw = category["skeleton"]
        if category["name"].endswith("_body"):  # AP-10K: 1-based in the original release
            assert max(max(link) for link in raw) == 17
            expected = tuple((a - 1, b - 1) for a, b in raw)
        else:
            assert raw == []
            expected = ()
        assert dataset.category_metas[category["id"]].skeleton == expected, category["name"]
    # README: the updated release equals the original 1-based links minus 1 where both exist.
    updated, _ = _build(str(SPLIT1))
    assert dataset.category_metas[2].skeleton == updated.category_metas[2].skeleton


def test_release_tables_agree_with_the_files() -> None:
    from_updated_file = _skeletons(_build(str(SPLIT1))[0])
    from_original_file = _skeletons(_build(str(SPLIT1_ORIGINAL))[0])
    for path in (SPLIT1, SPLIT1_ORIGINAL):
        assert _skeletons(_build(str(path), skeleton="updated")[0]) == from_updated_file
        assert _skeletons(_build(str(path), skeleton="original")[0]) == from_original_file
    # split4 has no original-release file here: derive the original links from the shared facts.
    facts = {c["id"]: c for c in _read(FACTS)["categories"]}
    original4 = _skeletons(_build(str(SPLIT4), skeleton="original")[0])
    for cat_id, skeleton in original4.items():
        raw, name = facts[cat_id]["skeleton_original_release"], facts[cat_id]["name"]
        shift = 1 if name in ONE_BASED_NAMES else 0  # hand, macaque: 1-based; bus: 0-based; face: none
        assert skeleton == tuple((a - shift, b - shift) for a, b in raw), name
    assert original4[38] and original4[80] and original4[92] and original4[40] == ()
    assert _skeletons(_build(str(SPLIT4), skeleton="updated")[0]) == _skeletons(_build(str(SPLIT4))[0])


def test_shipped_table_matches_the_shared_facts() -> None:
    table = mp100_categories()
    facts = _read(FACTS)["categories"]
    assert sorted(table) == list(range(1, 101))
    for fact in facts:
        entry = table[fact["id"]]
        assert (entry["name"], entry["num_keypoints"]) == (fact["name"], fact["num_keypoints"])
        assert entry["skeleton_updated"] == fact["skeleton_updated_0based"]
        one_based = fact["name"].endswith("_body") or fact["name"] in ONE_BASED_NAMES
        shift = 1 if one_based else 0
        assert entry["skeleton_original"] == [[a - shift, b - shift] for a, b in fact["skeleton_original_release"]]
    assert sum(1 for f in facts if not f["skeleton_original_release"]) == 58
    meta = load_metainfo("mp100")  # as a keypoint set: slots for the widest category (face, 68)
    assert meta.num_keypoints == 68 and meta.flip_indices == tuple(range(68))


def test_skeleton_errors(tmp_path: Path) -> None:
    def link_past_k(data: dict[str, Any]) -> None:
        data["categories"][4]["skeleton"].append([0, 10])  # bed has 10 keypoints

    with pytest.raises(DataError) as info:
        MP100Dataset(str(_variant(tmp_path, link_past_k)))
    assert "category 84 'bed': skeleton indices run from 0 to 10" in str(info.value)

    def ambiguous(data: dict[str, Any]) -> None:
        data["categories"][4]["skeleton"] = [[1, 2], [2, 3]]

    path = _variant(tmp_path, ambiguous)
    with pytest.raises(DataError, match="category 84 'bed': skeleton indices lie within 1..9"):
        MP100Dataset(str(path))
    assert MP100Dataset(str(path), skeleton="updated").category_metas[84].skeleton  # the table decides

    def renamed(data: dict[str, Any]) -> None:
        data["categories"][0]["name"] = "my_antelope_face"

    with pytest.raises(DataError, match="MP-100's category 10 is 'klipspringer_face'; use skeleton='file'"):
        MP100Dataset(str(_variant(tmp_path, renamed)), skeleton="original")


# ---------------------------------------------------------------------------------------------
# episodes


@pytest.mark.parametrize("seed", [1, 0, 7])
def test_evaluation_episodes_follow_section_4_4(seed: int) -> None:
    dataset, _ = _build(str(SPLIT1), episodes=True, num_shots=1, num_queries=1, num_episodes=3, seed=seed)
    expected = _expected_pairs(SPLIT1, 1, 1, 3, seed)
    assert len(dataset) == len(expected) == 7 * 3 * 1
    for index, (support_ids, query_id) in enumerate(expected):
        sample = dataset.annotation(index)
        assert sample["id"] == query_id and [s["id"] for s in sample["support"]] == support_ids
        assert sample["episode"] == index  # one query per episode here
        assert all(s["category_id"] == sample["category_id"] and s["meta"] is sample["meta"] for s in sample["support"])
        assert query_id not in support_ids
        assert "image" not in sample and all("image" not in s for s in sample["support"])
        valid = sample["visibility"] * np.prod([s["visibility"] for s in sample["support"]], axis=0)
        np.testing.assert_array_equal(sample["eval_visibility"], valid)
    again, _ = _build(str(SPLIT1), episodes=True, num_shots=1, num_queries=1, num_episodes=3, seed=seed)
    assert [again.pair(i) for i in range(len(again))] == [dataset.pair(i) for i in range(len(dataset))]


def test_evaluation_episodes_with_several_shots_and_queries(tmp_path: Path) -> None:
    def horses_only(data: dict[str, Any]) -> None:
        data["categories"] = [c for c in data["categories"] if c["id"] == 2]
        data["annotations"] = [a for a in data["annotations"] if a["category_id"] == 2]

    path = _variant(tmp_path, horses_only)
    dataset, _ = _build(str(path), episodes=True, num_shots=2, num_queries=2, num_episodes=5, seed=1)
    expected = _expected_pairs(path, 2, 2, 5, 1)
    assert len(dataset) == len(expected) == 5 * 2
    for index, (support_ids, query_id) in enumerate(expected):
        sample = dataset.annotation(index)
        assert sample["episode"] == index // 2
        assert [s["id"] for s in sample["support"]] == support_ids and sample["id"] == query_id
        assert len({query_id, *support_ids}) == 3
    # Both queries of an episode share its supports.
    assert all(dataset.pair(2 * e)[0] == dataset.pair(2 * e + 1)[0] for e in range(5))


def test_some_queries_have_keypoints_missing_in_the_support() -> None:
    dataset, _ = _build(str(SPLIT1), episodes=True, num_shots=1, num_queries=1, num_episodes=3)
    reduced = [i for i in range(len(dataset)) if
               dataset.annotation(i)["eval_visibility"].sum() < dataset.annotation(i)["visibility"].sum()]
    assert reduced  # Woodpecker and horse instances miss different keypoints


def test_too_few_instances_for_an_episode() -> None:
    with pytest.raises(DataError) as info:
        MP100Dataset(str(SPLIT1), episodes=True, num_episodes=200)
    message = str(info.value)
    assert "category 10 'klipspringer_face' has 2 usable instance(s); an episode draws 16 distinct ones" in message
    assert "num_shots + num_queries = 1 + 15" in message
    with pytest.raises(DataError, match="an episode draws 3 distinct ones \\(num_shots \\+ 1 = 2 \\+ 1\\)"):
        MP100Dataset(str(SPLIT1), episodes=True, num_shots=2)


def test_training_episodes() -> None:
    dataset, _ = _build(str(SPLIT1), episodes=True, num_shots=1, seed=3)
    categories = [c["id"] for c in _read(SPLIT1)["categories"]]
    counts = {c: sum(r["ann"]["category_id"] == c for r in _expected_records(SPLIT1)) for c in categories}
    per_category = max(counts.values())  # balanced: every category as often as the largest (horse, 4)
    assert per_category == 4 and len(dataset) == len(categories) * per_category
    epoch0 = [dataset.pair(i) for i in range(len(dataset))]
    for index in range(len(dataset)):
        sample = dataset.annotation(index)
        assert sample["category_id"] == categories[index // per_category]
        (support,) = sample["support"]
        assert support["category_id"] == sample["category_id"] and support["id"] != sample["id"]
    assert [dataset.pair(i) for i in range(len(dataset))] == epoch0  # fixed within an epoch
    dataset.set_epoch(1)
    epoch1 = [dataset.pair(i) for i in range(len(dataset))]
    assert epoch1 != epoch0
    dataset.set_epoch(0)
    assert [dataset.pair(i) for i in range(len(dataset))] == epoch0
    with pytest.raises(IndexError):
        dataset.pair(len(dataset))
    with pytest.raises(ValueError, match="yields single instances"):
        MP100Dataset(str(SPLIT1)).pair(0)


def test_episode_items_read_every_image_and_go_through_the_pipeline(tmp_path: Path) -> None:
    shapes = _fake_images(tmp_path, SPLIT1)
    dataset, _ = _build(str(SPLIT1), image_root=str(tmp_path), episodes=True, num_queries=1, num_episodes=1)
    item = dataset[3]
    for sample in (item, *item["support"]):
        assert sample["image"].shape == (*shapes[sample["image_id"]], 3)
        check_sample(sample, sample["meta"].num_keypoints)

    def pipeline(sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        sample["draw"] = float(rng.random())
        return sample

    wrapped = PipelineDataset(dataset, pipeline, seed=5)
    item = wrapped[3]
    assert "image" not in item  # the pipeline reads images itself
    assert "draw" in item and all("draw" in s for s in item["support"])
    assert item["draw"] != item["support"][0]["draw"]
    two, _ = _build(str(SPLIT1), image_root=str(tmp_path), episodes=True, num_queries=1, num_episodes=2)
    batch = collate_samples([two[0], two[1]])  # both klipspringer_face queries, K = 9
    assert tuple(batch["keypoints"].shape) == (2, 9, 2) and tuple(batch["eval_visibility"].shape) == (2, 9)
    assert [len(supports) for supports in batch["support"]] == [1, 1]


def test_plain_instances_read_images(tmp_path: Path) -> None:
    shapes = _fake_images(tmp_path, SPLIT4)
    dataset, _ = _build(str(SPLIT4), image_root=str(tmp_path))
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["image"].shape == (*shapes[sample["image_id"]], 3)
        check_sample(sample, sample["meta"].num_keypoints)


def test_missing_image_in_an_episode(tmp_path: Path) -> None:
    _fake_images(tmp_path, SPLIT1)
    dataset, _ = _build(str(SPLIT1), image_root=str(tmp_path), episodes=True, num_queries=1, num_episodes=1)
    support = dataset.annotation(0)["support"][0]
    Path(support["image_path"]).unlink()
    with pytest.raises(DataError) as info:
        dataset[0]
    assert support["image_path"] in str(info.value) and f"image id {support['image_id']}" in str(info.value)


# ---------------------------------------------------------------------------------------------
# bad input


def test_annotation_without_keypoints(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda d: d["annotations"][3].pop("keypoints"))
    with pytest.raises(DataError) as info:
        MP100Dataset(str(path))
    assert f"{path}: annotation id 200000000007047 (image 200000000026715) lacks required field(s) 'keypoints'" in str(
        info.value)


def test_malformed_values_and_repeated_ids(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda d: d["annotations"][3]["keypoints"].__setitem__(4, None))
    with pytest.raises(DataError) as info:
        MP100Dataset(str(path))
    assert (f"{path}: annotation id 200000000007047 (image 200000000026715): field 'keypoints' holds 1 value(s) "
            "that are not finite numbers") in str(info.value)
    path = _variant(tmp_path, lambda d: d["annotations"][5].update(id=d["annotations"][4]["id"]))
    with pytest.raises(DataError, match=r"'annotations': annotation id \d+ is used twice \(entries 4 and 5\)"):
        MP100Dataset(str(path))
    path = _variant(tmp_path, lambda d: d["images"].append({**d["images"][0], "file_name": "other/x.jpg"}))
    with pytest.raises(DataError, match=r"'images': image id \d+ is used twice \(entries 0 and 14\)"):
        MP100Dataset(str(path))


def test_keypoint_count_differs_from_the_category(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda d: d["annotations"][1].update(keypoints=d["annotations"][1]["keypoints"][:-3]))
    with pytest.raises(DataError) as info:
        MP100Dataset(str(path))
    assert ("annotation id 1000000001015975 (image 1000000000015975) has 8 keypoints but "
            f"{path}: category 10 'klipspringer_face' names 9") in str(info.value)

    def short_face(data: dict[str, Any]) -> None:  # no names: the first face annotation sets K = 68
        data["annotations"][1]["keypoints"] = data["annotations"][1]["keypoints"][:-3]

    with pytest.raises(DataError, match="has 67 keypoints but the earlier annotations of .*category 40 'face' have 68"):
        MP100Dataset(str(_variant(tmp_path, short_face, SPLIT4)))
    path = _variant(tmp_path, lambda d: d["annotations"][0].update(keypoints=[1, 2, 2, 3]))
    with pytest.raises(DataError, match="field 'keypoints' must hold x, y, v triplets; it has 4 numbers"):
        MP100Dataset(str(path))


def test_skipped_annotations_are_counted(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        anns = data["annotations"]
        anns[0]["bbox"] = [10.0, 10.0, 0.0, 50.0]     # zero width
        anns[4]["area"] = 0                            # zero area, as PoseAnything checks it
        anns[6]["num_keypoints"] = 0
        anns[8]["keypoints"] = [0] * len(anns[8]["keypoints"])
        anns[10]["iscrowd"] = 1

    path = _variant(tmp_path, change)
    dataset, messages = _build(str(path))
    assert len(dataset) == 11 == len(_expected_records(path))
    assert len(messages) == 1
    message = messages[0]
    assert "11 instance(s) loaded; skipped 5 instance(s): " in message
    for part in ("2 with box of zero area", "2 with no labelled keypoint", "1 crowd annotation(s) (iscrowd = 1)"):
        assert part in message


def test_empty_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no usable instance") as info:
        MP100Dataset(str(_variant(tmp_path, lambda d: d.update(annotations=[]))))
    assert "the file lists none" in str(info.value)
    with pytest.raises(DataError, match="top-level field 'categories' is missing"):
        MP100Dataset(str(_variant(tmp_path, lambda d: d.pop("categories"))))
    with pytest.raises(DataError, match="names category_id 99, which 'categories' does not define"):
        MP100Dataset(str(_variant(tmp_path, lambda d: d["annotations"][2].update(category_id=99))))
    with pytest.raises(DataError, match="names unknown image_id 5"):
        MP100Dataset(str(_variant(tmp_path, lambda d: d["annotations"][2].update(image_id=5))))
    with pytest.raises(DataError, match="annotation file not found"):
        MP100Dataset(str(tmp_path / "none.json"))


def test_categories_without_instances_are_noted_in_episode_mode(tmp_path: Path) -> None:
    def unannotated(data: dict[str, Any]) -> None:
        data["categories"].append({"id": 45, "name": "chair", "keypoints": [], "skeleton": []})

    path = _variant(tmp_path, unannotated)
    dataset, messages = _build(str(path), episodes=True, num_queries=1, num_episodes=1)
    assert len(dataset) == 7 and len(messages) == 1
    assert "kept, but 1 category without any instance (no episodes)" in messages[0]
    assert _build(str(path))[1] == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"skeleton": "both"}, "skeleton must be one of 'file', 'updated', 'original', 'annotation'; got 'both'"),
        ({"num_shots": 0}, "num_shots must be an integer >= 1; got 0"),
        ({"num_queries": 0}, "num_queries must be an integer >= 1; got 0"),
        ({"num_episodes": -1}, "num_episodes must be an integer >= 0; got -1"),
        ({"num_episodes": 5}, "num_episodes=5 makes evaluation episodes, which needs episodes=True"),
        ({"seed": -1}, "seed must be an integer >= 0; got -1"),
    ],
)
def test_argument_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        MP100Dataset(str(SPLIT1), **kwargs)
