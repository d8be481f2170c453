"""Every COCO-format reader of the core, built through the dataset registry, on the shared samples.

Expectations come from an independent reading of the JSON files and from the facts and instance
counts of shared/data/README.md (which restate what mmpose's own tests assert), never from the
reader under test.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np
import pytest

from posecore._errors import DataError
from posecore._plugins import get_host
from posecore.data import load_metainfo
from posecore.data._transforms import GetBBoxCenterScale

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
METAINFO = SHARED / "metainfo"

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared sample data not found at {SHARED}")

#: COCO-WholeBody's fields, in the documented order of its 133 keypoints.
WHOLEBODY_ORDER = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
HUMANART_PREFIX = "HumanArt/images/"


def _datasets() -> Any:
    return get_host().registries.datasets


def _coco_family_names() -> list[str]:
    """Every registered dataset implemented by the COCO-format module, whichever plugin declared it."""
    registry = _datasets()
    return [name for name in registry.names() if registry.get(name).factory.startswith("posecore.data._coco:")]


@attrs.frozen
class Case:
    """One reader on one shared sample, with the facts the README states about it."""

    id: str
    reader: str
    ann_file: Path
    metainfo: str  # shared/data/metainfo/<name>.json: the keypoint set the reader must use
    count: int  # top-down instances, README
    unlabelled: int  # annotations without any labelled keypoint, README
    fields: tuple[str, ...] = ("keypoints",)
    args: dict[str, Any] = attrs.field(factory=dict)
    strip: str = ""

    def spec(self, **changes: Any) -> dict[str, Any]:
        return {"type": self.reader, "ann_file": str(self.ann_file), **self.args, **changes}


CASES = [
    Case("coco", "coco", SHARED / "coco" / "test_coco.json", "coco", 12, 2),
    Case("coco_wholebody", "coco_wholebody", SHARED / "coco" / "test_coco_wholebody.json", "coco_wholebody", 12, 2,
         fields=WHOLEBODY_ORDER),
    Case("ochuman", "ochuman", SHARED / "ochuman" / "test_ochuman.json", "ochuman", 5, 0),
    Case("crowdpose", "crowdpose", SHARED / "crowdpose" / "test_crowdpose.json", "crowdpose", 4, 1),
    Case("aic", "aic", SHARED / "aic" / "test_aic.json", "aic", 9, 0),
    Case("ap10k", "ap10k", SHARED / "ap10k" / "test_ap10k.json", "ap10k", 2, 0),
    # No APT-36K sample exists; the README says to use the AP-10K one (same 17 keypoints).
    Case("apt36k", "apt36k", SHARED / "ap10k" / "test_ap10k.json", "apt36k", 2, 0),
    Case("animalpose", "animalpose", SHARED / "animalpose" / "test_animalpose.json", "animalpose", 2, 0),
    Case("humanart", "humanart", SHARED / "humanart" / "test_humanart.json", "humanart", 4, 0,
         args={"strip_prefix": HUMANART_PREFIX}, strip=HUMANART_PREFIX),
    Case("humanart21", "humanart", SHARED / "humanart" / "test_humanart.json", "humanart21", 4, 0,
         fields=("keypoints_21",), args={"strip_prefix": HUMANART_PREFIX, "keypoint_set": 21}, strip=HUMANART_PREFIX),
    Case("coco_style-crowdpose", "coco_style", SHARED / "crowdpose" / "test_crowdpose.json", "crowdpose", 4, 1,
         args={"metainfo": str(METAINFO / "crowdpose.json")}),
    Case("coco_style-aic", "coco_style", SHARED / "aic" / "test_aic.json", "aic", 9, 0,
         args={"metainfo": str(METAINFO / "aic.json")}),
]

COCO = CASES[0]
COCO_DETECTIONS = SHARED / "coco" / "test_coco_det_AP_H_56.json"


def _build(spec: dict[str, Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _datasets().build(spec)


def _build_recording(spec: dict[str, Any]) -> tuple[Any, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = _datasets().build(spec)
    return dataset, caught


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _variant(tmp_path: Path, source: Path, change: Callable[[Any], None], name: str = "variant.json") -> Path:
    data = copy.deepcopy(_read_json(source))
    change(data)
    return _write_json(tmp_path / name, data)


def _expected(case: Case) -> dict[int, dict[str, Any]]:
    """The instances an independent reading of the file gives, by annotation id: every annotation
    with a labelled keypoint and a box of positive size, its box cleaned the mmpose 0.x way."""
    data = _read_json(case.ann_file)
    images = {image["id"]: image for image in data["images"]}
    expected = {}
    for ann in data["annotations"]:
        triplets = np.concatenate([np.asarray(ann[field], np.float64).reshape(-1, 3) for field in case.fields])
        image = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        if not (w > 0 and h > 0 and (triplets[:, 2] > 0).any()):
            continue
        x1, y1 = max(0.0, x), max(0.0, y)
        box = [x1, y1, min(image["width"] - 1, x1 + w - 1), min(image["height"] - 1, y1 + h - 1)]
        file_name = image["file_name"][len(case.strip):] if case.strip else image["file_name"]
        expected[ann["id"]] = {"ann": ann, "triplets": triplets, "image": image, "box": box,
                               "path": case.ann_file.parent / file_name}
    return expected


# ---------------------------------------------------------------------------------------------
# coverage of the registry


def test_every_registered_coco_reader_is_covered() -> None:
    registered = set(_coco_family_names())
    assert {"coco", "coco_wholebody", "ochuman", "crowdpose", "aic", "ap10k", "apt36k", "animalpose", "humanart",
            "coco_style"} <= registered
    assert registered == {case.reader for case in CASES}, "a COCO-format reader has no test case here"


# ---------------------------------------------------------------------------------------------
# ground-truth instances on the shared samples


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_topdown_count_and_one_warning_counting_the_skipped(case: Case) -> None:
    dataset, caught = _build_recording(case.spec())
    assert len(dataset) == case.count
    assert len(dataset) == len(_expected(case))
    if case.unlabelled == 0:
        assert caught == [], [str(w.message) for w in caught]
        return
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert str(case.ann_file) in message
    assert f"{case.count} instance(s) loaded" in message
    assert f"skipped {case.unlabelled} instance(s)" in message
    assert f"{case.unlabelled} with no labelled keypoint" in message
    assert caught[0].filename == __file__  # points at the code that asked for the dataset


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_instances_equal_an_independent_reading(case: Case) -> None:
    dataset = _build(case.spec(dataset_index=2))
    expected = _expected(case)
    facts = _read_json(METAINFO / f"{case.metainfo}.json")
    assert dataset.meta.num_keypoints == facts["num_keypoints"]
    assert dataset.meta.keypoint_names == tuple(facts["keypoint_names"])
    assert dataset.meta.flip_indices == tuple(facts["flip_indices"])
    seen = []
    for index in range(len(dataset)):
        sample = dataset.annotation(index)
        exp = expected[sample["id"]]
        ann, triplets, image = exp["ann"], exp["triplets"], exp["image"]
        seen.append(sample["id"])
        assert sample["image_id"] == ann["image_id"] == image["id"]
        assert sample["category_id"] == ann["category_id"]
        assert sample["bbox_score"] == 1.0
        assert sample["dataset_index"] == 2
        assert sample["meta"] is dataset.meta
        assert Path(sample["image_path"]) == exp["path"]
        assert tuple(sample["image_size"]) == (image["width"], image["height"])
        assert sample["keypoints"].shape == (facts["num_keypoints"], 2)
        np.testing.assert_allclose(sample["keypoints"], triplets[:, :2], rtol=0, atol=1e-3)
        np.testing.assert_array_equal(sample["visibility"], np.minimum(triplets[:, 2], 1.0).astype(np.float32))
        np.testing.assert_allclose(sample["bbox"], exp["box"], rtol=0, atol=1e-3)
        for key in ("keypoints", "visibility", "bbox"):
            assert sample[key].dtype == np.float32, key
    assert sorted(seen) == sorted(expected)
    assert len(set(seen)) == len(seen)


def test_wholebody_concatenates_body_foot_face_left_right_hand() -> None:
    dataset = _build(CASES[1].spec())
    raw = {ann["id"]: ann for ann in _read_json(CASES[1].ann_file)["annotations"]}
    starts = dict(zip(WHOLEBODY_ORDER, (0, 17, 23, 91, 112), strict=True))
    sizes = {"keypoints": 17, "foot_kpts": 6, "face_kpts": 68, "lefthand_kpts": 21, "righthand_kpts": 21}
    names = dataset.meta.keypoint_names
    assert (names[0], names[17], names[91], names[112]) == ("nose", "left_big_toe", "left_hand_root", "right_hand_root")
    checked = 0
    for index in range(len(dataset)):
        sample = dataset.annotation(index)
        ann = raw[sample["id"]]
        for field, start in starts.items():
            part = np.asarray(ann[field], np.float64).reshape(-1, 3)
            assert len(part) == sizes[field]
            block = slice(start, start + sizes[field])
            np.testing.assert_allclose(sample["keypoints"][block], part[:, :2], rtol=0, atol=1e-3, err_msg=field)
            np.testing.assert_array_equal(sample["visibility"][block], np.minimum(part[:, 2], 1.0), err_msg=field)
            checked += int((part[:, 2] > 0).sum())
    assert checked > 500  # the hands and faces really are labelled in this sample


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_images_load_as_rgb_of_the_stated_size(case: Case) -> None:
    dataset = _build(case.spec())
    expected = _expected(case)
    first_of_image: dict[Any, int] = {}
    for index in range(len(dataset)):
        first_of_image.setdefault(dataset.instances[index]["image_id"], index)
    assert len(first_of_image) == len({exp["image"]["id"] for exp in expected.values()})
    for index in first_of_image.values():
        sample = dataset[index]
        exp = expected[sample["id"]]
        bgr = cv2.imread(str(exp["path"]), cv2.IMREAD_COLOR)
        assert bgr is not None, exp["path"]
        assert sample["image"].shape == (exp["image"]["height"], exp["image"]["width"], 3)
        assert sample["image"].dtype == np.uint8
        np.testing.assert_array_equal(sample["image"], bgr[:, :, ::-1])


def test_humanart_images_are_not_found_without_strip_prefix() -> None:
    dataset = _build({"type": "humanart", "ann_file": str(CASES[8].ann_file)})
    with pytest.raises(DataError) as info:
        dataset[0]
    message = str(info.value)
    assert "HumanArt/images/2D_virtual_human/digital_art/000000001648.jpg" in message
    assert "image id 2000000001648" in message


def test_per_instance_fields_of_the_animal_readers() -> None:
    ap10k = _build(CASES[5].spec())
    assert {(s["image_id"], s["id"], s["category_id"]) for s in map(ap10k.annotation, range(2))} == {
        (37516, 9284, 26), (4, 6, 1)}  # jaguar and antelope: two of the 54 species categories
    animalpose = _build(CASES[7].spec())
    assert {(s["image_id"], s["id"], s["category_id"]) for s in map(animalpose.annotation, range(2))} == {
        (110, 129, 1), (3105, 583, 1)}


# ---------------------------------------------------------------------------------------------
# detection files


DETECTION_CASES = [
    pytest.param("coco", SHARED / "coco" / "test_coco.json", COCO_DETECTIONS, {}, 0.3, 118, 33, id="coco"),
    pytest.param("coco_wholebody", SHARED / "coco" / "test_coco_wholebody.json", COCO_DETECTIONS, {}, 0.3, 118, 33,
                 id="coco_wholebody"),
    pytest.param("crowdpose", SHARED / "crowdpose" / "test_crowdpose.json",
                 SHARED / "crowdpose" / "test_crowdpose_det_AP_40.json", {}, 0.97, 6, 5, id="crowdpose"),
    pytest.param("humanart", SHARED / "humanart" / "test_humanart.json",
                 SHARED / "humanart" / "test_humanart_det_AP_H_56.json", {"strip_prefix": HUMANART_PREFIX}, 0.3, 13, 8,
                 id="humanart"),
]


@pytest.mark.parametrize(("reader", "ann_file", "bbox_file", "args", "threshold", "total", "kept"), DETECTION_CASES)
def test_detection_files(reader: str, ann_file: Path, bbox_file: Path, args: dict[str, Any], threshold: float,
                         total: int, kept: int) -> None:
    detections = _read_json(bbox_file)
    assert len(detections) == total
    images = {image["id"]: image for image in _read_json(ann_file)["images"]}
    spec = {"type": reader, "ann_file": str(ann_file), "bbox_file": str(bbox_file), **args}
    everything, caught = _build_recording(spec)
    assert len(everything) == total
    assert caught == [], [str(w.message) for w in caught]
    filtered, caught = _build_recording({**spec, "bbox_score_thr": threshold})
    assert len(filtered) == kept
    assert len(caught) == 1
    assert f"{total - kept} detection(s) with score <= {threshold}" in str(caught[0].message)
    above = [det for det in detections if det["score"] > threshold]
    assert len(above) == kept
    k = filtered.meta.num_keypoints
    for index, det in enumerate(above):
        sample = filtered.annotation(index)
        assert sample["image_id"] == det["image_id"]
        assert sample["category_id"] == det["category_id"]
        assert sample["bbox_score"] == pytest.approx(det["score"], rel=1e-9)
        assert sample["keypoints"].shape == (k, 2) and sample["visibility"].shape == (k,)
        assert not sample["visibility"].any()  # nothing is known about keypoints of a detection
        image = images[det["image_id"]]
        path = bbox_file.parent / image["file_name"].removeprefix(args.get("strip_prefix", ""))
        assert Path(sample["image_path"]) == path
    assert filtered[0]["image"].shape[:2] == (images[above[0]["image_id"]]["height"],
                                              images[above[0]["image_id"]]["width"])


def test_detection_instances_have_unique_ids() -> None:
    # Results of different boxes in one image must stay distinguishable, as mmpose 0.x's running
    # bbox_id keeps them; negative ids also never collide with annotation ids.
    dataset = _build({"type": "coco", "ann_file": str(COCO.ann_file), "bbox_file": str(COCO_DETECTIONS)})
    ids = [dataset.annotation(index)["id"] for index in range(len(dataset))]
    assert len(set(ids)) == len(ids) == 118, f"{len(set(ids))} distinct ids among {len(ids)} detections"
    assert max(ids) < 0


def test_detection_boxes_are_used_as_mmpose_uses_them() -> None:
    # mmpose 0.x (_load_coco_person_detection_results) passes a detection straight to _xywh2cs:
    # centre (x + w/2, y + h/2), size (w, h); no ground-truth cleaning, no clipping.
    dataset = _build({"type": "coco", "ann_file": str(COCO.ann_file), "bbox_file": str(COCO_DETECTIONS)})
    detections = _read_json(COCO_DETECTIONS)
    to_center_scale = GetBBoxCenterScale(padding=1.25)
    for index, det in enumerate(detections):
        x, y, w, h = det["bbox"]
        sample = to_center_scale(dataset.annotation(index), np.random.default_rng(0))
        np.testing.assert_allclose(sample["center"], [x + w / 2, y + h / 2], rtol=0, atol=1e-3,
                                   err_msg=f"detection #{index}")
        np.testing.assert_allclose(sample["scale"], [1.25 * w, 1.25 * h], rtol=1e-5, err_msg=f"detection #{index}")


def test_detection_problems_name_the_detection_file(tmp_path: Path) -> None:
    # An empty detection file, and detections skipped by score, are reported against the detection file.
    empty = _write_json(tmp_path / "detections.json", [])
    with pytest.raises(DataError) as info:
        _build({"type": "coco", "ann_file": str(COCO.ann_file), "bbox_file": str(empty)})
    assert str(empty) in str(info.value), str(info.value)
    _, caught = _build_recording({"type": "coco", "ann_file": str(COCO.ann_file), "bbox_file": str(COCO_DETECTIONS),
                                  "bbox_score_thr": 0.3})
    assert str(COCO_DETECTIONS) in str(caught[0].message), str(caught[0].message)


def test_detection_file_that_is_not_a_list(tmp_path: Path) -> None:
    bad = _write_json(tmp_path / "dets.json", {"annotations": _read_json(COCO_DETECTIONS)})
    with pytest.raises(DataError) as info:
        _build({"type": "coco", "ann_file": str(COCO.ann_file), "bbox_file": str(bad)})
    assert str(bad) in str(info.value) and "list" in str(info.value)


def test_detection_naming_an_unknown_image(tmp_path: Path) -> None:
    bad = _variant(tmp_path, COCO_DETECTIONS, lambda dets: dets[5].update(image_id=999), "dets.json")
    with pytest.raises(DataError) as info:
        _build({"type": "coco", "ann_file": str(COCO.ann_file), "bbox_file": str(bad)})
    message = str(info.value)
    assert str(bad) in message
    message = message.replace(str(bad), "<dets>")
    assert "detection #5" in message and "image_id 999" in message


def test_detection_without_score(tmp_path: Path) -> None:
    bad = _variant(tmp_path, COCO_DETECTIONS, lambda dets: dets[7].pop("score"), "dets.json")
    with pytest.raises(DataError) as info:
        _build({"type": "coco", "ann_file": str(COCO.ann_file), "bbox_file": str(bad)})
    message = str(info.value)
    assert str(bad) in message
    assert "detection #7" in message.replace(str(bad), "<dets>") and "'score'" in message


def test_zero_area_detection_is_skipped_and_counted(tmp_path: Path) -> None:
    dets = _variant(tmp_path, COCO_DETECTIONS, lambda d: d[0]["bbox"].__setitem__(3, 0.0), "dets.json")
    dataset, caught = _build_recording({"type": "coco", "ann_file": str(COCO.ann_file), "bbox_file": str(dets)})
    assert len(dataset) == 117
    assert len(caught) == 1
    assert "skipped 1 instance(s)" in str(caught[0].message) and "zero area" in str(caught[0].message)


# ---------------------------------------------------------------------------------------------
# bad inputs: a DataError naming the file, the annotation or image, and the field


def _data_error(spec: dict[str, Any]) -> str:
    with pytest.raises(DataError) as info:
        _build(spec)
    return str(info.value)


def test_missing_image(tmp_path: Path) -> None:
    dataset = _build(COCO.spec(image_root=str(tmp_path)))
    index = next(i for i in range(len(dataset)) if dataset.instances[i]["image_id"] == 196141)
    with pytest.raises(DataError) as info:
        dataset[index]
    message = str(info.value)
    assert str(tmp_path / "000000196141.jpg") in message and "image id 196141" in message


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b"\xff\xd8\xff\xdb" + b"\x13" * 300],
                         ids=["empty", "bad-png", "bad-jpeg"])
def test_corrupt_image(tmp_path: Path, content: bytes) -> None:
    for image in ("000000000785.jpg", "000000040083.jpg"):
        (tmp_path / image).write_bytes(content)
    dataset = _build(COCO.spec(image_root=str(tmp_path)))
    index = next(i for i in range(len(dataset)) if dataset.instances[i]["image_id"] == 40083)
    with pytest.raises(DataError) as info:
        dataset[index]
    message = str(info.value)
    assert str(tmp_path / "000000040083.jpg") in message and "image id 40083" in message


@pytest.mark.parametrize("field", ["bbox", "keypoints", "image_id"])
def test_annotation_without_a_required_field(tmp_path: Path, field: str) -> None:
    path = _variant(tmp_path, COCO.ann_file, lambda d: d["annotations"][4].pop(field))
    message = _data_error(COCO.spec(ann_file=str(path), image_root=str(SHARED / "coco")))
    assert str(path) in message
    message = message.replace(str(path), "<file>")
    assert "annotation id 460541" in message and f"'{field}'" in message


@pytest.mark.parametrize("field", WHOLEBODY_ORDER[1:])
def test_wholebody_annotation_without_a_part(tmp_path: Path, field: str) -> None:
    case = CASES[1]
    path = _variant(tmp_path, case.ann_file, lambda d: d["annotations"][2].pop(field))
    message = _data_error(case.spec(ann_file=str(path), image_root=str(SHARED / "coco")))
    assert str(path) in message
    assert "annotation id 230195" in message.replace(str(path), "<file>") and f"'{field}'" in message


def test_wrong_keypoint_count_for_the_metainfo(tmp_path: Path) -> None:
    crowdpose_file = SHARED / "crowdpose" / "test_crowdpose.json"
    message = _data_error({"type": "coco", "ann_file": str(crowdpose_file)})
    assert str(crowdpose_file) in message
    assert "annotation id 123803" in message and "14 keypoints" in message and "'coco' declares 17" in message
    # One missing face point in one COCO-WholeBody annotation: 132 of 133.
    case = CASES[1]
    path = _variant(tmp_path, case.ann_file, lambda d: d["annotations"][2].update(
        face_kpts=d["annotations"][2]["face_kpts"][:-3]))
    message = _data_error(case.spec(ann_file=str(path), image_root=str(SHARED / "coco")))
    assert str(path) in message
    assert "annotation id 230195" in message and "132 keypoints" in message and "133" in message
    # The 21-keypoint Human-Art field read with the 17-keypoint set.
    path = _variant(tmp_path, CASES[8].ann_file, lambda d: d["annotations"][1].update(
        keypoints=d["annotations"][1]["keypoints_21"]), "humanart.json")
    message = _data_error({"type": "humanart", "ann_file": str(path)})
    assert "annotation id 12000000076660" in message and "21 keypoints" in message


MALFORMED = [
    # (what, change to the COCO sample, the message's field and complaint); annotation 442619 is the first
    ("keypoints-text", lambda d: d["annotations"][0].update(keypoints="17 people"),
     r"annotation id 442619 \(image 785\): field 'keypoints' must be a list of numbers"),
    ("keypoint-null", lambda d: d["annotations"][0]["keypoints"].__setitem__(3, None),
     r"annotation id 442619 \(image 785\): field 'keypoints' holds 1 value\(s\) that are not finite numbers"),
    ("keypoint-nan", lambda d: d["annotations"][0]["keypoints"].__setitem__(4, float("nan")),
     r"annotation id 442619 \(image 785\): field 'keypoints' holds 1 value\(s\) that are not finite .*position 4"),
    ("visibility-negative", lambda d: d["annotations"][0]["keypoints"].__setitem__(5, -1),
     r"annotation id 442619 \(image 785\): field 'keypoints' gives keypoint 1 the visibility -1; v must be >= 0"),
    ("bbox-null", lambda d: d["annotations"][0].update(bbox=None),
     r"annotation id 442619 \(image 785\): field 'bbox' must be a list of numbers; got None"),
    ("bbox-three", lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
     r"annotation id 442619 \(image 785\): field 'bbox' must hold 4 numbers; got 3"),
    ("area-text", lambda d: d["annotations"][0].update(area="large"),
     r"annotation id 442619 \(image 785\): field 'area' must be a finite number; got 'large'"),
    ("category-text", lambda d: d["annotations"][0].update(category_id="person"),
     r"annotation id 442619 \(image 785\): field 'category_id' must be an integer; got 'person'"),
    ("width-text", lambda d: d["images"][0].update(width="640"),
     r"images\[0\]: field 'width' must be a positive number of pixels; got '640'"),
    ("annotations-object", lambda d: d.update(annotations={"442619": {}}),
     r"top-level field 'annotations' must be a list of objects; got a dict"),
    ("annotation-text", lambda d: d["annotations"].__setitem__(2, "person"),
     r"annotations\[2\] must be an object; got a str"),
    ("image-id-twice", lambda d: d["images"].append({**d["images"][0], "file_name": "other.jpg"}),
     r"'images': image id 785 is used twice \(entries 0 and 4\)"),
    ("annotation-id-twice", lambda d: d["annotations"].append(copy.deepcopy(d["annotations"][3])),
     r"'annotations': annotation id 1202706 is used twice \(entries 3 and 14\)"),
]


@pytest.mark.parametrize(("what", "change", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_values_name_the_file_the_record_and_the_field(tmp_path: Path, what: str, change: Any,
                                                                 message: str) -> None:
    # numpy would turn a null into NaN and a duplicate id would silently replace an image: both must stop here
    path = _variant(tmp_path, COCO.ann_file, change)
    text = _data_error(COCO.spec(ann_file=str(path), image_root=str(SHARED / "coco")))
    assert text.startswith(str(path)), text
    assert re.search(message, text), text


DETECTION_MALFORMED = [
    ("score-text", lambda d: d[3].update(score="high"), r"detection #3 \(image \d+\): field 'score' must be a finite"),
    ("bbox-null", lambda d: d[3].update(bbox=None), r"detection #3 \(image \d+\): field 'bbox' must be a list"),
    ("not-an-object", lambda d: d.__setitem__(3, [1, 2, 3, 4]), r"detection #3 must be an object"),
]


@pytest.mark.parametrize(("what", "change", "message"), DETECTION_MALFORMED, ids=[m[0] for m in DETECTION_MALFORMED])
def test_malformed_detections_name_the_detection(tmp_path: Path, what: str, change: Any, message: str) -> None:
    dets = _variant(tmp_path, COCO_DETECTIONS, change, "dets.json")
    text = _data_error({"type": "coco", "ann_file": str(COCO.ann_file), "bbox_file": str(dets)})
    assert text.startswith(str(dets)) and re.search(message, text), text


def test_empty_annotation_list(tmp_path: Path) -> None:
    path = _variant(tmp_path, COCO.ann_file, lambda d: d.update(annotations=[]))
    message = _data_error(COCO.spec(ann_file=str(path)))
    assert str(path) in message and "no usable instance" in message


def test_ground_truth_file_without_annotations(tmp_path: Path) -> None:
    path = _variant(tmp_path, COCO.ann_file, lambda d: d.pop("annotations"))
    message = _data_error(COCO.spec(ann_file=str(path)))
    assert str(path) in message and "'annotations'" in message


def test_zero_area_box_is_skipped_and_counted(tmp_path: Path) -> None:
    def flatten(data: dict[str, Any]) -> None:
        data["annotations"][0]["bbox"][3] = 0.0  # 442619, image 785
        data["annotations"][4]["bbox"][2] = -3.0  # 460541, image 196141

    path = _variant(tmp_path, COCO.ann_file, flatten)
    dataset, caught = _build_recording(COCO.spec(ann_file=str(path), image_root=str(SHARED / "coco")))
    assert len(dataset) == 10
    assert {442619, 460541}.isdisjoint(inst["id"] for inst in dataset.instances)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "10 instance(s) loaded" in message and "skipped 4 instance(s)" in message
    assert "2 with box of zero area" in message and "2 with no labelled keypoint" in message


def test_keypoints_outside_the_image_are_counted_and_kept(tmp_path: Path) -> None:
    def push_out(data: dict[str, Any]) -> None:
        points = data["annotations"][0]["keypoints"]  # 442619 in image 785 (640 x 425), all labelled
        points[0:2] = [-20.0, 100.0]
        points[3:5] = [700.0, 100.0]
        points[6:8] = [300.0, 425.0]  # y == height is outside too
        second = data["annotations"][1]["keypoints"]  # 198196: an unlabelled point does not count
        unlabelled = next(i for i in range(0, len(second), 3) if second[i + 2] == 0)
        second[unlabelled:unlabelled + 2] = [-50.0, -50.0]

    path = _variant(tmp_path, COCO.ann_file, push_out)
    dataset, caught = _build_recording(COCO.spec(ann_file=str(path), image_root=str(SHARED / "coco")))
    assert len(dataset) == 12
    kept = next(inst for inst in dataset.instances if inst["id"] == 442619)
    np.testing.assert_allclose(kept["keypoints"][:3], [[-20, 100], [700, 100], [300, 425]])
    assert kept["visibility"][:3].tolist() == [1.0, 1.0, 1.0]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "3 keypoint(s) outside their image" in message
    assert "442619" in message.replace(str(path), "<file>")


# ---------------------------------------------------------------------------------------------
# each reader's own small example


@pytest.mark.parametrize("name", _coco_family_names())
def test_write_example_loads(name: str, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the example is clean: nothing skipped, nothing outside
        dataset = _datasets().build_example(name, tmp_path)
    assert len(dataset) == 3
    written = _read_json(tmp_path / "annotations.json")
    k = dataset.meta.num_keypoints
    if name != "coco_style":
        assert k == load_metainfo(name).num_keypoints
    raw = {ann["id"]: ann for ann in written["annotations"]}
    for index in range(3):
        sample = dataset[index]
        assert sample["image"].shape == (48, 64, 3) and sample["image"].dtype == np.uint8
        assert sample["keypoints"].shape == (k, 2) and sample["visibility"].shape == (k,)
        fields = WHOLEBODY_ORDER if name == "coco_wholebody" else ("keypoints",)
        triplets = np.concatenate([np.asarray(raw[sample["id"]][f], np.float64).reshape(-1, 3) for f in fields])
        np.testing.assert_allclose(sample["keypoints"], triplets[:, :2], rtol=0, atol=1e-4)
