"""Data: metainfo files, the COCO-style reader on the shared samples, the sample contract, collation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from posecore._errors import ConfigError, DataError
from posecore.data import DatasetMeta, check_sample, collate_samples, load_metainfo
from posecore.data._coco import CocoKeypointDataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
METAINFO = SHARED / "metainfo"
COCO_JSON = SHARED / "coco" / "test_coco.json"
CROWDPOSE_JSON = SHARED / "crowdpose" / "test_crowdpose.json"

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared sample data not found at {SHARED}")


def _metainfo_files_with_keypoints() -> list[Path]:
    if not METAINFO.is_dir():
        return []
    return [p for p in sorted(METAINFO.glob("*.json")) if "keypoint_names" in json.loads(p.read_text(encoding="utf-8"))]


def _load_quietly(ann_file: Path | str, metainfo: Path | str, **kwargs: Any) -> CocoKeypointDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CocoKeypointDataset(str(ann_file), str(metainfo), **kwargs)


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _expected_instances(ann_file: Path) -> dict[int, dict[str, Any]]:
    """Independently derived top-down instances: labelled keypoints and a box of positive area."""
    data = json.loads(ann_file.read_text(encoding="utf-8"))
    images = {image["id"]: image for image in data["images"]}
    expected = {}
    for ann in data["annotations"]:
        kpts = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        x, y, w, h = ann["bbox"]
        if w > 0 and h > 0 and (kpts[:, 2] > 0).any():
            expected[ann["id"]] = {"ann": ann, "kpts": kpts, "image": images[ann["image_id"]]}
    return expected


# ---------------------------------------------------------------------------------------------
# metainfo


def test_metainfo_files_found() -> None:
    names = {p.stem for p in _metainfo_files_with_keypoints()}
    assert {"coco", "crowdpose", "mpii", "coco_wholebody", "interhand3d"} <= names
    assert "mp100" not in names  # it has no keypoint_names


@pytest.mark.parametrize("path", _metainfo_files_with_keypoints(), ids=lambda p: p.stem)
def test_every_shared_metainfo_loads(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    meta = load_metainfo(path)
    assert isinstance(meta, DatasetMeta)
    assert meta.name == raw["dataset_name"]
    assert meta.num_keypoints == raw["num_keypoints"]
    assert meta.keypoint_names == tuple(raw["keypoint_names"])
    k = meta.num_keypoints
    flip = meta.flip_indices
    assert len(flip) == k
    assert all(flip[flip[i]] == i for i in range(k)), "flip_indices must be an involution"
    # Flip partners agree with the names' declared swap partners, where the file gives them.
    if raw.get("keypoint_swap"):
        names = meta.keypoint_names
        for i, partner in enumerate(raw["keypoint_swap"]):
            assert names[flip[i]] == (partner or names[i]), (i, names[i])
    assert meta.skeleton == tuple(tuple(link) for link in raw.get("skeleton_links", []))
    assert all(0 <= a < k and 0 <= b < k for a, b in meta.skeleton)
    assert meta.sigmas == tuple(raw.get("sigmas") or ())
    assert len(meta.skeleton_colors) in (0, len(meta.skeleton))


def test_coco_metainfo_values() -> None:
    meta = load_metainfo(METAINFO / "coco.json")
    assert meta.keypoint_names[:3] == ("nose", "left_eye", "right_eye")
    assert meta.flip_indices[:5] == (0, 2, 1, 4, 3)
    assert meta.sigmas[0] == pytest.approx(0.026) and meta.sigmas[-1] == pytest.approx(0.089)
    assert len(meta.skeleton) == 19


def test_metainfo_yaml(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text("dataset_name: tiny\nkeypoint_names: [a, b, c]\nflip_indices: [0, 2, 1]\nskeleton_links: [[0, 1], [0, 2]]\n", encoding="utf-8")
    meta = load_metainfo(path)
    assert meta == DatasetMeta(name="tiny", keypoint_names=("a", "b", "c"), flip_indices=(0, 2, 1), skeleton=((0, 1), (0, 2)))


def _bad_metainfo(tmp_path: Path, change) -> str:
    raw = json.loads((METAINFO / "coco.json").read_text(encoding="utf-8"))
    change(raw)
    path = _write_json(tmp_path / "bad_meta.json", raw)
    with pytest.raises(ConfigError) as info:
        load_metainfo(path)
    message = str(info.value)
    assert str(path) in message, message
    return message.replace(str(path), "<file>")  # checks below must not match the test's own tmp_path


def test_skeleton_index_out_of_range(tmp_path: Path) -> None:
    def change(raw: dict) -> None:
        raw["skeleton_links"][2] = [15, 17]

    message = _bad_metainfo(tmp_path, change)
    assert "skeleton links [(15, 17)] index past the 17 keypoints" in message


def test_negative_skeleton_index(tmp_path: Path) -> None:
    message = _bad_metainfo(tmp_path, lambda raw: raw["skeleton_links"].append([-1, 0]))
    assert "(-1, 0)" in message


def test_wrong_sigmas_length(tmp_path: Path) -> None:
    message = _bad_metainfo(tmp_path, lambda raw: raw["sigmas"].pop())
    assert "sigmas has 16 entries, expected 17" in message


@pytest.mark.reliability
def test_flip_indices_not_a_permutation(tmp_path: Path) -> None:
    def change(raw: dict) -> None:
        raw["flip_indices"][1] = 0  # (0, 0, 1, ...): 0 appears twice and 2 never

    message = _bad_metainfo(tmp_path, change)
    assert "flip_indices must be a permutation of 0..16" in message


@pytest.mark.reliability
def test_missing_keypoint_names(tmp_path: Path) -> None:
    message = _bad_metainfo(tmp_path, lambda raw: raw.pop("keypoint_names"))
    assert "required field 'keypoint_names' is missing" in message


def test_empty_keypoint_names(tmp_path: Path) -> None:
    message = _bad_metainfo(tmp_path, lambda raw: raw.update(keypoint_names=[]))
    assert "keypoint_names is empty" in message


def test_skeleton_colors_count(tmp_path: Path) -> None:
    message = _bad_metainfo(tmp_path, lambda raw: raw["skeleton_link_colors"].pop())
    assert "skeleton_colors must have one colour per link" in message


@pytest.mark.reliability
def test_missing_dataset_name_names_the_file_field(tmp_path: Path) -> None:
    message = _bad_metainfo(tmp_path, lambda raw: raw.pop("dataset_name"))
    assert "'dataset_name'" in message, message


@pytest.mark.reliability
def test_metainfo_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="metainfo file not found") as info:
        load_metainfo(tmp_path / "none.json")
    assert str(tmp_path / "none.json") in str(info.value)
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot be parsed") as info:
        load_metainfo(broken)
    assert str(broken) in str(info.value)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_metainfo(listing)
    with pytest.raises(ConfigError, match="required field 'keypoint_names' is missing") as info:
        load_metainfo(METAINFO / "mp100.json")
    assert "mp100.json" in str(info.value)


# ---------------------------------------------------------------------------------------------
# CocoKeypointDataset on the shared samples


@pytest.mark.parametrize(
    ("ann_file", "metainfo", "count", "skipped"),
    [(COCO_JSON, METAINFO / "coco.json", 12, 2), (CROWDPOSE_JSON, METAINFO / "crowdpose.json", 4, 1)],
    ids=["coco", "crowdpose"],
)
def test_topdown_instance_counts_and_one_warning(ann_file: Path, metainfo: Path, count: int, skipped: int) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CocoKeypointDataset(str(ann_file), str(metainfo))
    assert len(dataset) == count
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert f"skipped {skipped} instance(s)" in message
    assert f"{skipped} with no labelled keypoint" in message
    assert str(ann_file) in message
    assert caught[0].filename == __file__  # the warning points at the code that built the dataset


@pytest.mark.parametrize(
    ("ann_file", "metainfo"),
    [(COCO_JSON, METAINFO / "coco.json"), (CROWDPOSE_JSON, METAINFO / "crowdpose.json")],
    ids=["coco", "crowdpose"],
)
def test_samples_match_the_files(ann_file: Path, metainfo: Path) -> None:
    dataset = _load_quietly(ann_file, metainfo, dataset_index=3)
    expected = _expected_instances(ann_file)
    k = dataset.meta.num_keypoints
    seen = []
    images_on_disk: dict[str, np.ndarray] = {}
    for index in range(len(dataset)):
        sample = dataset[index]
        check_sample(sample, k, where=f"sample {index}")
        exp = expected[sample["id"]]
        seen.append(sample["id"])
        ann, kpts, image_info = exp["ann"], exp["kpts"], exp["image"]
        path = ann_file.parent / image_info["file_name"]
        if str(path) not in images_on_disk:
            images_on_disk[str(path)] = cv2.imread(str(path), cv2.IMREAD_COLOR)
        bgr = images_on_disk[str(path)]
        assert bgr is not None
        # The image is the real file, RGB, of the size the annotation file states.
        assert sample["image"].shape == bgr.shape == (image_info["height"], image_info["width"], 3)
        assert sample["image"].dtype == np.uint8
        np.testing.assert_array_equal(sample["image"], bgr[:, :, ::-1])
        assert Path(sample["image_path"]) == path
        assert sample["image_id"] == ann["image_id"] == image_info["id"]
        assert sample["category_id"] == ann["category_id"]
        assert sample["dataset_index"] == 3
        assert sample["meta"] is dataset.meta
        np.testing.assert_allclose(sample["keypoints"], kpts[:, :2], rtol=0, atol=1e-4)
        np.testing.assert_array_equal(sample["visibility"], (kpts[:, 2] > 0).astype(np.float32))
        # mmpose 0.x "clean" box: clipped to the image, x2 = x1 + w - 1.
        x, y, w, h = ann["bbox"]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(image_info["width"] - 1, x1 + w - 1), min(image_info["height"] - 1, y1 + h - 1)
        np.testing.assert_allclose(sample["bbox"], [x1, y1, x2, y2], rtol=0, atol=1e-3)
        for key in ("keypoints", "visibility", "bbox"):
            assert sample[key].dtype == np.float32, key
    assert sorted(seen) == sorted(expected)


def test_samples_are_copies(tmp_path: Path) -> None:
    dataset = _load_quietly(COCO_JSON, METAINFO / "coco.json")
    first = dataset[0]
    first["keypoints"][:] = -5
    first["bbox"][:] = 0
    again = dataset[0]
    assert (again["keypoints"] != -5).any() and (again["bbox"] != 0).any()


def test_image_root_option(tmp_path: Path) -> None:
    data = json.loads(COCO_JSON.read_text(encoding="utf-8"))
    ann_file = _write_json(tmp_path / "elsewhere.json", data)
    dataset = _load_quietly(ann_file, METAINFO / "coco.json", image_root=str(SHARED / "coco"))
    assert len(dataset) == 12
    assert dataset[5]["image"].shape[2] == 3


@pytest.mark.reliability
def test_missing_image_file_names_path_and_id(tmp_path: Path) -> None:
    empty_root = tmp_path / "images"
    empty_root.mkdir()
    dataset = _load_quietly(COCO_JSON, METAINFO / "coco.json", image_root=str(empty_root))
    with pytest.raises(DataError) as info:
        dataset[0]
    message = str(info.value)
    assert str(empty_root / "000000000785.jpg") in message
    assert "image id 785" in message


@pytest.mark.reliability
@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0 not really a jpeg " * 20], ids=["empty", "garbage"])
def test_corrupt_image(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "000000000785.jpg").write_bytes(content)
    dataset = _load_quietly(COCO_JSON, METAINFO / "coco.json", image_root=str(tmp_path))
    with pytest.raises(DataError) as info:
        dataset[0]
    message = str(info.value)
    assert str(tmp_path / "000000000785.jpg") in message
    message = message.replace(str(tmp_path / "000000000785.jpg"), "<image>")
    assert "image id 785" in message and "corrupt" in message


def _coco_variant(tmp_path: Path, change) -> Path:
    data = json.loads(COCO_JSON.read_text(encoding="utf-8"))
    change(data)
    return _write_json(tmp_path / "variant.json", data)


@pytest.mark.reliability
def test_annotation_missing_keypoints(tmp_path: Path) -> None:
    path = _coco_variant(tmp_path, lambda d: d["annotations"][4].pop("keypoints"))
    with pytest.raises(DataError) as info:
        _load_quietly(path, METAINFO / "coco.json")
    message = str(info.value)
    assert str(path) in message
    assert "annotation id 460541 (image 196141) lacks required field(s) 'keypoints'" in message


def test_annotation_with_short_bbox_is_reported_clearly(tmp_path: Path) -> None:
    path = _coco_variant(tmp_path, lambda d: d["annotations"][4].update(bbox=[10, 10, 20]))
    with pytest.raises(DataError) as info:
        _load_quietly(path, METAINFO / "coco.json")
    message = str(info.value)
    assert str(path) in message
    message = message.replace(str(path), "<file>")
    assert "460541" in message and "bbox" in message


def test_keypoint_count_differs_from_metainfo(tmp_path: Path) -> None:
    path = _coco_variant(tmp_path, lambda d: d["annotations"][2].update(keypoints=d["annotations"][2]["keypoints"][:-3]))
    with pytest.raises(DataError) as info:
        _load_quietly(path, METAINFO / "coco.json")
    message = str(info.value)
    assert "annotation id 230195 (image 40083) has 16 keypoints but metainfo 'coco' declares 17" in message
    # The real file read with the wrong metainfo is caught as well.
    with pytest.raises(DataError, match="has 17 keypoints but metainfo 'crowdpose' declares 14"):
        _load_quietly(COCO_JSON, METAINFO / "crowdpose.json")


def test_empty_dataset(tmp_path: Path) -> None:
    path = _coco_variant(tmp_path, lambda d: d.update(annotations=[]))
    with pytest.raises(DataError, match="no usable instance") as info:
        _load_quietly(path, METAINFO / "coco.json")
    assert str(path) in str(info.value)


def test_dataset_empty_after_skipping(tmp_path: Path) -> None:
    def only_unlabelled(d: dict) -> None:
        d["annotations"] = [a for a in d["annotations"] if a["num_keypoints"] == 0]

    path = _coco_variant(tmp_path, only_unlabelled)
    with pytest.raises(DataError, match="no usable instance") as info:
        _load_quietly(path, METAINFO / "coco.json")
    assert "(2 with no labelled keypoint)" in str(info.value)


def test_zero_area_box_is_skipped_and_counted(tmp_path: Path) -> None:
    path = _coco_variant(tmp_path, lambda d: d["annotations"][0].update(bbox=[280.0, 44.0, 0.0, 100.0]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CocoKeypointDataset(str(path), str(METAINFO / "coco.json"))
    assert len(dataset) == 11
    assert 442619 not in {inst["id"] for inst in dataset.instances}
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "skipped 3 instance(s)" in message
    assert "1 with box of zero area" in message and "2 with no labelled keypoint" in message


@pytest.mark.reliability
@pytest.mark.parametrize("field", ["annotations", "images"])
def test_missing_top_level_field(tmp_path: Path, field: str) -> None:
    path = _coco_variant(tmp_path, lambda d: d.pop(field))
    with pytest.raises(DataError) as info:
        _load_quietly(path, METAINFO / "coco.json")
    message = str(info.value)
    assert str(path) in message and f"top-level field {field!r} is missing" in message


@pytest.mark.reliability
def test_annotation_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="annotation file not found"):
        _load_quietly(tmp_path / "nope.json", METAINFO / "coco.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [', encoding="utf-8")
    with pytest.raises(DataError, match="is not valid JSON") as info:
        _load_quietly(broken, METAINFO / "coco.json")
    assert str(broken) in str(info.value)
    path = _coco_variant(tmp_path, lambda d: d["annotations"][1].update(image_id=123))
    with pytest.raises(DataError, match=r"annotation id 198196 \(image 123\) names unknown image_id 123"):
        _load_quietly(path, METAINFO / "coco.json")


# ---------------------------------------------------------------------------------------------
# sample contract and collation


@pytest.mark.reliability
def test_check_sample_rejects_broken_samples() -> None:
    sample = dict(_load_quietly(COCO_JSON, METAINFO / "coco.json")[0])
    check_sample(sample, 17)
    with pytest.raises(ValueError, match=r"keypoints must have shape \(14, 2\); got \(17, 2\)"):
        check_sample(sample, 14)
    broken = {k: v for k, v in sample.items() if k != "bbox"}
    with pytest.raises(ValueError, match="lacks required key\\(s\\) bbox"):
        check_sample(broken, 17)
    with pytest.raises(ValueError, match=r"keypoints must have shape \(17, 2\); got \(17, 3\)"):
        check_sample({**sample, "keypoints": np.zeros((17, 3), np.float32)}, 17, where="s")
    with pytest.raises(ValueError, match=r"image must be \(H, W, 3\) or \(3, H, W\); got shape \(10, 10\)"):
        check_sample({**sample, "image": np.zeros((10, 10), np.uint8)}, 17)
    with pytest.raises(ValueError, match="meta must be a DatasetMeta; got dict"):
        check_sample({**sample, "meta": {}}, 17)
    check_sample({**sample, "image": torch.zeros(3, 8, 6)}, 17)  # after the pipeline


def test_collate_real_samples() -> None:
    dataset = _load_quietly(COCO_JSON, METAINFO / "coco.json")
    samples = [dataset[i] for i in (0, 1, 2)]  # image 785 (425x640), then 40083 (333x500) twice
    batch = collate_samples(samples)
    assert set(batch) == set(samples[0])
    assert isinstance(batch["keypoints"], torch.Tensor) and batch["keypoints"].shape == (3, 17, 2)
    assert batch["keypoints"].dtype == torch.float32
    np.testing.assert_array_equal(batch["keypoints"].numpy(), np.stack([s["keypoints"] for s in samples]))
    assert batch["visibility"].shape == (3, 17) and batch["bbox"].shape == (3, 4)
    assert batch["image_id"].tolist() == [785, 40083, 40083]
    assert batch["id"].tolist() == [s["id"] for s in samples]
    assert batch["dataset_index"].tolist() == [0, 0, 0]
    # Images of different sizes cannot be stacked: kept as the list of arrays.
    assert isinstance(batch["image"], list) and all(a is s["image"] for a, s in zip(batch["image"], samples, strict=True))
    assert batch["meta"] == [dataset.meta] * 3
    assert batch["image_path"] == [s["image_path"] for s in samples]


def test_collate_equal_images_and_mixed_values() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (4, 5, 3), dtype=np.uint8) for _ in range(2)]
    samples = [
        {"image": images[0], "heat": torch.ones(2, 3), "score": 0.5, "flag": True, "text": "a", "var": np.zeros(2), "none": None},
        {"image": images[1], "heat": torch.zeros(2, 3), "score": 1.5, "flag": False, "text": "b", "var": np.zeros(3), "none": None},
    ]
    batch = collate_samples(samples)
    assert batch["image"].shape == (2, 4, 5, 3) and batch["image"].dtype == torch.uint8
    np.testing.assert_array_equal(batch["image"].numpy(), np.stack(images))
    assert torch.equal(batch["heat"], torch.stack([torch.ones(2, 3), torch.zeros(2, 3)]))
    assert torch.allclose(batch["score"], torch.tensor([0.5, 1.5]))
    assert batch["flag"] == [True, False]  # booleans are not turned into numbers
    assert batch["text"] == ["a", "b"]
    assert isinstance(batch["var"], list) and [v.shape for v in batch["var"]] == [(2,), (3,)]
    assert batch["none"] == [None, None]
