"""MPII and InterHand2.6M readers on the shared sample files; expectations derived here, independently."""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from scipy.io import loadmat, savemat

from posecore._errors import DataError
from posecore.data import check_sample, collate_samples, load_metainfo
from posecore.data._interhand import InterHand2DDataset
from posecore.data._mpii import MpiiDataset
from posecore.data._transforms import GetBBoxCenterScale

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MPII = SHARED / "mpii"
MPII_JSON = MPII / "test_mpii.json"
MPII_HEADBOXES = MPII / "test_mpii_gt_val.mat"
INTERHAND = SHARED / "interhand2.6m"
IH_DATA, IH_CAMERA, IH_JOINTS = (INTERHAND / f"test_interhand2.6m_{name}.json"
                                 for name in ("data", "camera", "joint_3d"))

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared sample data not found at {SHARED}")


def _build(factory: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    """The dataset and the warnings its loading gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = factory(*args, **kwargs)
    return dataset, [str(w.message) for w in caught]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return bgr[:, :, ::-1]


# =============================================================================================
# MPII


def _mpii_variant(tmp_path: Path, change) -> Path:
    entries = _read_json(MPII_JSON)
    change(entries)
    return _write_json(tmp_path / "mpii_variant.json", entries)


def _mmpose0_center_scale(entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """mmpose 0.x TopDownMpiiDataset: centre and scale (in pixels, after its 1.25 enlargement)."""
    center = np.array(entry["center"], dtype=np.float64)
    scale = np.array([entry["scale"], entry["scale"]], dtype=np.float64)
    if center[0] != -1:
        center[1] += 15 * scale[1]
        scale *= 1.25
    return center - 1, scale * 200


def _three_point_warp(center: np.ndarray, size: float, output: int) -> np.ndarray:
    """HRNet's get_affine_transform without rotation, from three point pairs (square box and output)."""
    src = np.array([center, center + [0, -size / 2], center + [-size / 2, -size / 2]], dtype=np.float32)
    half = output / 2
    dst = np.array([[half, half], [half, 0], [0, 0]], dtype=np.float32)
    return cv2.getAffineTransform(src, dst)


def test_mpii_sample_instances_match_the_file() -> None:
    dataset, messages = _build(MpiiDataset, str(MPII_JSON), dataset_index=2)
    entries = _read_json(MPII_JSON)
    assert len(dataset) == len(entries) == 5
    assert messages == []
    assert dataset.meta == load_metainfo("mpii") and dataset.meta.num_keypoints == 16
    for position, entry in enumerate(entries):
        sample = dataset.annotation(position)
        assert sample["id"] == position
        assert sample["image_id"] == int(entry["image"].split(".")[0])
        assert Path(sample["image_path"]) == MPII / entry["image"]
        assert sample["category_id"] == 1 and sample["dataset_index"] == 2 and sample["image_size"] is None
        assert "head_size" not in sample
        # Joints move to the 0-based pixel frame; joints_vis is the visibility.
        np.testing.assert_allclose(sample["keypoints"], np.array(entry["joints"]) - 1, atol=1e-4)
        np.testing.assert_array_equal(sample["visibility"], np.array(entry["joints_vis"], dtype=np.float32))
        # The box is the square of side scale * 200 around the shifted, 0-based centre.
        cx, cy = entry["center"][0] - 1, entry["center"][1] + 15 * entry["scale"] - 1
        half = entry["scale"] * 100
        np.testing.assert_allclose(sample["bbox"], [cx - half, cy - half, cx + half, cy + half], atol=1e-3)
        for key in ("keypoints", "visibility", "bbox"):
            assert sample[key].dtype == np.float32


def test_mpii_crop_after_padding_is_mmpose0s() -> None:
    dataset, _ = _build(MpiiDataset, str(MPII_JSON))
    for position, entry in enumerate(_read_json(MPII_JSON)):
        sample = GetBBoxCenterScale(padding=1.25)(dict(dataset.annotation(position)), np.random.default_rng(0))
        center, scale = _mmpose0_center_scale(entry)
        np.testing.assert_allclose(sample["center"], center, atol=1e-3)
        np.testing.assert_allclose(sample["scale"], scale, rtol=1e-6)
        # The whole 256 x 256 crop, built from each side's centre and size, is the same map.
        ours = _three_point_warp(sample["center"].astype(np.float64), float(sample["scale"][0]), 256)
        theirs = _three_point_warp(center, float(scale[0]), 256)
        np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_mpii_entry_without_a_centre_keeps_mmpose0s_crop(tmp_path: Path) -> None:
    path = _mpii_variant(tmp_path, lambda e: e[1].update(center=[-1, -1]))
    dataset, _ = _build(MpiiDataset, str(path), image_root=str(MPII))
    entry = _read_json(path)[1]
    sample = GetBBoxCenterScale(padding=1.25)(dict(dataset.annotation(1)), np.random.default_rng(0))
    center, scale = _mmpose0_center_scale(entry)  # not shifted, not enlarged
    np.testing.assert_allclose(sample["center"], center, atol=1e-3)
    np.testing.assert_allclose(sample["scale"], scale, rtol=1e-6)


def test_mpii_head_sizes_from_the_mat_file() -> None:
    dataset, messages = _build(MpiiDataset, str(MPII_JSON), headbox_file=str(MPII_HEADBOXES))
    assert messages == []
    boxes = loadmat(str(MPII_HEADBOXES))["headboxes_src"]  # (2, 2, N): [[x1, y1], [x2, y2]] per person
    for position in range(5):
        (x1, y1), (x2, y2) = boxes[:, :, position]
        expected = 0.6 * np.hypot(x2 - x1, y2 - y1)
        assert dataset.annotation(position)["head_size"] == pytest.approx(expected, rel=1e-9)
    # The mat file's ground truth is the json's, in the 1-based frame (README: checked for these 5).
    gt = loadmat(str(MPII_HEADBOXES))["pos_gt_src"]
    sample = dataset.annotation(0)
    visible = sample["visibility"] > 0
    np.testing.assert_allclose(sample["keypoints"][visible] + 1, gt[:, :, 0][visible], atol=1e-3)


def test_mpii_images_load() -> None:
    dataset, _ = _build(MpiiDataset, str(MPII_JSON), headbox_file=str(MPII_HEADBOXES))
    samples = [dataset[i] for i in (0, 1)]
    for sample, entry in zip(samples, _read_json(MPII_JSON)[:2], strict=True):
        check_sample(sample, 16)
        np.testing.assert_array_equal(sample["image"], _rgb(MPII / entry["image"]))
    assert samples[1]["image"].shape == (480, 854, 3)
    batch = collate_samples(samples)
    assert tuple(batch["keypoints"].shape) == (2, 16, 2)
    assert batch["head_size"].shape == (2,)


def test_mpii_headbox_file_not_aligned() -> None:
    full = MPII / "mpii_gt_val.mat"
    with pytest.raises(DataError) as info:
        MpiiDataset(str(MPII_JSON), headbox_file=str(full))
    message = str(info.value)
    assert str(full) in message and str(MPII_JSON) in message
    assert "head boxes of 2958 people" in message and "lists 5" in message and "aligned 1:1" in message


def test_mpii_headbox_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="head box file \\(headbox_file\\) not found"):
        MpiiDataset(str(MPII_JSON), headbox_file=str(tmp_path / "none.mat"))
    wrong = tmp_path / "wrong.mat"
    savemat(str(wrong), {"jnt_missing": np.zeros((16, 5))})
    with pytest.raises(DataError, match="variable 'headboxes_src' is missing \\(variables: jnt_missing\\)"):
        MpiiDataset(str(MPII_JSON), headbox_file=str(wrong))
    broken = tmp_path / "broken.mat"
    broken.write_bytes(b"MATLAB 5.0 but nothing else")
    with pytest.raises(DataError, match="cannot be read as a MATLAB .mat file") as info:
        MpiiDataset(str(MPII_JSON), headbox_file=str(broken))
    assert str(broken) in str(info.value)
    shape = tmp_path / "shape.mat"
    savemat(str(shape), {"headboxes_src": np.zeros((4, 5))})
    with pytest.raises(DataError, match=r"must have shape \(2, 2, N\)"):
        MpiiDataset(str(MPII_JSON), headbox_file=str(shape))


def test_mpii_missing_field(tmp_path: Path) -> None:
    path = _mpii_variant(tmp_path, lambda e: e[2].pop("joints"))
    with pytest.raises(DataError) as info:
        MpiiDataset(str(path))
    message = str(info.value)
    assert f"{path}: entry #2 (image '051423444.jpg') lacks required field(s) 'joints'" in message


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e[2]["joints"][4].__setitem__(0, None), "field 'joints' holds values that are not finite numbers"),
    (lambda e: e[2].update(scale="tall"), "field 'scale' must hold numbers; got 'tall'"),
    (lambda e: e[2].update(scale=float("nan")), "field 'scale' holds values that are not finite numbers"),
    (lambda e: e[2].update(image=51423444), "field 'image' must be the image's file name; got 51423444"),
], ids=["joint-null", "scale-text", "scale-nan", "image-number"])
def test_mpii_malformed_values(tmp_path: Path, change: Any, message: str) -> None:
    path = _mpii_variant(tmp_path, change)
    with pytest.raises(DataError) as info:
        MpiiDataset(str(path))
    assert str(info.value).startswith(f"{path}: entry #2 (image ") and message in str(info.value), str(info.value)


def test_mpii_joint_count_differs_from_metainfo(tmp_path: Path) -> None:
    path = _mpii_variant(tmp_path, lambda e: e[3].update(joints=e[3]["joints"][:15]))
    with pytest.raises(DataError) as info:
        MpiiDataset(str(path))
    assert f"{path}: entry #3 (image '004645041.jpg') has 15 joints" in str(info.value)
    assert "metainfo 'mpii' declares 16" in str(info.value)
    path = _mpii_variant(tmp_path, lambda e: e[0].update(joints_vis=e[0]["joints_vis"] + [1]))
    with pytest.raises(DataError, match="entry #0 .* has 17 values in 'joints_vis' but metainfo 'mpii' declares 16"):
        MpiiDataset(str(path))


def test_mpii_zero_scale_is_skipped_and_counted(tmp_path: Path) -> None:
    path = _mpii_variant(tmp_path, lambda e: e[4].update(scale=0))
    dataset, messages = _build(MpiiDataset, str(path), image_root=str(MPII), headbox_file=str(MPII_HEADBOXES))
    assert len(dataset) == 4 and [s["id"] for s in dataset.instances] == [0, 1, 2, 3]
    assert len(messages) == 1
    assert "4 instance(s) loaded; skipped 1 instance(s): 1 with box of zero area" in messages[0]
    assert "entry #4" in messages[0]
    # Head sizes stay aligned with the json entries, not with the kept instances.
    boxes = loadmat(str(MPII_HEADBOXES))["headboxes_src"]
    assert dataset.annotation(3)["head_size"] == pytest.approx(0.6 * np.linalg.norm(boxes[1, :, 3] - boxes[0, :, 3]))


def test_mpii_visible_joint_outside_the_image_is_counted(tmp_path: Path) -> None:
    def change(entries: list[dict[str, Any]]) -> None:
        entries[1]["joints"][4] = [-20.0, 100.0]

    path = _mpii_variant(tmp_path, change)
    dataset, messages = _build(MpiiDataset, str(path), image_root=str(MPII))
    assert len(dataset) == 5 and len(messages) == 1
    assert "kept, but 1 keypoint(s) outside their image (first: " in messages[0] and "entry #1" in messages[0]


def test_mpii_empty_and_broken_files(tmp_path: Path) -> None:
    empty = _write_json(tmp_path / "empty.json", [])
    with pytest.raises(DataError, match="no usable instance") as info:
        MpiiDataset(str(empty))
    assert str(empty) in str(info.value)
    coco_like = _write_json(tmp_path / "coco.json", {"images": [], "annotations": []})
    with pytest.raises(DataError, match="is a list of people"):
        MpiiDataset(str(coco_like))
    with pytest.raises(DataError, match="annotation file not found"):
        MpiiDataset(str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")
    with pytest.raises(DataError, match="is not valid JSON"):
        MpiiDataset(str(broken))
    path = _mpii_variant(tmp_path, lambda e: e[0].update(scale="big"))
    with pytest.raises(DataError, match="entry #0 .*field 'scale' must hold numbers"):
        MpiiDataset(str(path))


@pytest.mark.parametrize("content", [None, b"", b"\xff\xd8\xff\xe0 not a jpeg " * 10],
                         ids=["missing", "empty", "garbage"])
def test_mpii_missing_or_corrupt_image(tmp_path: Path, content: bytes | None) -> None:
    image = tmp_path / "052475643.jpg"
    if content is not None:
        image.write_bytes(content)
    dataset, _ = _build(MpiiDataset, str(MPII_JSON), image_root=str(tmp_path))
    with pytest.raises(DataError) as info:
        dataset[1]
    message = str(info.value)
    assert str(image) in message and "image id 52475643" in message


def test_mpii_image_ids_fall_back_to_order_for_other_names(tmp_path: Path) -> None:
    def rename(entries: list[dict[str, Any]]) -> None:
        for entry, name in zip(entries, ["b.jpg", "a.jpg", "b.jpg", "c.jpg", "a.jpg"], strict=True):
            entry["image"] = name

    dataset, _ = _build(MpiiDataset, str(_mpii_variant(tmp_path, rename)))
    assert [dataset.annotation(i)["image_id"] for i in range(5)] == [0, 1, 0, 2, 1]


# =============================================================================================
# InterHand2.6M


def _independent_projection(world: np.ndarray, camera: dict[str, Any], name: str) -> np.ndarray:
    """u ~ K [R | -R C] X, with the 3 x 4 projection matrix and a homogeneous divide."""
    rotation = np.array(camera["camrot"][name], dtype=np.float64)
    position = np.array(camera["campos"][name], dtype=np.float64)
    (fx, fy), (cx, cy) = camera["focal"][name], camera["princpt"][name]
    intrinsics = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    projection = intrinsics @ np.hstack([rotation, -(rotation @ position)[:, None]])
    homogeneous = np.hstack([world, np.ones((len(world), 1))]) @ projection.T
    return homogeneous[:, :2] / homogeneous[:, 2:]


def _interhand_variants(tmp_path: Path, data=None, camera=None, joints=None) -> dict[str, str]:
    files = {}
    for key, source, change in (("ann_file", IH_DATA, data), ("camera_file", IH_CAMERA, camera),
                                ("joint_file", IH_JOINTS, joints)):
        if change is None:
            files[key] = str(source)
            continue
        content = _read_json(source)
        change(content)
        files[key] = str(_write_json(tmp_path / source.name, content))
    return {**files, "image_root": str(INTERHAND)}


def test_interhand_sample_instances_and_projection() -> None:
    dataset, messages = _build(InterHand2DDataset, str(IH_DATA), str(IH_CAMERA), str(IH_JOINTS))
    assert messages == []
    assert len(dataset) == 4
    assert dataset.meta == load_metainfo("interhand3d") and dataset.meta.num_keypoints == 42
    data, cameras, joints = _read_json(IH_DATA), _read_json(IH_CAMERA), _read_json(IH_JOINTS)
    images = {image["id"]: image for image in data["images"]}
    hand_types = {"right": [1, 0], "left": [0, 1], "interacting": [1, 1]}
    for position, ann in enumerate(data["annotations"]):
        sample = dataset.annotation(position)
        image = images[ann["image_id"]]
        world = np.array(joints[str(image["capture"])][str(image["frame_idx"])]["world_coord"], dtype=np.float64)
        expected = _independent_projection(world, cameras[str(image["capture"])], image["camera"])
        assert sample["id"] == ann["id"] and sample["image_id"] == ann["image_id"]
        assert Path(sample["image_path"]) == INTERHAND / image["file_name"]
        assert sample["image_size"] == (image["width"], image["height"])
        np.testing.assert_allclose(sample["keypoints"], expected, rtol=0, atol=2e-3)
        # The sample's joint_valid is already consistent with the wrists and the hand type.
        np.testing.assert_array_equal(sample["visibility"], np.array(ann["joint_valid"], dtype=np.float32).ravel())
        np.testing.assert_array_equal(sample["hand_type"], hand_types[ann["hand_type"]])
        assert sample["hand_type_valid"] == ann["hand_type_valid"]
        x, y, w, h = ann["bbox"]
        x2, y2 = min(image["width"] - 1, x + w - 1), min(image["height"] - 1, y + h - 1)
        np.testing.assert_allclose(sample["bbox"], [max(0, x), max(0, y), x2, y2], atol=1e-3)
        # Every valid keypoint of these crops lies inside its image (so no warning above).
        x, y = sample["keypoints"][sample["visibility"] > 0].T
        assert ((x >= 0) & (x < image["width"]) & (y >= 0) & (y < image["height"])).all()
    assert [int(dataset.annotation(i)["visibility"].sum()) for i in range(4)] == [42, 42, 21, 21]


def test_interhand_images_load_and_collate() -> None:
    dataset, _ = _build(InterHand2DDataset, str(IH_DATA), str(IH_CAMERA), str(IH_JOINTS))
    samples = [dataset[0], dataset[3]]
    for sample in samples:
        check_sample(sample, 42)
        np.testing.assert_array_equal(sample["image"], _rgb(Path(sample["image_path"])))
    assert samples[0]["image"].shape == (512, 334, 3) and samples[1]["image"].shape == (334, 512, 3)
    batch = collate_samples(samples)
    assert tuple(batch["keypoints"].shape) == (2, 42, 2) and tuple(batch["hand_type"].shape) == (2, 2)


def test_interhand_invalid_wrist_invalidates_its_hand(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["annotations"][0]["joint_valid"][20] = [0]  # right wrist of an interacting pair

    dataset, messages = _build(InterHand2DDataset, **_interhand_variants(tmp_path, data=change))
    assert messages == []
    visibility = dataset.annotation(0)["visibility"]
    assert visibility[:21].sum() == 0 and visibility[21:].sum() == 21


def test_interhand_hand_type_excludes_the_other_hand(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["annotations"][3]["joint_valid"] = [[1]] * 42  # a 'right' crop claiming a valid left hand

    dataset, messages = _build(InterHand2DDataset, **_interhand_variants(tmp_path, data=change))
    assert dataset.annotation(3)["visibility"].tolist() == [1.0] * 21 + [0.0] * 21
    assert len(messages) == 1
    assert "kept, but 21 joint(s) valid on a hand that hand_type excludes (made invalid)" in messages[0]
    assert "annotation id 471953 (image 471953)" in messages[0]

    def unreliable(data: dict[str, Any]) -> None:
        change(data)
        data["annotations"][3]["hand_type_valid"] = 0

    # An unreliable hand type clears nothing; this crop's left-hand joints are junk far outside the image.
    dataset, messages = _build(InterHand2DDataset, **_interhand_variants(tmp_path, data=unreliable))
    assert dataset.annotation(3)["visibility"].sum() == 42
    assert len(messages) == 1 and re.search(r"kept, but \d+ keypoint\(s\) outside their image", messages[0])


def test_interhand_skips_are_counted(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["annotations"][0]["bbox"] = [30.0, 160.0, 0.0, 40.0]
        data["annotations"][1]["joint_valid"] = [[0]] * 42

    dataset, messages = _build(InterHand2DDataset, **_interhand_variants(tmp_path, data=change))
    assert [s["id"] for s in dataset.instances] == [680801, 471953]
    assert len(messages) == 1
    assert ("2 instance(s) loaded; skipped 2 instance(s): 1 with box of zero area, 1 with no labelled keypoint"
            in messages[0])


def test_interhand_keypoints_outside_the_image_are_counted(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["images"][2]["width"] = 150  # image29590's left hand reaches x ~ 200

    dataset, messages = _build(InterHand2DDataset, **_interhand_variants(tmp_path, data=change))
    sample = dataset.annotation(2)
    outside = int((sample["keypoints"][sample["visibility"] > 0, 0] >= 150).sum())
    assert len(dataset) == 4 and outside > 0
    assert len(messages) == 1 and f"kept, but {outside} keypoint(s) outside their image" in messages[0]
    assert "annotation id 680801 (image 680801)" in messages[0]


def test_interhand_missing_camera_or_joints(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        InterHand2DDataset(**_interhand_variants(tmp_path, camera=lambda c: c["7"]["focal"].pop("410053")))
    message = str(info.value)
    assert "capture '7' has no 'focal' for camera '410053'" in message
    assert "annotation id 680801 (image 680801)" in message and "test_interhand2.6m_camera.json" in message
    with pytest.raises(DataError, match="no capture '4'"):
        InterHand2DDataset(**_interhand_variants(tmp_path, camera=lambda c: c.pop("4")))
    with pytest.raises(DataError, match="no 'world_coord' for capture '2', frame '44669'") as info:
        InterHand2DDataset(**_interhand_variants(tmp_path, joints=lambda j: j["2"].pop("44669")))
    assert "test_interhand2.6m_joint_3d.json" in str(info.value) and "image 286291" in str(info.value)


def test_interhand_keypoint_count_differs_from_metainfo(tmp_path: Path) -> None:
    def short_world(joints: dict[str, Any]) -> None:
        joints["3"]["69148"]["world_coord"] = joints["3"]["69148"]["world_coord"][:21]

    with pytest.raises(DataError, match=r"shape \(21, 3\) but metainfo 'interhand3d' declares 42 keypoints"):
        InterHand2DDataset(**_interhand_variants(tmp_path, joints=short_world))

    def short_valid(data: dict[str, Any]) -> None:
        data["annotations"][1]["joint_valid"] = data["annotations"][1]["joint_valid"][:21]

    with pytest.raises(DataError) as info:
        InterHand2DDataset(**_interhand_variants(tmp_path, data=short_valid))
    assert "annotation id 286291 (image 286291): field 'joint_valid' has 21 entries" in str(info.value)


def test_interhand_bad_annotations(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        InterHand2DDataset(**_interhand_variants(tmp_path, data=lambda d: d["annotations"][2].pop("joint_valid")))
    assert "annotation id 680801 (image 680801) lacks required field(s) 'joint_valid'" in str(info.value)
    with pytest.raises(DataError, match="images\\[1\\] \\(id 286291\\) lacks required field\\(s\\) 'camera'"):
        InterHand2DDataset(**_interhand_variants(tmp_path, data=lambda d: d["images"][1].pop("camera")))
    with pytest.raises(DataError, match="'hand_type' is 'both'; expected one of right, left, interacting"):
        InterHand2DDataset(**_interhand_variants(tmp_path, data=lambda d: d["annotations"][0].update(hand_type="both")))
    with pytest.raises(DataError, match="no usable instance"):
        InterHand2DDataset(**_interhand_variants(tmp_path, data=lambda d: d.update(annotations=[])))
    with pytest.raises(DataError, match="camera file \\(camera_file\\) not found"):
        InterHand2DDataset(str(IH_DATA), str(tmp_path / "none.json"), str(IH_JOINTS))
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match="joint file \\(joint_file\\) .* is not valid JSON"):
        InterHand2DDataset(str(IH_DATA), str(IH_CAMERA), str(broken))


def test_interhand_joint_behind_the_camera_is_invalid(tmp_path: Path) -> None:
    camera = _read_json(IH_DATA)["images"][0]["camera"]
    position = np.array(_read_json(IH_CAMERA)["3"]["campos"][camera])

    def change(joints: dict[str, Any]) -> None:
        # Mirror joint 5 through the camera centre: same ray, negative depth.
        world = np.array(joints["3"]["69148"]["world_coord"][5])
        joints["3"]["69148"]["world_coord"][5] = (2 * position - world).tolist()

    dataset, messages = _build(InterHand2DDataset, **_interhand_variants(tmp_path, joints=change))
    sample = dataset.annotation(0)
    assert sample["visibility"][5] == 0 and sample["visibility"].sum() == 41
    assert len(messages) == 1 and "1 joint(s) at or behind the camera (made invalid)" in messages[0]


@pytest.mark.parametrize("content", [None, b"\xff\xd8\xff\xe0 broken " * 10], ids=["missing", "corrupt"])
def test_interhand_missing_or_corrupt_image(tmp_path: Path, content: bytes | None) -> None:
    if content is not None:
        (tmp_path / "image2017.jpg").write_bytes(content)
    dataset, _ = _build(InterHand2DDataset, str(IH_DATA), str(IH_CAMERA), str(IH_JOINTS), image_root=str(tmp_path))
    with pytest.raises(DataError) as info:
        dataset[3]
    assert str(tmp_path / "image2017.jpg") in str(info.value) and "image id 471953" in str(info.value)


def test_interhand_annotations_are_copies() -> None:
    dataset, _ = _build(InterHand2DDataset, str(IH_DATA), str(IH_CAMERA), str(IH_JOINTS))
    first = dataset.annotation(0)
    reference = copy.deepcopy(first["keypoints"])
    first["keypoints"][:] = 0
    np.testing.assert_array_equal(dataset.annotation(0)["keypoints"], reference)


# ---------------------------------------------------------------------------------------------
# one instance per hand (mmpose 0.x InterHand2DDataset, PoseBH's transfer experiment)


def _independent_single_hands() -> list[dict[str, Any]]:
    """Per annotation, right hand then left: kept with more than 11 valid joints (wrist-gated),
    box = the tightest box of the valid joints, its running min started at the image's size and
    max at 0 (mmpose 0.x)."""
    data, cameras, joints = _read_json(IH_DATA), _read_json(IH_CAMERA), _read_json(IH_JOINTS)
    images = {image["id"]: image for image in data["images"]}
    hands = []
    for ann in data["annotations"]:
        image = images[ann["image_id"]]
        world = np.array(joints[str(image["capture"])][str(image["frame_idx"])]["world_coord"], dtype=np.float64)
        pixels = _independent_projection(world, cameras[str(image["capture"])], image["camera"])
        valid = np.array(ann["joint_valid"], dtype=np.float64).reshape(2, 21)
        for hand, name in enumerate(("right", "left")):
            hand_valid = valid[hand] * valid[hand, -1]
            if hand_valid.sum() <= 11:
                continue
            points = pixels[21 * hand:21 * (hand + 1)]
            x1, y1, x2, y2 = float(image["width"]), float(image["height"]), 0.0, 0.0
            for (x, y), v in zip(points, hand_valid, strict=True):
                if v:
                    x1, y1, x2, y2 = min(x1, x), min(y1, y), max(x2, x), max(y2, y)
            hands.append({"id": ann["id"], "hand": name, "keypoints": points, "visibility": hand_valid,
                          "bbox": [x1, y1, x2, y2]})
    return hands


def test_interhand_each_hand_is_an_instance_as_in_mmpose0() -> None:
    dataset, messages = _build(InterHand2DDataset, str(IH_DATA), str(IH_CAMERA), str(IH_JOINTS), hands="each")
    expected = _independent_single_hands()
    assert len(dataset) == len(expected) == 6  # README: mmpose 0.x InterHand2DDataset gives 6
    assert dataset.meta == load_metainfo("interhand2d") and dataset.meta.num_keypoints == 21
    assert dataset.meta.flip_indices == tuple(range(21))  # one hand: nothing to swap
    # the right-only and left-only crops each have an empty other hand: counted, not silent
    assert len(messages) == 1 and "skipped 2 instance(s): 2 hand(s) with 11 or fewer valid joints" in messages[0]
    for index, exp in enumerate(expected):
        sample = dataset.annotation(index)
        assert (sample["id"], sample["hand"]) == (exp["id"], exp["hand"])
        assert sample["keypoints"].shape == (21, 2) and sample["visibility"].shape == (21,)
        np.testing.assert_allclose(sample["keypoints"], exp["keypoints"], rtol=0, atol=2e-3)
        np.testing.assert_array_equal(sample["visibility"], exp["visibility"])
        np.testing.assert_allclose(sample["bbox"], exp["bbox"], rtol=0, atol=2e-3)
        check_sample({**sample, "image": np.zeros((4, 4, 3), np.uint8)}, 21)
        # mmpose 0.x _xywh2cs(*bbox, 1.5): centre of the tight box, its size padded by 1.5
        boxed = GetBBoxCenterScale()(dict(sample), np.random.default_rng(0))
        x1, y1, x2, y2 = exp["bbox"]
        np.testing.assert_allclose(boxed["center"], [(x1 + x2) / 2, (y1 + y2) / 2], rtol=0, atol=2e-3)
        np.testing.assert_allclose(boxed["scale"], [1.5 * (x2 - x1), 1.5 * (y2 - y1)], rtol=0, atol=5e-3)
    with pytest.raises(Exception, match="hands must be one of 'both', 'each'; got 'left'"):
        InterHand2DDataset(str(IH_DATA), str(IH_CAMERA), str(IH_JOINTS), hands="left")


def test_interhand_each_hand_needs_more_than_eleven_valid_joints(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        right = data["annotations"][0]["joint_valid"]
        for k in range(9):  # 12 valid joints left on the right hand: kept
            right[k] = [0]
        left = data["annotations"][1]["joint_valid"]
        for k in range(21, 31):  # 11 left: skipped
            left[k] = [0]

    dataset, messages = _build(InterHand2DDataset, **_interhand_variants(tmp_path, data=change), hands="each")
    kept = [(s["id"], s["hand"], int(s["visibility"].sum())) for s in dataset.instances]
    assert kept == [(326750, "right", 12), (326750, "left", 21), (286291, "right", 21), (680801, "left", 21),
                    (471953, "right", 21)]
    assert "skipped 3 instance(s): 3 hand(s) with 11 or fewer valid joints" in messages[0]
    # the tight box covers only the valid joints
    sample = dataset.annotation(0)
    points = sample["keypoints"][sample["visibility"] > 0]
    np.testing.assert_allclose(sample["bbox"], [*points.min(axis=0), *points.max(axis=0)], rtol=0, atol=1e-4)


def test_interhand_malformed_values_and_repeated_ids(tmp_path: Path) -> None:
    def null_focal(cameras: dict[str, Any]) -> None:
        cameras["7"]["focal"]["410053"][0] = None

    with pytest.raises(DataError, match=r"capture '7' camera '410053': field 'focal' holds 1 value\(s\) that are "
                                        r"not finite numbers"):
        InterHand2DDataset(**_interhand_variants(tmp_path, camera=null_focal))

    def nan_joint(joints: dict[str, Any]) -> None:
        joints["2"]["44669"]["world_coord"][3][1] = float("nan")

    with pytest.raises(DataError, match=r"capture '2' frame '44669': field 'world_coord' holds 1 value\(s\)"):
        InterHand2DDataset(**_interhand_variants(tmp_path, joints=nan_joint))

    def repeat_image(data: dict[str, Any]) -> None:
        data["images"].append({**data["images"][0], "file_name": "elsewhere.jpg"})

    with pytest.raises(DataError, match=r"'images': image id 326750 is used twice \(entries 0 and 4\)"):
        InterHand2DDataset(**_interhand_variants(tmp_path, data=repeat_image))

    def repeat_annotation(data: dict[str, Any]) -> None:
        data["annotations"][2]["id"] = data["annotations"][1]["id"]

    with pytest.raises(DataError, match=r"'annotations': annotation id 286291 is used twice \(entries 1 and 2\)"):
        InterHand2DDataset(**_interhand_variants(tmp_path, data=repeat_annotation), hands="each")
