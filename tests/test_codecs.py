"""Codecs against straightforward per-keypoint references of the mmpose 0.x formulas, on real sample keypoints.

The references below are deliberately naive (one Python loop per keypoint, cv2 for the blurs,
numpy's 2x2 inverse) so that they can be read against the mmpose 0.x source line by line; the
codecs under test are vectorised and batched on tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from posecore.codecs import (
    Codec,
    KeypointRegression,
    MSRAHeatmap,
    UDPHeatmap,
    average_flipped,
    flip_heatmaps,
    flip_keypoints,
    gaussian_blur,
    heatmap_argmax,
)
from posecore.codecs._catalog import CODECS
from posecore.codecs._refine import opencv_gaussian_kernel

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
METAINFO = SHARED / "metainfo"

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared sample data not found at {SHARED}")

SIZES = [((192, 256), (48, 64)), ((256, 256), (64, 64))]


# ---------------------------------------------------------------------------------------------
# real keypoints, mapped into the crop with a plain box-to-crop scale


def _coco_style(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    instances = []
    for annotation in json.loads(path.read_text())["annotations"]:
        values = np.asarray(annotation["keypoints"], np.float64).reshape(-1, 3)
        instances.append((values[:, :2], np.minimum(values[:, 2], 1.0), np.asarray(annotation["bbox"], np.float64)))
    return instances


def _mpii() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    instances = []
    for person in json.loads((SHARED / "mpii" / "test_mpii.json").read_text()):
        side = person["scale"] * 200.0
        box = np.array([person["center"][0] - side / 2, person["center"][1] - side / 2, side, side])
        instances.append((np.asarray(person["joints"], np.float64), np.asarray(person["joints_vis"], np.float64), box))
    return instances


DATASETS = {
    "coco": lambda: _coco_style(SHARED / "coco" / "test_coco.json"),
    "mpii": _mpii,
    "crowdpose": lambda: _coco_style(SHARED / "crowdpose" / "test_crowdpose.json"),
}


def crop_keypoints(dataset: str, input_size: tuple[int, int], box_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 2) keypoints in input-crop pixels and (N, K) visibility; ``box_factor < 1`` shrinks the
    box about its centre so that more keypoints land near and beyond the crop borders."""
    points, visibility = [], []
    for keypoints, visible, (x, y, w, h) in DATASETS[dataset]():
        centre = np.array([x + w / 2, y + h / 2])
        size = np.array([w, h]) * box_factor
        points.append((keypoints - (centre - size / 2)) / size * np.asarray(input_size))
        visibility.append(visible)
    return np.stack(points), np.stack(visibility)


def edge_keypoints(input_size: tuple[int, int], heatmap_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Hand-made keypoints on, near and past every border, including the window that ends exactly at
    pixel 0, fractional visibilities and one invisible point inside the map."""
    width, height = input_size
    stride_x = width / heatmap_size[0]
    xs = [
        -200.0,
        -31.0,
        -7.5 * stride_x,
        -2.0,
        -0.4,
        0.0,
        0.3,
        3.9,
        width / 2 + 0.37,
        width - 1.2,
        width - 0.5,
        width,
        width + 9.0,
        width + 60.0,
    ]
    points = np.array([[x, y] for x in xs for y in (-30.0, 0.0, 2.2, height / 3 + 0.61, height - 1.0, height + 25.0)])
    visibility = np.ones(len(points))
    visibility[::7] = 0.0
    visibility[3::11] = 0.3
    visibility[5::13] = 0.7
    return points, visibility


# ---------------------------------------------------------------------------------------------
# references: one loop per keypoint, mmpose 0.x formulas


def reference_targets(keypoints, visibility, input_size, heatmap_size, sigma, udp):
    width, height = heatmap_size
    if udp:
        stride = (np.asarray(input_size, float) - 1.0) / (np.asarray(heatmap_size, float) - 1.0)
    else:
        stride = np.asarray(input_size, float) / np.asarray(heatmap_size, float)
    radius = sigma * 3
    patch_size = 2 * radius + 1
    grid = np.arange(0, patch_size, 1, np.float32)
    maps = np.zeros((len(keypoints), height, width), np.float32)
    weights = np.zeros(len(keypoints), np.float32)
    for k, (point, visible) in enumerate(zip(keypoints, visibility, strict=True)):
        weights[k] = visible
        cx, cy = point[0] / stride[0], point[1] / stride[1]
        mx, my = int(cx + 0.5), int(cy + 0.5)
        left, top = int(mx - radius), int(my - radius)
        right, bottom = int(mx + radius + 1), int(my + radius + 1)
        if left >= width or top >= height or right < 0 or bottom < 0:
            weights[k] = 0
        if weights[k] <= 0.5:
            continue
        gx = patch_size // 2 + (cx - mx if udp else 0.0)
        gy = patch_size // 2 + (cy - my if udp else 0.0)
        patch = np.exp(-((grid - gx) ** 2 + (grid[:, None] - gy) ** 2) / (2 * sigma**2))
        x0, x1, y0, y1 = max(0, left), min(right, width), max(0, top), min(bottom, height)
        maps[k, y0:y1, x0:x1] = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    return maps, weights


def _argmax(heatmap):
    y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return float(x), float(y), float(heatmap.max())


def reference_standard(heatmaps):
    n, k, h, w = heatmaps.shape
    coords, scores = np.zeros((n, k, 2)), np.zeros((n, k))
    for i in range(n):
        for j in range(k):
            m = heatmaps[i, j]
            x, y, scores[i, j] = _argmax(m)
            if scores[i, j] <= 0:
                coords[i, j] = -1
                continue
            px, py = int(x), int(y)
            if 1 < px < w - 1 and 1 < py < h - 1:
                x += 0.25 * np.sign(m[py, px + 1] - m[py, px - 1])
                y += 0.25 * np.sign(m[py + 1, px] - m[py - 1, px])
            coords[i, j] = x, y
    return coords, scores


def reference_dark(heatmaps, kernel):
    n, k, h, w = heatmaps.shape
    border = (kernel - 1) // 2
    coords = np.zeros((n, k, 2))
    for i in range(n):
        for j in range(k):
            m = heatmaps[i, j]
            x, y, peak = _argmax(m)
            if peak <= 0:
                coords[i, j] = -1
                continue
            padded = np.zeros((h + 2 * border, w + 2 * border), np.float32)
            padded[border:-border, border:-border] = m
            blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
            blurred = blurred * (peak / blurred.max())
            L = np.log(np.maximum(blurred, 1e-10)).astype(np.float64)
            px, py = int(x), int(y)
            if 1 < px < w - 2 and 1 < py < h - 2:
                g = np.array([0.5 * (L[py, px + 1] - L[py, px - 1]), 0.5 * (L[py + 1, px] - L[py - 1, px])])
                dxx = 0.25 * (L[py, px + 2] - 2 * L[py, px] + L[py, px - 2])
                dyy = 0.25 * (L[py + 2, px] - 2 * L[py, px] + L[py - 2, px])
                dxy = 0.25 * (L[py + 1, px + 1] - L[py - 1, px + 1] - L[py + 1, px - 1] + L[py - 1, px - 1])
                hessian = np.array([[dxx, dxy], [dxy, dyy]])
                if dxx * dyy - dxy**2 != 0:
                    x, y = np.array([x, y]) - np.linalg.inv(hessian) @ g
            coords[i, j] = x, y
    return coords


def reference_dark_udp(heatmaps, kernel):
    n, k, h, w = heatmaps.shape
    eps = np.finfo(np.float32).eps
    coords = np.zeros((n, k, 2))
    for i in range(n):
        for j in range(k):
            m = heatmaps[i, j]
            x, y, peak = _argmax(m)
            if peak <= 0:
                coords[i, j] = -1
                continue
            L = np.log(np.clip(cv2.GaussianBlur(m, (kernel, kernel), 0), 0.001, 50))
            P = np.pad(L, 1, mode="edge").astype(np.float64)
            cx, cy = int(x) + 1, int(y) + 1
            centre, right, left, down, up = P[cy, cx], P[cy, cx + 1], P[cy, cx - 1], P[cy + 1, cx], P[cy - 1, cx]
            g = np.array([0.5 * (right - left), 0.5 * (down - up)])
            dxx = right - 2 * centre + left
            dyy = down - 2 * centre + up
            dxy = 0.5 * (P[cy + 1, cx + 1] - right - down + 2 * centre - left - up + P[cy - 1, cx - 1])
            hessian = np.array([[dxx, dxy], [dxy, dyy]]) + eps * np.eye(2)
            coords[i, j] = np.array([x, y]) - np.linalg.inv(hessian) @ g
    return coords


def decoded_in_heatmap_pixels(codec, heatmaps):
    keypoints, scores = codec.decode(torch.from_numpy(heatmaps))
    assert keypoints.dtype == torch.float32 and scores.dtype == torch.float32
    if isinstance(codec, UDPHeatmap):
        scale = (np.asarray(codec.input_size) - 1.0) / (np.asarray(codec.heatmap_size) - 1.0)
    else:
        scale = np.asarray(codec.input_size) / np.asarray(codec.heatmap_size)
    return keypoints.double().numpy() / scale, scores.numpy()


def random_maps(seed: int, shape=(3, 12, 64, 48)) -> np.ndarray:
    """Noise, smooth blobs, maxima on and next to every border, tiny, huge, flat and non-positive maps."""
    rng = np.random.default_rng(seed)
    n, k, h, w = shape
    maps = rng.random(shape).astype(np.float32)
    for i in range(n):
        maps[i, 1] = cv2.GaussianBlur(maps[i, 1], (15, 15), 0) ** 4
    places = [(0, 0), (1, 1), (2, 2), (w - 1, h - 1), (w - 2, h - 2), (w - 3, h - 3), (1, h // 2), (w // 2, 2)]
    for j, (x, y) in enumerate(places, start=2):
        maps[:, j] *= 0.5
        maps[:, j, y, x] = 2.0
    maps[0, 10] = 0.0
    maps[1, 10] = -rng.random((h, w))
    maps[2, 10] *= 0.002  # below DARK-UDP's clip at 0.001 in places
    maps[0, 11] *= 80.0  # above its clip at 50 in places
    maps[1, 11] = maps[1, 1] * 0.003
    maps[2, 11] = 0.25
    return maps


def encoded_maps(codec, seed: int) -> np.ndarray:
    keypoints, visibility = crop_keypoints("coco", codec.input_size, box_factor=0.85)
    rng = np.random.default_rng(seed)
    keypoints = keypoints + rng.normal(0, 0.5, keypoints.shape)
    return codec.encode(keypoints, visibility)["heatmaps"]


def window_inside(keypoints, codec) -> np.ndarray:
    """(N, K) whether the keypoint's whole Gaussian window lies inside the heatmap."""
    if isinstance(codec, UDPHeatmap):
        stride = (np.asarray(codec.input_size) - 1.0) / (np.asarray(codec.heatmap_size) - 1.0)
    else:
        stride = np.asarray(codec.input_size) / np.asarray(codec.heatmap_size)
    mu = np.trunc(keypoints / stride + 0.5)
    radius = 3 * codec.sigma
    return np.all((mu - radius >= 0) & (mu + radius <= np.asarray(codec.heatmap_size) - 1), axis=-1)


# ---------------------------------------------------------------------------------------------
# encode


@pytest.mark.parametrize("udp", [False, True], ids=["msra", "udp"])
@pytest.mark.parametrize("sizes", SIZES, ids=["192x256", "256x256"])
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_encode_equals_per_keypoint_reference_on_real_keypoints(udp, sizes, dataset) -> None:
    input_size, heatmap_size = sizes
    codec = (UDPHeatmap if udp else MSRAHeatmap)(input_size, heatmap_size, sigma=2.0)
    keypoints, visibility = crop_keypoints(dataset, input_size, box_factor=0.8)
    targets = codec.encode(keypoints, visibility)
    assert targets["heatmaps"].dtype == np.float32 and targets["keypoint_weights"].dtype == np.float32
    assert targets["heatmaps"].shape == (*keypoints.shape[:2], heatmap_size[1], heatmap_size[0])
    # the shrunk box pushes real keypoints past the borders; some are invisible
    assert (targets["keypoint_weights"] == 0).any() and (targets["keypoint_weights"] == 1).any()
    assert ((keypoints < 0) | (keypoints > np.asarray(input_size))).any()
    for i in range(len(keypoints)):
        maps, weights = reference_targets(keypoints[i], visibility[i], input_size, heatmap_size, 2.0, udp)
        np.testing.assert_array_equal(targets["keypoint_weights"][i], weights)
        np.testing.assert_allclose(targets["heatmaps"][i], maps, rtol=0, atol=2e-7)
    drawn = targets["heatmaps"].max(axis=(2, 3)) > 0.5
    assert drawn.sum() >= 0.3 * drawn.size  # mostly not empty: the comparison means something


@pytest.mark.parametrize("sigma", [2.0, 1.0, 1.5, 3.0])
@pytest.mark.parametrize("udp", [False, True], ids=["msra", "udp"])
def test_encode_equals_reference_near_and_beyond_borders(udp, sigma) -> None:
    input_size, heatmap_size = (192, 256), (48, 64)
    codec = (UDPHeatmap if udp else MSRAHeatmap)(input_size, heatmap_size, sigma=sigma)
    keypoints, visibility = edge_keypoints(input_size, heatmap_size)
    targets = codec.encode(keypoints, visibility)
    maps, weights = reference_targets(keypoints, visibility, input_size, heatmap_size, sigma, udp)
    np.testing.assert_array_equal(targets["keypoint_weights"], weights)
    np.testing.assert_allclose(targets["heatmaps"], maps, rtol=0, atol=2e-7)
    np.testing.assert_allclose(np.unique(weights), [0.0, 0.3, 0.7, 1.0])
    assert not targets["heatmaps"][np.isclose(weights, 0.3)].any()  # weights at most 0.5 draw nothing


def test_msra_window_ending_at_pixel_zero_keeps_its_weight_as_in_mmpose() -> None:
    codec = MSRAHeatmap((192, 256), (48, 64), sigma=2.0)
    # x / 4 + 0.5 = -7.25 -> mu = -7, window [-13, 0): entirely outside, yet br == 0 is not < 0
    targets = codec.encode(np.array([[-31.0, 100.0], [-35.0, 100.0]]), np.ones(2))
    np.testing.assert_array_equal(targets["keypoint_weights"], [1.0, 0.0])
    assert not targets["heatmaps"].any()


def test_encode_batch_axes_equal_per_sample() -> None:
    codec = UDPHeatmap((192, 256), (48, 64))
    keypoints, visibility = crop_keypoints("coco", codec.input_size)
    stacked = codec.encode(keypoints.reshape(2, -1, 17, 2), visibility.reshape(2, -1, 17))
    assert stacked["heatmaps"].shape == (2, len(keypoints) // 2, 17, 64, 48)
    for i in range(len(keypoints)):
        single = codec.encode(keypoints[i], visibility[i])
        np.testing.assert_array_equal(stacked["heatmaps"].reshape(-1, 17, 64, 48)[i], single["heatmaps"])
        np.testing.assert_array_equal(stacked["keypoint_weights"].reshape(-1, 17)[i], single["keypoint_weights"])


def test_poseanything_heatmap_is_msra_sigma_1_on_64x64() -> None:
    codec = MSRAHeatmap((256, 256), (64, 64), sigma=1.0)
    targets = codec.encode(np.array([[101.0, 37.0]]), np.ones(1))
    heatmap = targets["heatmaps"][0]
    # mu = int(101 / 4 + 0.5) = 25, int(37 / 4 + 0.5) = 9; a 7x7 patch with peak 1
    assert heatmap[9, 25] == 1.0
    assert np.count_nonzero(heatmap) == 49
    assert np.isclose(heatmap[9, 28], np.exp(-4.5)) and heatmap[9, 29] == 0


# ---------------------------------------------------------------------------------------------
# blur


@pytest.mark.parametrize("kernel", [1, 3, 5, 7, 9, 11, 17])
def test_blur_kernel_matches_opencv(kernel) -> None:
    np.testing.assert_allclose(
        opencv_gaussian_kernel(kernel).numpy(), cv2.getGaussianKernel(kernel, 0).ravel(), atol=1e-12
    )


@pytest.mark.parametrize("kernel", [3, 9, 11, 17])
def test_blur_matches_cv2_with_both_borders(kernel) -> None:
    maps = encoded_maps(UDPHeatmap((192, 256), (48, 64)), seed=0)[:2] + random_maps(1, (3, 17, 64, 48))[:2] * 0.1
    blurred = gaussian_blur(torch.from_numpy(maps), kernel).numpy()
    border = kernel // 2
    zero_padded = gaussian_blur(torch.from_numpy(maps), kernel, border="zeros").numpy()
    for i in range(2):
        for j in range(17):
            np.testing.assert_allclose(
                blurred[i, j], cv2.GaussianBlur(maps[i, j], (kernel, kernel), 0), rtol=1e-6, atol=1e-6
            )
            padded = cv2.copyMakeBorder(maps[i, j], border, border, border, border, cv2.BORDER_CONSTANT, value=0)
            expected = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
            np.testing.assert_allclose(zero_padded[i, j], expected, rtol=1e-6, atol=1e-6)


def test_blur_of_maps_smaller_than_the_kernel_matches_cv2() -> None:
    maps = np.random.default_rng(3).random((1, 2, 4, 3)).astype(np.float32)
    blurred = gaussian_blur(torch.from_numpy(maps), 11).numpy()
    for j in range(2):
        np.testing.assert_allclose(blurred[0, j], cv2.GaussianBlur(maps[0, j], (11, 11), 0), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# decode against the references


@pytest.mark.parametrize("source", ["random", "encoded"])
def test_standard_decode_equals_reference(source) -> None:
    codec = MSRAHeatmap((192, 256), (48, 64))
    maps = random_maps(4) if source == "random" else encoded_maps(codec, seed=4)
    coords, scores = decoded_in_heatmap_pixels(codec, maps)
    expected, expected_scores = reference_standard(maps)
    np.testing.assert_allclose(coords, expected, atol=1e-5)
    np.testing.assert_allclose(scores, expected_scores, atol=0)
    if source == "random":
        shifted = np.abs(expected - np.round(expected)) > 0
        assert shifted.any() and not shifted.all()  # the border condition was exercised both ways
        assert (expected == -1).all(axis=-1).sum() == 2  # the zero and the negative map


@pytest.mark.parametrize("source", ["random", "encoded"])
def test_dark_decode_equals_reference(source) -> None:
    codec = MSRAHeatmap((192, 256), (48, 64), unbiased=True)
    maps = random_maps(5) if source == "random" else encoded_maps(codec, seed=5)
    coords, _ = decoded_in_heatmap_pixels(codec, maps)
    expected = reference_dark(maps, 11)
    np.testing.assert_allclose(coords, expected, rtol=1e-4, atol=2e-4)
    assert (np.abs(expected - np.round(expected)) > 1e-3).any()


@pytest.mark.parametrize("kernel", [11, 3])
@pytest.mark.parametrize("source", ["random", "encoded"])
def test_dark_udp_decode_equals_reference(source, kernel) -> None:
    codec = UDPHeatmap((192, 256), (48, 64), blur_kernel_size=kernel)
    maps = random_maps(6) if source == "random" else encoded_maps(codec, seed=6)
    coords, _ = decoded_in_heatmap_pixels(codec, maps)
    expected = reference_dark_udp(maps, kernel)
    # on an exactly constant map the Hessian is rounding noise and the step arbitrary (see dark_udp_refine)
    constant = (maps.min(axis=(2, 3)) == maps.max(axis=(2, 3))) & (maps.max(axis=(2, 3)) > 0)
    assert constant.sum() == (1 if source == "random" else 0)
    np.testing.assert_allclose(coords[~constant], expected[~constant], rtol=1e-4, atol=2e-4)
    assert np.isfinite(coords).all()


def test_decoded_scores_are_the_maxima_and_empty_maps_give_minus_one() -> None:
    maps = torch.zeros(1, 2, 64, 48)
    maps[0, 0, 10, 20] = 0.8
    for codec in (MSRAHeatmap((192, 256), (48, 64)), UDPHeatmap((192, 256), (48, 64))):
        keypoints, scores = codec.decode(maps)
        assert scores.tolist() == [[pytest.approx(0.8), 0.0]]
        stride = 4.0 if isinstance(codec, MSRAHeatmap) else 191 / 47
        assert keypoints[0, 1].tolist() == [pytest.approx(-stride), pytest.approx(-(255 / 63 if stride != 4 else 4.0))]


# ---------------------------------------------------------------------------------------------
# round trips on the real samples


@pytest.mark.parametrize("sizes", SIZES, ids=["192x256", "256x256"])
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_udp_dark_round_trip_recovers_ground_truth_within_a_tenth_of_a_pixel(dataset, sizes) -> None:
    codec = UDPHeatmap(*sizes, sigma=2.0)
    keypoints, visibility = crop_keypoints(dataset, codec.input_size)
    targets = codec.encode(keypoints, visibility)
    decoded, _ = codec.decode(torch.from_numpy(targets["heatmaps"]))
    checked = (visibility > 0) & window_inside(keypoints, codec)
    assert checked.sum() >= 10
    error = np.linalg.norm(decoded.double().numpy() - keypoints, axis=-1)[checked]
    assert error.max() < 0.1, f"max round-trip error {error.max():.4f} px"


@pytest.mark.parametrize("sizes", SIZES, ids=["192x256", "256x256"])
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_msra_round_trip_is_bounded_by_the_quantisation(dataset, sizes) -> None:
    """MSRA centres the Gaussian on ``int(coord / stride + 0.5)``, so no decoder can beat rounding to the
    stride grid: DARK recovers that grid point to 1e-4 px (measured: 2e-6 px), so the error is at most
    half a stride per axis (measured on these samples: up to 2.8 px, mean 1.4-1.7 px, at stride 4); the
    quarter-pixel shift recovers the grid point exactly (the two neighbours are equal)."""
    for unbiased in (True, False):
        codec = MSRAHeatmap(*sizes, sigma=2.0, unbiased=unbiased)
        keypoints, visibility = crop_keypoints(dataset, codec.input_size)
        decoded, _ = codec.decode(torch.from_numpy(codec.encode(keypoints, visibility)["heatmaps"]))
        decoded = decoded.double().numpy()
        checked = (visibility > 0) & window_inside(keypoints, codec)
        stride = np.asarray(codec.input_size) / np.asarray(codec.heatmap_size)
        grid_point = np.trunc(keypoints / stride + 0.5) * stride
        np.testing.assert_allclose(decoded[checked], grid_point[checked], rtol=0, atol=1e-4 if unbiased else 1e-5)
        assert np.all(np.abs(decoded - keypoints)[checked] <= stride / 2 + 1e-4)


# ---------------------------------------------------------------------------------------------
# flip test


def _metainfo_flip(name: str) -> list[int]:
    return json.loads((METAINFO / f"{name}.json").read_text())["flip_indices"]


def _mirror_pose(keypoints, flip_indices, width):
    """What the data pipeline does to keypoints when it flips the image."""
    mirrored = keypoints[..., flip_indices, :].copy()
    mirrored[..., 0] = width - 1 - mirrored[..., 0]
    return mirrored


def test_udp_flip_back_is_exact_and_twice_is_identity() -> None:
    codec = UDPHeatmap((192, 256), (48, 64))
    flip = _metainfo_flip("coco")
    keypoints, visibility = crop_keypoints("coco", codec.input_size)
    keypoints = keypoints + 0.123  # avoid the .5 ties where int(c + 0.5) moves the window
    # int() truncates toward zero, so past the left border the window is not the mirror image of the
    # window past the right border (mmpose semantics); compare keypoints inside the crop
    visibility = visibility * np.all((keypoints >= 0) & (keypoints <= np.asarray(codec.input_size) - 1), axis=-1)
    original = torch.from_numpy(codec.encode(keypoints, visibility)["heatmaps"])
    of_flipped_image = torch.from_numpy(
        codec.encode(_mirror_pose(keypoints, flip, 192), visibility[:, flip])["heatmaps"]
    )
    torch.testing.assert_close(codec.flip_back(of_flipped_image, flip), original, atol=1e-6, rtol=0)
    torch.testing.assert_close(codec.flip_back(codec.flip_back(original, flip), flip), original, atol=0, rtol=0)


def test_flip_test_on_a_symmetric_pose() -> None:
    """A pose symmetric about the crop's centre line looks the same flipped, with left and right
    swapped; an ideal model gives the same maps for both images, and flip test must not move it."""
    flip = _metainfo_flip("coco")
    width = 192
    rng = np.random.default_rng(7)
    keypoints = np.zeros((17, 2))
    keypoints[:, 1] = rng.uniform(60, 200, 17)
    keypoints[0, 0] = (width - 1) / 2
    for left in range(1, 17, 2):
        keypoints[left, 0] = rng.uniform(50, 90)
        keypoints[left + 1] = [width - 1 - keypoints[left, 0], keypoints[left, 1]]
    np.testing.assert_allclose(_mirror_pose(keypoints, flip, width), keypoints)
    visibility = np.ones(17)

    udp = UDPHeatmap((width, 256), (48, 64))
    maps = torch.from_numpy(udp.encode(keypoints, visibility)["heatmaps"])[None]
    flipped_back = udp.flip_back(maps, flip)
    torch.testing.assert_close(flipped_back[:, 1:], maps[:, 1:], atol=1e-6, rtol=0)
    # the nose sits on the centre line, 23.5 heatmap pixels: int(24.0) puts its window one pixel
    # right of the mirror image of itself, so only the window's outermost column differs
    torch.testing.assert_close(flipped_back[:, 0], maps[:, 0], atol=np.exp(-(6.5**2) / 8) + 1e-6, rtol=0)
    decoded, _ = udp.decode(average_flipped(maps, flipped_back))
    assert np.abs(decoded[0].double().numpy() - keypoints).max() < 0.1

    msra = MSRAHeatmap((width, 256), (48, 64), unbiased=True)
    maps = torch.from_numpy(msra.encode(keypoints, visibility)["heatmaps"])[None]
    flipped_back = msra.flip_back(maps, flip)
    # mirrored, then one pixel right with column 0 repeated (mmpose shift_heatmap)
    torch.testing.assert_close(flipped_back[..., 1:], maps[:, flip].flip(-1)[..., :-1], atol=0, rtol=0)
    torch.testing.assert_close(flipped_back[..., 0], maps[:, flip, :, -1], atol=0, rtol=0)
    decoded, _ = msra.decode(average_flipped(maps, flipped_back))
    assert np.abs(decoded[0].double().numpy() - keypoints).max() < msra.input_size[0] / msra.heatmap_size[0]

    regression = KeypointRegression((width, 256))
    labels = torch.from_numpy(regression.encode(keypoints, visibility)["keypoint_labels"])[None]
    torch.testing.assert_close(regression.flip_back(labels, flip), labels, atol=1e-6, rtol=0)


def test_regression_flip_back_mirrors_x_to_width_minus_one_minus_x() -> None:
    codec = KeypointRegression((192, 256))
    flip = _metainfo_flip("mpii")
    keypoints, visibility = crop_keypoints("mpii", codec.input_size)
    labels = torch.from_numpy(codec.encode(keypoints, visibility)["keypoint_labels"])
    of_flipped_image = torch.from_numpy(
        codec.encode(_mirror_pose(keypoints, flip, 192), visibility[:, flip])["keypoint_labels"]
    )
    torch.testing.assert_close(codec.flip_back(of_flipped_image, flip), labels, atol=1e-6, rtol=0)
    pixels = torch.from_numpy(_mirror_pose(keypoints, flip, 192))
    torch.testing.assert_close(flip_keypoints(pixels, flip, width=192), torch.from_numpy(keypoints))


@pytest.mark.parametrize(("name", "num_keypoints"), [("coco_wholebody", 133), ("interhand3d", 42), ("interhand2d", 21)])
def test_flip_indices_from_metainfo(name, num_keypoints) -> None:
    flip = _metainfo_flip(name)
    assert len(flip) == num_keypoints
    maps = torch.rand(2, num_keypoints, 16, 12)
    for codec in (UDPHeatmap((48, 64), (12, 16)), MSRAHeatmap((48, 64), (12, 16))):
        flipped = codec.flip_back(maps, flip)
        for k in (0, 17, num_keypoints - 1):
            mirrored = maps[:, flip[k]].flip(-1)
            if isinstance(codec, MSRAHeatmap):
                mirrored = torch.cat((mirrored[..., :1], mirrored[..., :-1]), dim=-1)
            torch.testing.assert_close(flipped[:, k], mirrored, atol=0, rtol=0)
    torch.testing.assert_close(flip_heatmaps(flip_heatmaps(maps, flip), flip), maps, atol=0, rtol=0)
    labels = torch.rand(2, num_keypoints, 2)
    regression = KeypointRegression((48, 64))
    torch.testing.assert_close(regression.flip_back(regression.flip_back(labels, flip), flip), labels)


def test_flip_back_rejects_indices_of_another_dataset() -> None:
    with pytest.raises(ValueError, match="flip_indices has 17 entries but the outputs have 133 keypoints"):
        UDPHeatmap((48, 64), (12, 16)).flip_back(torch.rand(1, 133, 16, 12), _metainfo_flip("coco"))
    with pytest.raises(ValueError, match="permutation"):
        flip_keypoints(torch.rand(1, 3, 2), [0, 0, 1], width=10)


# ---------------------------------------------------------------------------------------------
# regression


def test_regression_encode_and_decode() -> None:
    codec = KeypointRegression((256, 256))
    keypoints = np.array([[0.0, 0.0], [255.0, 128.0], [256.0, 10.0], [-0.5, 3.0], [40.0, 40.0]])
    targets = codec.encode(keypoints, np.array([1.0, 1.0, 1.0, 1.0, 0.0]))
    np.testing.assert_allclose(targets["keypoint_labels"], keypoints / 256.0)
    np.testing.assert_array_equal(targets["keypoint_weights"], [1, 1, 0, 0, 0])
    decoded, scores = codec.decode(torch.from_numpy(targets["keypoint_labels"])[None].to(torch.bfloat16))
    assert decoded.dtype == torch.float32 and scores.tolist() == [[1.0] * 5]
    np.testing.assert_allclose(decoded[0].numpy(), keypoints, atol=2.0)  # bf16 labels: 8 bits of mantissa
    _, given = codec.decode(torch.rand(2, 5, 2), scores=torch.full((2, 5), 0.5))
    assert given.tolist() == [[0.5] * 5] * 2


# ---------------------------------------------------------------------------------------------
# dtypes, batching, devices, validation, declarations


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_heatmaps_decode_in_float32(dtype) -> None:
    maps = torch.from_numpy(encoded_maps(UDPHeatmap((192, 256), (48, 64)), seed=8))
    for codec in (
        UDPHeatmap((192, 256), (48, 64)),
        MSRAHeatmap((192, 256), (48, 64), unbiased=True),
        MSRAHeatmap((192, 256), (48, 64)),
    ):
        keypoints, scores = codec.decode(maps.to(dtype))
        assert keypoints.dtype == torch.float32 and scores.dtype == torch.float32
        expected, expected_scores = codec.decode(maps.to(dtype).float())
        torch.testing.assert_close(keypoints, expected, atol=0, rtol=0)
        torch.testing.assert_close(scores, expected_scores, atol=0, rtol=0)


def test_batched_decode_equals_per_sample_decode() -> None:
    maps = torch.from_numpy(
        np.concatenate([random_maps(9), encoded_maps(MSRAHeatmap((192, 256), (48, 64)), 9)[:, :12]])
    )
    for codec in (
        UDPHeatmap((192, 256), (48, 64)),
        MSRAHeatmap((192, 256), (48, 64), unbiased=True),
        MSRAHeatmap((192, 256), (48, 64)),
    ):
        keypoints, scores = codec.decode(maps)
        for i in range(len(maps)):
            single_keypoints, single_scores = codec.decode(maps[i : i + 1])
            torch.testing.assert_close(keypoints[i : i + 1], single_keypoints, atol=1e-5, rtol=0)
            torch.testing.assert_close(scores[i : i + 1], single_scores, atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decode_stays_on_the_device_and_agrees_with_cpu() -> None:
    maps = torch.from_numpy(encoded_maps(UDPHeatmap((192, 256), (48, 64)), seed=10))
    for codec in (UDPHeatmap((192, 256), (48, 64)), MSRAHeatmap((192, 256), (48, 64), unbiased=True)):
        keypoints, scores = codec.decode(maps.cuda())
        assert keypoints.device.type == "cuda" and scores.device.type == "cuda"
        expected, _ = codec.decode(maps)
        torch.testing.assert_close(keypoints.cpu(), expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: UDPHeatmap((192, 256), (48, 64), blur_kernel_size=10), "positive odd integer"),
        (lambda: MSRAHeatmap((192, 256), (384, 64)), "larger than input_size"),
        (lambda: MSRAHeatmap((192, 256), (48, 64), sigma=0), "sigma must be a positive"),
        (lambda: MSRAHeatmap((192.5, 256), (48, 64)), "input_size must be two integers"),
        (lambda: UDPHeatmap((192, 256), (1, 64)), "heatmap_size must be two integers >= 2"),
        (lambda: KeypointRegression((256,)), "input_size must be \\(width, height\\)"),
    ],
)
def test_invalid_settings_are_rejected_with_the_field_named(build, message) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_decode_and_encode_reject_wrong_shapes() -> None:
    codec = MSRAHeatmap((192, 256), (48, 64))
    with pytest.raises(ValueError, match=r"expected heatmaps \(B, K, 64, 48\)"):
        codec.decode(torch.rand(1, 17, 48, 64))
    with pytest.raises(ValueError, match="visibility must have shape"):
        codec.encode(np.zeros((17, 2)), np.ones(16))


def test_catalog_declares_buildable_codecs_without_torch_at_import() -> None:
    assert [c.name for c in CODECS] == ["msra_heatmap", "udp_heatmap", "keypoint_regression"]
    for component in CODECS:
        codec = component.resolve()(**component.example_kwargs(Path(".")))
        assert isinstance(codec, Codec)
        assert tuple(codec.input_size) == tuple(component.example["input_size"])
    import subprocess
    import sys

    code = "import sys; import posecore.codecs._catalog; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_heatmap_argmax_is_unchanged_for_the_heads() -> None:
    maps = torch.full((1, 1, 4, 5), -1.0)
    maps[0, 0, 3, 1] = -0.5
    coords, scores = heatmap_argmax(maps)
    assert coords.tolist() == [[[1.0, 3.0]]] and scores.tolist() == [[-0.5]]


def test_predict_heatmaps_averages_the_flipped_pass_and_names_a_missing_codec() -> None:
    from posecore.data import load_metainfo
    from posecore.models import predict_heatmaps

    codec = UDPHeatmap((48, 64), (12, 16))
    images = torch.randn(2, 3, 64, 48)
    weights = torch.randn(17, 3)

    def forward(batch_images: torch.Tensor) -> torch.Tensor:  # a fixed, image-dependent "model"
        return torch.einsum("kc,bchw->bkhw", weights, batch_images[..., ::4, ::4])

    batch = {"image": images, "meta": [load_metainfo("coco")] * 2}
    result = predict_heatmaps(forward, batch, codec, flip_test=True)
    flipped_back = codec.flip_back(forward(images.flip(-1)), list(load_metainfo("coco").flip_indices))
    torch.testing.assert_close(result.heatmaps, average_flipped(forward(images), flipped_back))
    torch.testing.assert_close(result.keypoints, codec.decode(result.heatmaps)[0])
    with pytest.raises(ValueError, match="tiny: the flip test needs the experiment's codec"):
        predict_heatmaps(forward, batch, None, flip_test=True, owner="tiny")
    with pytest.raises(ValueError, match="tiny: decoding heatmaps needs the experiment's codec"):
        predict_heatmaps(forward, batch, None, flip_test=False, owner="tiny")
