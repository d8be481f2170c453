"""Top-down geometry, transforms and pipelines, checked against mmpose 0.x recipes written here.

The reference warps are rebuilt the way mmpose 0.x builds them (three point pairs and
``cv2.getAffineTransform`` for the standard crop, the ``get_warp_matrix`` formula for UDP), and
flipping is checked against flipping the image explicitly, so that the folded single-warp design
of posecore has to reproduce the original pixel by pixel.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import simplejpeg
import torch

from posecore._errors import DataError
from posecore._plugins import get_host
from posecore.data import (
    DatasetMeta,
    PipelineDataset,
    build_pipeline,
    collate_samples,
    decode_image,
    load_metainfo,
    read_image,
    standard_topdown_pipeline,
)
from posecore.data._geometry import (
    apply_affine,
    compose_affine,
    horizontal_flip_matrix,
    invert_affine,
    standard_warp_matrix,
    udp_warp_matrix,
)
from posecore.data._transforms import (
    GetBBoxCenterScale,
    RandomBBoxTransform,
    RandomFlip,
    RandomHalfBody,
    TopdownAffine,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO_JSON = SHARED / "coco" / "test_coco.json"
INPUT = (192, 256)  # width, height
HEATMAP = (48, 64)

needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared sample data not found at {SHARED}")


# ---------------------------------------------------------------------------------------------
# mmpose 0.x references, written from the recipe (sizes in pixels instead of 200-px units)


def _rotate(point: np.ndarray, radians: float) -> np.ndarray:
    sn, cs = math.sin(radians), math.cos(radians)
    return np.array([point[0] * cs - point[1] * sn, point[0] * sn + point[1] * cs])


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    direction = a - b
    return b + np.array([-direction[1], direction[0]])


def mmpose_affine_transform(center: Any, size: Any, rotation: float, output_size: tuple[int, int]) -> np.ndarray:
    """0.x ``get_affine_transform``: box centre -> output centre, a point half a box width above
    the centre (rotated) -> half an output width above the output centre, plus a third point."""
    center = np.asarray(center, np.float64)
    dst_w, dst_h = output_size
    src_dir = _rotate(np.array([0.0, float(size[0]) * -0.5]), math.pi * rotation / 180)
    dst_dir = np.array([0.0, dst_w * -0.5])
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0], src[1] = center, center + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + dst_dir
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(src, dst)


def mmpose_warp_matrix(theta: float, size_input: Any, size_dst: Any, size_target: Any) -> np.ndarray:
    """0.x ``get_warp_matrix`` (UDP); TopDownAffine calls it with (r, 2c, image_size - 1, box size)."""
    theta = math.radians(theta)
    scale_x, scale_y = size_dst[0] / size_target[0], size_dst[1] / size_target[1]
    cos, sin = math.cos(theta), math.sin(theta)
    return np.array([
        [cos * scale_x, -sin * scale_x,
         scale_x * (-0.5 * size_input[0] * cos + 0.5 * size_input[1] * sin + 0.5 * size_target[0])],
        [sin * scale_y, cos * scale_y,
         scale_y * (-0.5 * size_input[0] * sin - 0.5 * size_input[1] * cos + 0.5 * size_target[1])],
    ])


def mmpose_box_center_size(bbox: np.ndarray, input_size: tuple[int, int] = INPUT) -> tuple[np.ndarray, np.ndarray]:
    """0.x ``_xywh2cs`` of a cleaned box (x1, y1, x2, y2), padding 1.25, aspect fixed to the input."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    w, h = x2 - x1, y2 - y1
    aspect = input_size[0] / input_size[1]
    center = np.array([x1 + w * 0.5, y1 + h * 0.5])
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    return center, np.array([w, h]) * 1.25


def _warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int] = INPUT) -> np.ndarray:
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR)


def _coco_dataset() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_host().registries.datasets.build({"type": "coco", "ann_file": str(COCO_JSON)})


def _codec(kind: str = "msra_heatmap") -> Any:
    spec = {"type": kind, "input_size": INPUT, "heatmap_size": HEATMAP, "sigma": 2.0}
    return get_host().registries.codecs.build(spec)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# geometry


WARP_CASES = [
    ((100.0, 200.0), (150.0, 200.0), 0.0, (192, 256)),
    ((320.5, 211.25), (300.0, 400.0), 30.0, (192, 256)),
    ((50.0, 60.0), (80.0, 80.0), -45.0, (256, 256)),
    ((10.0, 20.0), (40.0, 30.0), 90.0, (48, 64)),
    ((640.0, 10.0), (333.3, 120.0), 171.5, (288, 384)),
    ((0.0, 0.0), (1000.0, 1000.0), -90.0, (256, 192)),
]


@pytest.mark.parametrize(("center", "size", "rotation", "output_size"), WARP_CASES)
def test_standard_warp_matrix_is_mmpose_get_affine_transform(center, size, rotation, output_size) -> None:
    got = standard_warp_matrix(np.array(center, np.float32), np.array(size, np.float32), rotation, output_size)
    expected = mmpose_affine_transform(center, size, rotation, output_size)
    assert got.shape == (2, 3)
    # The reference goes through float32 points; compare where it lands in the crop.
    np.testing.assert_allclose(got[:, :2], expected[:, :2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, 2], expected[:, 2], rtol=0, atol=1e-3)


@pytest.mark.parametrize(("center", "size", "rotation", "output_size"), WARP_CASES)
def test_udp_warp_matrix_is_mmpose_get_warp_matrix(center, size, rotation, output_size) -> None:
    got = udp_warp_matrix(np.array(center, np.float32), np.array(size, np.float32), rotation, output_size)
    expected = mmpose_warp_matrix(rotation, np.array(center) * 2.0, np.array(output_size) - 1.0, np.array(size))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # UDP's defining property: the box spans output_size - 1 pixels, so the box centre lands on
    # the exact centre pixel (W - 1) / 2 and the corners on 0 and W - 1 when unrotated.
    np.testing.assert_allclose(apply_affine(np.array(center), got), (np.array(output_size) - 1) / 2, atol=1e-3)


def test_udp_corners_land_on_the_first_and_last_pixel() -> None:
    center, size = np.array([120.0, 80.0]), np.array([90.0, 120.0])
    matrix = udp_warp_matrix(center, size, 0.0, (192, 256))
    corners = apply_affine(np.stack([center - size / 2, center + size / 2]), matrix)
    np.testing.assert_allclose(corners, [[0, 0], [191, 255]], atol=1e-3)


def test_affine_helpers_round_trip() -> None:
    rng = _rng(1)
    points = rng.uniform(-500, 500, (50, 2))
    for _ in range(20):
        a = np.hstack([rng.normal(size=(2, 2)) + np.eye(2) * 2, rng.uniform(-100, 100, (2, 1))])
        b = np.hstack([rng.normal(size=(2, 2)) + np.eye(2) * 2, rng.uniform(-100, 100, (2, 1))])
        # apply_affine is p' = A p + t
        np.testing.assert_allclose(apply_affine(points, a), points @ a[:, :2].T + a[:, 2], rtol=1e-5, atol=1e-3)
        inverse = invert_affine(a)
        np.testing.assert_allclose(apply_affine(apply_affine(points, a), inverse), points, rtol=0, atol=1e-2)
        np.testing.assert_allclose(compose_affine(a, inverse), np.hstack([np.eye(2), np.zeros((2, 1))]), atol=1e-9)
        np.testing.assert_allclose(compose_affine(inverse, a), np.hstack([np.eye(2), np.zeros((2, 1))]), atol=1e-9)
        # compose(outer, inner) is outer after inner, as 3x3 products say
        homogeneous = (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]
        np.testing.assert_allclose(compose_affine(a, b), homogeneous, atol=1e-9)
        np.testing.assert_allclose(apply_affine(points, compose_affine(a, b)),
                                   apply_affine(apply_affine(points, b), a), rtol=1e-5, atol=1e-2)
    flip = horizontal_flip_matrix(639.0)
    np.testing.assert_allclose(apply_affine(np.array([[0.0, 5.0], [639.0, 7.0], [100.5, 1.0]]), flip),
                               [[639, 5], [0, 7], [538.5, 1]])
    np.testing.assert_allclose(compose_affine(flip, flip), np.hstack([np.eye(2), np.zeros((2, 1))]))


# ---------------------------------------------------------------------------------------------
# RandomFlip: the flip folded into the warp equals flipping the image first


def _explicit_flip_crop(image: np.ndarray, sample: dict[str, Any], flip: list[int], rotation: float,
                        use_udp: bool) -> tuple[np.ndarray, np.ndarray]:
    """mmpose 0.x order: flip the image, the keypoints (pairs swapped) and the centre, then warp."""
    width = image.shape[1]
    flipped = np.ascontiguousarray(image[:, ::-1])
    keypoints = sample["keypoints"][flip].astype(np.float64)
    keypoints[:, 0] = width - 1 - keypoints[:, 0]
    center = np.array([width - 1 - sample["center"][0], sample["center"][1]], np.float64)
    _, size = mmpose_box_center_size(sample["bbox"])
    if use_udp:
        matrix = mmpose_warp_matrix(rotation, center * 2.0, np.array(INPUT) - 1.0, size)
    else:
        matrix = mmpose_affine_transform(center, size, rotation, INPUT)
    return _warp(flipped, matrix), apply_affine(keypoints, matrix)


@needs_data
@pytest.mark.parametrize("use_udp", [False, True], ids=["standard", "udp"])
@pytest.mark.parametrize("rotation", [0.0, 23.0])
def test_flip_folded_into_the_warp_matches_an_explicit_flip_on_coco(use_udp: bool, rotation: float) -> None:
    dataset = _coco_dataset()
    flip = list(load_metainfo("coco").flip_indices)
    for index in (0, 1, 4, 11):  # images 785, 40083, 196141, 197388
        sample = GetBBoxCenterScale()(dataset[index], _rng())
        sample["rotation"] = rotation
        image = sample["image"]
        original = {key: sample[key].copy() for key in ("keypoints", "visibility", "center")}
        out = TopdownAffine(INPUT, use_udp=use_udp)(RandomFlip(prob=1.0)(sample, _rng()), _rng())
        expected_image, expected_keypoints = _explicit_flip_crop(image, {**sample, **original}, flip, rotation, use_udp)
        difference = np.abs(out["image"].astype(int) - expected_image.astype(int))
        assert difference.max() <= 1, f"sample {index}: crops differ by up to {difference.max()} grey levels"
        assert out["image"].shape == (INPUT[1], INPUT[0], 3)
        np.testing.assert_allclose(out["keypoints"], expected_keypoints, rtol=0, atol=2e-3)
        np.testing.assert_array_equal(out["visibility"], original["visibility"][flip])


def _names_partner(facts: dict[str, Any]) -> list[int]:
    """Each keypoint's mirror partner from the names in shared/data/metainfo (not flip_indices)."""
    names = facts["keypoint_names"]
    return [names.index(swap or name) for name, swap in zip(names, facts["keypoint_swap"], strict=True)]


@needs_data
@pytest.mark.parametrize("keypoint_set", ["coco", "coco_wholebody", "interhand3d"])
def test_flip_swaps_left_and_right_for_any_keypoint_set(keypoint_set: str) -> None:
    meta = load_metainfo(keypoint_set)
    facts = json.loads((SHARED / "metainfo" / f"{keypoint_set}.json").read_text(encoding="utf-8"))
    k = meta.num_keypoints
    assert k == {"coco": 17, "coco_wholebody": 133, "interhand3d": 42}[keypoint_set]
    partner = _names_partner(facts)
    assert list(meta.flip_indices) == partner
    names = meta.keypoint_names
    left = [i for i, name in enumerate(names) if "left" in name]
    assert left and all("right" in names[partner[i]] for i in left)

    rng = _rng(k)
    height, width = 120, 160
    image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (5, 5), 0)
    keypoints = np.column_stack([rng.uniform(20, 140, k), rng.uniform(15, 105, k)]).astype(np.float32)
    visibility = (rng.random(k) > 0.3).astype(np.float32)
    sample = {"image": image, "image_size": (width, height), "keypoints": keypoints, "visibility": visibility,
              "bbox": np.array([30, 20, 110, 100], np.float32), "meta": meta}
    sample = GetBBoxCenterScale()(sample, _rng())
    sample["rotation"] = -12.0
    before = {key: sample[key].copy() for key in ("keypoints", "visibility", "center", "bbox")}
    flipped = RandomFlip(prob=1.0)(dict(sample), _rng())
    for i in range(k):
        j = partner[i]
        assert flipped["keypoints"][i, 0] == pytest.approx(width - 1 - before["keypoints"][j, 0], abs=1e-4)
        assert flipped["keypoints"][i, 1] == pytest.approx(before["keypoints"][j, 1], abs=1e-6)
        assert flipped["visibility"][i] == before["visibility"][j]
    np.testing.assert_allclose(flipped["center"], [width - 1 - before["center"][0], before["center"][1]], atol=1e-4)
    out = TopdownAffine(INPUT)(flipped, _rng())
    expected_image, expected_keypoints = _explicit_flip_crop(image, {**sample, **before}, partner, -12.0, False)
    assert np.abs(out["image"].astype(int) - expected_image.astype(int)).max() <= 1
    np.testing.assert_allclose(out["keypoints"], expected_keypoints, rtol=0, atol=2e-3)


def test_flip_about_the_box_centre_gives_the_same_crop_without_the_image_width() -> None:
    rng = _rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8), (3, 3), 0)
    meta = load_metainfo("coco")
    base = {"image": image, "keypoints": rng.uniform(10, 80, (17, 2)).astype(np.float32),
            "visibility": np.ones(17, np.float32), "bbox": np.array([20, 10, 90, 80], np.float32), "meta": meta}
    with_width = TopdownAffine(INPUT)(RandomFlip(1.0)(GetBBoxCenterScale()({**base, "image_size": (130, 90)}, rng),
                                                      rng), rng)
    without = TopdownAffine(INPUT)(RandomFlip(1.0)(GetBBoxCenterScale()(dict(base), rng), rng), rng)
    assert np.abs(with_width["image"].astype(int) - without["image"].astype(int)).max() <= 1
    np.testing.assert_allclose(with_width["keypoints"], without["keypoints"], atol=1e-3)


def test_flip_probability() -> None:
    meta = load_metainfo("coco")
    rng = _rng(11)
    flips = 0
    for _ in range(2000):
        sample = {"keypoints": np.zeros((17, 2), np.float32), "visibility": np.ones(17, np.float32),
                  "center": np.array([5.0, 5.0], np.float32), "flip_axis": None, "meta": meta}
        flips += RandomFlip(prob=0.5)(sample, rng)["flip_axis"] is not None
    assert 900 < flips < 1100
    never = RandomFlip(prob=0.0)({"center": np.zeros(2), "flip_axis": None, "meta": meta}, rng)
    assert never["flip_axis"] is None


# ---------------------------------------------------------------------------------------------
# RandomHalfBody


def _full_body_sample(meta: DatasetMeta | None = None, visible: int | None = None) -> dict[str, Any]:
    meta = meta or load_metainfo("coco")
    k = meta.num_keypoints
    rng = _rng(5)
    keypoints = np.column_stack([rng.uniform(100, 220, k), np.linspace(50, 450, k)]).astype(np.float32)
    visibility = np.ones(k, np.float32)
    if visible is not None:
        visibility[visible:] = 0
    return {"keypoints": keypoints, "visibility": visibility, "center": np.array([160.0, 250.0], np.float32),
            "scale": np.array([200.0, 500.0], np.float32), "meta": meta}


def test_half_body_probability_and_upper_lower_choice() -> None:
    meta = load_metainfo("coco")
    upper = np.array(meta.upper_body_ids)
    lower = np.array(meta.lower_body_ids)
    transform = RandomHalfBody(prob=0.3, input_size=INPUT)
    rng = _rng(2024)
    applied = chose_upper = 0
    trials = 3000
    for _ in range(trials):
        sample = _full_body_sample(meta)
        out = transform({**sample, "center": sample["center"].copy()}, rng)
        if np.array_equal(out["center"], sample["center"]):
            continue
        applied += 1
        if np.allclose(out["center"], sample["keypoints"][upper].mean(axis=0), atol=1e-3):
            chose_upper += 1
        else:
            np.testing.assert_allclose(out["center"], sample["keypoints"][lower].mean(axis=0), atol=1e-3)
    assert abs(applied / trials - 0.3) < 0.03
    # Upper when a standard normal draw is below 0.5: P = Phi(0.5) = 0.691.
    assert abs(chose_upper / applied - 0.6915) < 0.05


@pytest.mark.parametrize("input_size", [INPUT, (256, 256), (288, 384)])
def test_half_body_box_covers_the_selected_keypoints(input_size: tuple[int, int]) -> None:
    meta = load_metainfo("coco")
    rng = _rng(9)
    seen = set()
    for _ in range(60):
        sample = _full_body_sample(meta)
        out = RandomHalfBody(prob=1.0, padding=1.5, input_size=input_size)(dict(sample), rng)
        for part, ids in (("upper", meta.upper_body_ids), ("lower", meta.lower_body_ids)):
            points = sample["keypoints"][list(ids)]
            if np.allclose(out["center"], points.mean(axis=0), atol=1e-3):
                seen.add(part)
                break
        else:
            pytest.fail(f"half-body centre {out['center']} is neither the upper nor the lower body's mean")
        extent = points.max(axis=0) - points.min(axis=0)
        width, height = out["scale"]
        assert width / height == pytest.approx(input_size[0] / input_size[1], rel=1e-5)
        unpadded = out["scale"] / 1.5
        assert (unpadded >= extent - 1e-3).all() and np.isclose(unpadded, extent, rtol=1e-5).any()
        low, high = out["center"] - out["scale"] / 2, out["center"] + out["scale"] / 2
        assert (points >= low).all() and (points <= high).all()
    assert seen == {"upper", "lower"}


def test_half_body_leaves_the_sample_alone() -> None:
    rng = _rng(0)
    transform = RandomHalfBody(prob=1.0, min_visible=8)
    # Exactly 8 visible keypoints: mmpose needs more than num_joints_half_body (8).
    sample = _full_body_sample(visible=8)
    out = transform({**sample, "center": sample["center"].copy(), "scale": sample["scale"].copy()}, rng)
    np.testing.assert_array_equal(out["center"], sample["center"])
    np.testing.assert_array_equal(out["scale"], sample["scale"])
    # A keypoint set without upper/lower body ids.
    hand = load_metainfo("interhand3d")
    sample = _full_body_sample(hand)
    out = transform({**sample, "center": sample["center"].copy()}, rng)
    np.testing.assert_array_equal(out["center"], sample["center"])
    # prob 0 never changes anything.
    sample = _full_body_sample()
    out = RandomHalfBody(prob=0.0)({**sample, "center": sample["center"].copy()}, rng)
    np.testing.assert_array_equal(out["center"], sample["center"])
    # 9 visible (enough), and with 9 visible it does crop.
    sample = _full_body_sample(visible=9)
    out = transform({**sample, "center": sample["center"].copy()}, rng)
    assert not np.array_equal(out["center"], sample["center"])


# ---------------------------------------------------------------------------------------------
# RandomBBoxTransform


def test_bbox_transform_distribution_bounds() -> None:
    sf, rf = 0.35, 45.0
    transform = RandomBBoxTransform(scale_factor=sf, rotate_factor=rf, rotate_prob=0.6)
    rng = _rng(77)
    zooms, rotations = [], []
    for _ in range(4000):
        sample = {"center": np.array([100.0, 100.0], np.float32), "scale": np.array([100.0, 200.0], np.float32),
                  "rotation": 0.0}
        out = transform(sample, rng)
        zooms.append(out["scale"][0] / 100.0)
        assert out["scale"][1] / 200.0 == pytest.approx(zooms[-1], rel=1e-5)  # one zoom for both sides
        np.testing.assert_array_equal(out["center"], [100.0, 100.0])  # no shift by default
        rotations.append(out["rotation"])
    zooms, rotations = np.array(zooms), np.array(rotations)
    assert zooms.min() >= 1 - sf - 1e-6 and zooms.max() <= 1 + sf + 1e-6
    # N(1, sf) clipped at one sigma: about 16% of draws sit on each bound.
    assert 0.12 < np.isclose(zooms, 1 + sf, atol=1e-6).mean() < 0.20
    assert 0.12 < np.isclose(zooms, 1 - sf, atol=1e-6).mean() < 0.20
    assert np.abs(rotations).max() <= 2 * rf
    assert 0.37 < (rotations == 0).mean() < 0.43
    nonzero = rotations[rotations != 0]
    # N(0, rf) clipped at two sigma: about 4.6% of the rotated draws sit on a bound.
    assert 0.025 < np.isclose(np.abs(nonzero), 2 * rf).mean() < 0.07
    assert abs(np.mean(nonzero > 0) - 0.5) < 0.05


def test_bbox_transform_shift_and_accumulated_rotation() -> None:
    transform = RandomBBoxTransform(scale_factor=0.0, rotate_factor=10.0, rotate_prob=1.0, shift_factor=0.16,
                                    shift_prob=1.0)
    rng = _rng(8)
    offsets = []
    for _ in range(500):
        sample = {"center": np.array([50.0, 60.0], np.float32), "scale": np.array([100.0, 200.0], np.float32),
                  "rotation": 5.0}
        out = transform(sample, rng)
        offsets.append((out["center"] - [50.0, 60.0]) / [100.0, 200.0])
        assert -15.0 <= out["rotation"] <= 25.0 and out["rotation"] != 5.0
    offsets = np.array(offsets)
    assert np.abs(offsets).max() <= 0.16 + 1e-6
    assert (np.abs(offsets).max(axis=0) > 0.14).all()


# ---------------------------------------------------------------------------------------------
# TopdownAffine


@pytest.mark.parametrize("use_udp", [False, True], ids=["standard", "udp"])
@pytest.mark.parametrize("flip", [False, True], ids=["plain", "flipped"])
def test_keypoints_map_with_the_same_matrix_as_the_image(use_udp: bool, flip: bool) -> None:
    height, width = 300, 400
    # Five dots far apart; the dot of keypoint i is drawn at keypoint i.
    keypoints = np.array([[150.0, 80.0], [250.0, 80.0], [200.0, 150.0], [160.0, 220.0], [245.0, 225.0]], np.float32)
    image = np.zeros((height, width, 3), np.uint8)
    for x, y in keypoints:
        cv2.circle(image, (int(x), int(y)), 3, (255, 255, 255), -1)
    meta = DatasetMeta(name="dots", keypoint_names=("a", "left_b", "right_b", "left_c", "right_c"),
                       flip_indices=(0, 2, 1, 4, 3))
    sample = {"image": image, "image_size": (width, height), "keypoints": keypoints,
              "visibility": np.ones(5, np.float32), "bbox": np.array([120, 50, 280, 260], np.float32), "meta": meta}
    sample = GetBBoxCenterScale()(sample, _rng())
    sample["rotation"] = 20.0
    if flip:
        sample = RandomFlip(prob=1.0)(sample, _rng())
    out = TopdownAffine(INPUT, use_udp=use_udp)(sample, _rng())
    crop = out["image"][:, :, 0].astype(np.float64)
    ys, xs = np.mgrid[0:INPUT[1], 0:INPUT[0]]
    for i, (x, y) in enumerate(out["keypoints"]):
        near = (np.hypot(xs - x, ys - y) < 7) * crop
        assert near.sum() > 0, f"no dot near keypoint {i} at ({x:.1f}, {y:.1f})"
        centroid = np.array([(near * xs).sum(), (near * ys).sum()]) / near.sum()
        assert np.hypot(*(centroid - (x, y))) < 0.75, (i, centroid, (x, y))
    # And the matrix it reports is the one applied to the image's keypoints.
    # The reported warp takes the original image's keypoints (partners swapped if flipped) there too.
    source = keypoints[list(meta.flip_indices)] if flip else keypoints
    np.testing.assert_allclose(apply_affine(source, out["warp"].astype(np.float64)), out["keypoints"], atol=1e-2)


@pytest.mark.parametrize("use_udp", [False, True], ids=["standard", "udp"])
@pytest.mark.parametrize("box", [(40, 50, 100, 300), (10, 10, 400, 60), (0, 0, 150, 200)])
def test_crop_has_the_input_aspect_ratio(use_udp: bool, box: tuple[int, int, int, int]) -> None:
    sample = {"image": np.zeros((500, 500, 3), np.uint8), "keypoints": np.zeros((1, 2), np.float32),
              "bbox": np.array(box, np.float32)}
    sample = GetBBoxCenterScale()(sample, _rng())
    padded = sample["scale"].copy()
    out = TopdownAffine(INPUT, use_udp=use_udp)(sample, _rng())
    assert out["scale"][0] / out["scale"][1] == pytest.approx(INPUT[0] / INPUT[1], rel=1e-6)
    assert (out["scale"] >= padded - 1e-4).all() and np.isclose(out["scale"], padded).any()  # grown on one side
    corners = apply_affine(np.stack([out["center"] - out["scale"] / 2, out["center"] + out["scale"] / 2]), out["warp"])
    last = np.array(INPUT) - (1 if use_udp else 0)
    np.testing.assert_allclose(corners, [[0, 0], last], atol=2e-3)


# ---------------------------------------------------------------------------------------------
# full pipelines on the real COCO sample


def _train_pipeline(use_udp: bool = False) -> Any:
    codec = _codec("udp_heatmap" if use_udp else "msra_heatmap")
    return build_pipeline(standard_topdown_pipeline(True), get_host().registries, codec=codec, input_size=INPUT,
                          use_udp=use_udp)


def _test_pipeline_with_targets(use_udp: bool) -> Any:
    specs = standard_topdown_pipeline(False)
    names = [spec.type for spec in specs]
    assert names == ["get_bbox_center_scale", "topdown_affine", "pack_sample"]  # no augmentation, no target
    specs.insert(2, "generate_target")
    codec = _codec("udp_heatmap" if use_udp else "msra_heatmap")
    return build_pipeline(specs, get_host().registries, codec=codec, input_size=INPUT, use_udp=use_udp)


@needs_data
def test_train_pipeline_shapes() -> None:
    pipeline = PipelineDataset(_coco_dataset(), _train_pipeline(), seed=1)
    for index in range(len(pipeline)):
        sample = pipeline[index]
        assert isinstance(sample["image"], torch.Tensor)
        assert sample["image"].shape == (3, 256, 192) and sample["image"].dtype == torch.uint8
        assert sample["heatmaps"].shape == (17, 64, 48) and sample["heatmaps"].dtype == np.float32
        assert sample["keypoint_weights"].shape == (17,)
        assert sample["keypoints"].shape == (17, 2) and sample["visibility"].shape == (17,)
        assert 0 <= sample["heatmaps"].min() and sample["heatmaps"].max() <= 1.0


@needs_data
def test_train_samples_collate() -> None:
    # Batches mixing flipped and unflipped samples must collate, whichever comes first.
    pipeline = PipelineDataset(_coco_dataset(), _train_pipeline(), seed=1)
    samples = [pipeline[index] for index in range(len(pipeline))]
    samples.sort(key=lambda s: not s["flipped"])  # flipped first, as a shuffled loader will do
    assert samples[0]["flipped"] and not samples[-1]["flipped"]
    batch = collate_samples(samples)
    assert batch["image"].shape == (12, 3, 256, 192) and batch["image"].dtype == torch.uint8
    assert batch["heatmaps"].shape == (12, 17, 64, 48)
    assert batch["keypoint_weights"].shape == (12, 17)


@needs_data
@pytest.mark.parametrize("use_udp", [False, True], ids=["msra", "udp"])
def test_test_pipeline_crop_and_heatmap_peaks(use_udp: bool) -> None:
    dataset = _coco_dataset()
    pipeline = PipelineDataset(dataset, _test_pipeline_with_targets(use_udp))
    stride = ((np.array(INPUT) - 1) / (np.array(HEATMAP) - 1)) if use_udp else np.array(INPUT) / np.array(HEATMAP)
    checked = 0
    images: dict[str, np.ndarray] = {}
    for index in range(len(dataset)):
        raw = dataset.annotation(index)
        sample = pipeline[index]
        assert sample["image"].shape == (3, 256, 192) and sample["image"].dtype == torch.uint8
        assert sample["heatmaps"].shape == (17, 64, 48) and sample["keypoint_weights"].shape == (17,)
        center, size = mmpose_box_center_size(raw["bbox"])
        if use_udp:
            matrix = mmpose_warp_matrix(0.0, center * 2.0, np.array(INPUT) - 1.0, size)
        else:
            matrix = mmpose_affine_transform(center, size, 0.0, INPUT)
        path = raw["image_path"]
        if path not in images:
            images[path] = cv2.imread(path, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
        expected_crop = _warp(images[path], matrix)
        difference = np.abs(sample["image"].permute(1, 2, 0).numpy().astype(int) - expected_crop.astype(int))
        assert difference.max() <= 1, f"sample {index}"
        warped = raw["keypoints"] @ matrix[:, :2].T + matrix[:, 2]
        inside = (raw["visibility"] > 0) & (warped >= 0).all(axis=1) & (warped < np.array(INPUT)).all(axis=1)
        heatmaps = sample["heatmaps"]
        for k in np.flatnonzero(inside):
            peak_y, peak_x = np.unravel_index(np.argmax(heatmaps[k]), heatmaps[k].shape)
            expected = warped[k] / stride
            assert abs(peak_x - expected[0]) <= 1 and abs(peak_y - expected[1]) <= 1, (index, k, (peak_x, peak_y))
            assert sample["keypoint_weights"][k] > 0
            checked += 1
    assert checked > 150


@needs_data
def test_pipeline_dataset_is_deterministic_per_seed_epoch_index() -> None:
    dataset = _coco_dataset()
    order = list(range(len(dataset)))

    def run(indices: list[int], epoch: int = 0, seed: int = 7) -> dict[int, dict[str, Any]]:
        pipeline = PipelineDataset(dataset, _train_pipeline(), seed=seed)
        pipeline.set_epoch(epoch)
        return {index: pipeline[index] for index in indices}

    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return (torch.equal(a["image"], b["image"]) and np.array_equal(a["heatmaps"], b["heatmaps"])
                and np.array_equal(a["keypoints"], b["keypoints"]) and a["rotation"] == b["rotation"])

    forward = run(order)
    backward = run(order[::-1])
    shuffled = run(list(_rng(3).permutation(order)))
    repeated = run([5, 5, 2, 5])
    for index in order:
        assert same(forward[index], backward[index]) and same(forward[index], shuffled[index]), index
    assert same(repeated[5], forward[5]) and same(repeated[2], forward[2])
    next_epoch = run(order, epoch=1)
    other_seed = run(order, seed=8)
    assert sum(not same(forward[i], next_epoch[i]) for i in order) >= len(order) - 1
    assert sum(not same(forward[i], other_seed[i]) for i in order) >= len(order) - 1


# ---------------------------------------------------------------------------------------------
# reading images


def _real_jpegs() -> list[Path]:
    return [p for folder in ("coco", "mpii", "crowdpose") for p in sorted((SHARED / folder).glob("*.jpg"))]


@needs_data
def test_simplejpeg_path_gives_the_pixels_of_opencv() -> None:
    paths = _real_jpegs()
    assert len(paths) == 11
    for path in paths:
        data = path.read_bytes()
        expected = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
        via_simplejpeg = simplejpeg.decode_jpeg(data, "RGB")  # the fast path read_image takes
        np.testing.assert_array_equal(via_simplejpeg, expected, err_msg=path.name)
        image = read_image(path, image_id=1)
        assert image.dtype == np.uint8 and image.shape == expected.shape and image.flags.c_contiguous
        np.testing.assert_array_equal(image, expected, err_msg=path.name)
        np.testing.assert_array_equal(decode_image(data, source=str(path)), expected, err_msg=path.name)


def test_png_and_grayscale_images(tmp_path: Path) -> None:
    rng = _rng(4)
    color = cv2.GaussianBlur(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), (3, 3), 0)
    grey = color[:, :, 1].copy()
    cv2.imwrite(str(tmp_path / "color.png"), color)  # written as BGR
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    cv2.imwrite(str(tmp_path / "grey.jpg"), grey)
    rgba = np.dstack([color, np.full(color.shape[:2], 128, np.uint8)])
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "color.png"), color[:, :, ::-1])
    np.testing.assert_array_equal(read_image(tmp_path / "alpha.png"), color[:, :, ::-1])
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.dstack([grey] * 3))
    grey_jpeg = read_image(tmp_path / "grey.jpg")
    assert grey_jpeg.shape == (37, 53, 3) and grey_jpeg.dtype == np.uint8
    reference = cv2.imread(str(tmp_path / "grey.jpg"), cv2.IMREAD_GRAYSCALE)
    for channel in range(3):
        np.testing.assert_array_equal(grey_jpeg[:, :, channel], reference)


@needs_data
@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated-jpeg", "text"])
def test_corrupt_or_empty_file_names_path_and_image_id(tmp_path: Path, kind: str) -> None:
    real = (SHARED / "coco" / "000000000785.jpg").read_bytes()
    content = {"empty": b"", "garbage": b"\xff\xd8" + bytes(range(256)) * 4, "truncated-jpeg": real[: len(real) // 3],
               "text": b"not an image at all\n"}[kind]
    path = tmp_path / "000000000785.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_image(path, image_id=785)
    message = str(info.value)
    assert str(path) in message and "image id 785" in message.replace(str(path), "<path>")
    with pytest.raises(DataError) as info:
        decode_image(content, source="in-memory.jpg", image_id=12)
    assert "in-memory.jpg" in str(info.value) and "image id 12" in str(info.value)


def test_missing_file_names_path_and_image_id(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        read_image(tmp_path / "nowhere.jpg", image_id=42)
    assert str(tmp_path / "nowhere.jpg") in str(info.value) and "image id 42" in str(info.value)
