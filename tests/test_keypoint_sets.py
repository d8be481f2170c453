"""The keypoint sets shipped inside posecore equal the shared metainfo facts, fact by fact.

posecore must not read ``../shared`` at run time, so it carries its own copy of every keypoint
set (``posecore/data/keypoint_sets``). These tests hold that copy to the shared facts: names,
flip partners (as indices, as pairs and as the names' swap partners), the skeleton (as index
pairs and as name pairs), OKS sigmas, joint weights, upper/lower body, colours. What the
shipped files leave out (pairs, swap names, link names, types) is derived here from what they
hold, so a fact cannot drift without a test noticing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from posecore.data import builtin_keypoint_sets, load_metainfo
from posecore.data._metainfo import DatasetMeta

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
METAINFO = SHARED / "metainfo"
SHIPPED = Path(load_metainfo.__code__.co_filename).with_name("keypoint_sets")

pytestmark = pytest.mark.skipif(not METAINFO.is_dir(), reason=f"shared metainfo not found at {METAINFO}")

#: Fields of the shared files that describe where the facts come from, not the facts.
PROVENANCE = {"source", "paper_info", "paper", "notes", "format_notes", "description"}


def _shared_names() -> list[str]:
    return sorted(p.stem for p in METAINFO.glob("*.json") if p.stem != "mp100")


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _derived(shipped: dict[str, Any]) -> dict[str, Any]:
    """Every fact the shared schema states, from the shipped file's facts alone."""
    names = shipped["keypoint_names"]
    flip = shipped.get("flip_indices") or list(range(len(names)))
    links = shipped.get("skeleton_links") or []
    upper = set(shipped.get("upper_body_ids") or [])
    lower = set(shipped.get("lower_body_ids") or [])
    return {
        "dataset_name": shipped["dataset_name"],
        "num_keypoints": len(names),
        "keypoint_names": names,
        "flip_indices": flip,
        "flip_pairs": [[i, j] for i, j in enumerate(flip) if i < j],
        "keypoint_swap": ["" if j == i else names[j] for i, j in enumerate(flip)],
        "skeleton_links": links,
        "skeleton_links_by_name": [[names[a], names[b]] for a, b in links],
        "num_skeleton_links": len(links),
        "sigmas": shipped.get("sigmas") or [],
        "joint_weights": shipped.get("joint_weights") or [],
        "upper_body_ids": sorted(upper),
        "lower_body_ids": sorted(lower),
        "keypoint_types": ["upper" if i in upper else "lower" if i in lower else "" for i in range(len(names))],
        "keypoint_colors": shipped.get("keypoint_colors") or [],
        "skeleton_link_colors": shipped.get("skeleton_link_colors") or [],
    }


def test_the_same_keypoint_sets_exist_in_both_places() -> None:
    shared = {p.stem for p in METAINFO.glob("*.json")}
    assert {p.stem for p in SHIPPED.glob("*.json")} == shared
    assert set(builtin_keypoint_sets()) == shared
    assert {"coco", "coco_wholebody", "crowdpose", "aic", "mpii", "ochuman", "ap10k", "apt36k", "animalpose",
            "humanart", "humanart21", "interhand2d", "interhand3d", "mp100"} <= shared


@pytest.mark.parametrize("name", _shared_names())
def test_every_fact_of_the_shared_metainfo_is_shipped(name: str) -> None:
    shared = _read(METAINFO / f"{name}.json")
    shipped = _read(SHIPPED / f"{name}.json")
    derived = _derived(shipped)
    facts = [key for key in shared if key not in PROVENANCE and key in derived]
    assert {"dataset_name", "keypoint_names", "flip_indices", "skeleton_links", "sigmas", "joint_weights"} <= set(facts)
    for key in facts:
        expected = shared[key]
        if key == "upper_body_ids" or key == "lower_body_ids":
            expected = sorted(expected)
        assert derived[key] == expected, f"{name}: {key}"
    unknown = set(shared) - PROVENANCE - set(derived)
    for key in unknown:  # facts of one file only (3DPW's COCO-17 mapping): shipped verbatim
        assert shipped.get(key) == shared[key], f"{name}: {key}"


@pytest.mark.parametrize("name", _shared_names())
def test_loading_by_name_equals_loading_the_shared_file(name: str) -> None:
    by_name = load_metainfo(name)
    from_file = load_metainfo(METAINFO / f"{name}.json")
    assert isinstance(by_name, DatasetMeta)
    assert by_name == from_file
    shared = _read(METAINFO / f"{name}.json")
    assert by_name.num_keypoints == shared["num_keypoints"] == len(shared["keypoint_names"])
    # the facts the pipeline, the codecs and the metrics read
    assert list(by_name.flip_indices) == shared["flip_indices"]
    assert [list(link) for link in by_name.skeleton] == shared["skeleton_links"]
    assert list(by_name.sigmas) == pytest.approx(shared.get("sigmas") or [], abs=0)
    assert list(by_name.joint_weights) == pytest.approx(shared.get("joint_weights") or [], abs=0)
    assert sorted(by_name.upper_body_ids) == sorted(shared.get("upper_body_ids") or [])


def test_shipped_mp100_categories_equal_the_shared_table() -> None:
    shared = {c["id"]: c for c in _read(METAINFO / "mp100.json")["categories"]}
    shipped = {c["id"]: c for c in _read(SHIPPED / "mp100.json")["categories"]}
    assert sorted(shipped) == sorted(shared) == list(range(1, 101))
    for cat_id, fact in shared.items():
        entry = shipped[cat_id]
        assert (entry["name"], entry["num_keypoints"]) == (fact["name"], fact["num_keypoints"])
        assert entry["skeleton_updated"] == fact["skeleton_updated_0based"], fact["name"]
        # the original release's links, as the file wrote them, shifted by the base the table records
        base = entry["original_release_base"]
        assert [[a + base, b + base] for a, b in entry["skeleton_original"]] == fact["skeleton_original_release"], (
            fact["name"])


def test_shipped_mp100_names_and_splits_equal_the_shared_table() -> None:
    from posecore.data._mp100 import mp100_categories, mp100_splits

    shared = _read(METAINFO / "mp100.json")
    categories = mp100_categories()
    for fact in shared["categories"]:
        entry = categories[fact["id"]]
        assert entry["keypoint_names"] == fact["keypoint_names"], fact["name"]
        assert entry["supercategory"] == fact["supercategory"], fact["name"]
        assert len(entry["keypoint_names"]) in (0, entry["num_keypoints"]), fact["name"]
    splits = mp100_splits()
    assert splits == {int(k): v for k, v in shared["splits"].items()}
    assert sorted(splits) == [1, 2, 3, 4, 5]
    for parts in splits.values():
        assert [len(parts[p]) for p in ("train", "val", "test")] == [70, 10, 20]
        assert sorted(parts["train"] + parts["val"] + parts["test"]) == list(range(1, 101))
    assert sorted(c for parts in splits.values() for c in parts["test"]) == list(range(1, 101))


def test_no_runtime_path_points_at_shared() -> None:
    package = SHIPPED.parent.parent
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "shared/data" not in text and "../shared" not in text, path
