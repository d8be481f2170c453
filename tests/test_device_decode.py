"""``data.jpeg_decode: device``: the loader reads JPEG files and the engine decodes and crops them
where the model runs. On the CPU (torchvision's libjpeg-turbo) every sample must equal the
loader's (simplejpeg + OpenCV) to one level of one pixel value: real readers on the shared sample
files through the real train pipeline, few-shot support samples, and a whole training run. The
CUDA test (nvJPEG) runs where a GPU is."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from posecore._errors import ConfigError
from posecore._plugins import get_host
from posecore.codecs import MSRAHeatmap, UDPHeatmap
from posecore.config import apply_overrides
from posecore.data import PipelineDataset, build_pipeline, collate_samples, read_image, standard_topdown_pipeline
from posecore.data._device_decode import warp_crops
from posecore.data._geometry import (
    compose_affine,
    horizontal_flip_matrix,
    invert_affine,
    standard_warp_matrix,
    udp_warp_matrix,
)
from posecore.engine import Trainer
from posecore.engine._builder import build_codec, experiment_pipeline
from posecore.engine._evaluation import move_to_device

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
INPUT = (192, 256)  # width, height


def _real_images() -> list[Path]:
    files = sorted(SHARED.glob("*/*.jpg"))
    assert len(files) >= 8, f"shared sample images missing under {SHARED}"
    return files[:8]


def test_warp_crops_is_opencvs_bilinear_warp_with_a_zero_border() -> None:
    """Real photos of different sizes in one call; standard and UDP warps, rotations, a mirror,
    boxes that run off the image and one that misses it: OpenCV's crop to one level."""
    rng = np.random.default_rng(0)
    images, matrices, expected = [], [], []
    for index, path in enumerate(_real_images()):
        picture = read_image(path)
        height, width = picture.shape[:2]
        center = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        box = rng.uniform(40, 1.5 * width)
        make = udp_warp_matrix if index % 2 else standard_warp_matrix
        matrix = make(center, np.array([box, box * 4 / 3]), float(rng.uniform(-80, 80)), INPUT)
        if index == 3:
            matrix = compose_affine(matrix, horizontal_flip_matrix(width - 1))
        if index == 5:  # a box wholly outside the picture
            matrix = standard_warp_matrix(np.array([-5000.0, -5000.0]), np.array([100.0, 133.0]), 0.0, INPUT)
        images.append(torch.from_numpy(picture).permute(2, 0, 1).contiguous())
        matrices.append(matrix)
        expected.append(cv2.warpAffine(picture, matrix, INPUT, flags=cv2.INTER_LINEAR))
    crops = warp_crops(images, torch.from_numpy(np.stack([invert_affine(m) for m in matrices])), INPUT)
    reference = torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2)
    assert crops.dtype == torch.uint8 and crops.shape == reference.shape == (8, 3, INPUT[1], INPUT[0])
    difference = (crops.int() - reference.int()).abs()
    assert difference.max() <= 1 and difference.float().mean() < 0.01
    assert crops[5].max() == 0 and reference[5].max() == 0
    assert all(crops[i].float().std() > 5 for i in range(8) if i != 5)  # pictures, not borders


def test_crops_of_the_people_of_one_picture_are_cut_from_its_one_decoded_copy() -> None:
    """``sources``: each crop names its picture (the device decodes a file once per batch)."""
    pictures = [read_image(path) for path in _real_images()[:2]]
    boxes = [(0, (100.0, 120.0), 0.0), (1, (300.0, 200.0), 30.0), (0, (200.0, 250.0), -20.0), (0, (50.0, 60.0), 0.0)]
    matrices = [standard_warp_matrix(np.array(center), np.array([150.0, 200.0]), rotation, INPUT)
                for _, center, rotation in boxes]
    crops = warp_crops([torch.from_numpy(p).permute(2, 0, 1).contiguous() for p in pictures],
                       torch.from_numpy(np.stack([invert_affine(m) for m in matrices])), INPUT,
                       sources=[source for source, _, _ in boxes])
    for crop, (source, _, _), matrix in zip(crops, boxes, matrices, strict=True):
        expected = torch.from_numpy(cv2.warpAffine(pictures[source], matrix, INPUT, flags=cv2.INTER_LINEAR))
        assert (crop.permute(1, 2, 0).int() - expected.int()).abs().max() <= 1


def _readers() -> dict[str, Any]:
    """Real readers whose images are JPEG files on disk: people, an animal set, a single-hand set."""
    specs = {
        "coco": {"type": "coco", "ann_file": str(SHARED / "coco" / "test_coco.json"),
                 "image_root": str(SHARED / "coco")},
        "mpii": {"type": "mpii", "ann_file": str(SHARED / "mpii" / "test_mpii.json"),
                 "image_root": str(SHARED / "mpii")},
        "ap10k": {"type": "ap10k", "ann_file": str(SHARED / "ap10k" / "test_ap10k.json"),
                  "image_root": str(SHARED / "ap10k")},
    }
    registry = get_host().registries.datasets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the readers' loading reports are tested elsewhere
        return {name: registry.build(spec) for name, spec in specs.items()}


def _batch(dataset: Any, codec: Any, jpeg_decode: str, device: str = "cpu") -> dict[str, Any]:
    """Every sample of ``dataset`` through the train pipeline, collated and moved to ``device``."""
    pipeline = build_pipeline(standard_topdown_pipeline(True), get_host().registries, codec=codec,
                              input_size=INPUT, use_udp=isinstance(codec, UDPHeatmap), jpeg_decode=jpeg_decode)
    samples = PipelineDataset(dataset, pipeline, seed=5)
    return move_to_device(collate_samples([samples[i] for i in range(len(samples))]), torch.device(device))


@pytest.mark.parametrize("reader", ["coco", "mpii", "ap10k"])
def test_every_training_sample_equals_the_loaders_when_decoded_on_the_device(reader: str) -> None:
    """Flips, half-body crops, scale and rotation: the same targets, keypoints and matrices, and
    the same crop to one level (MPII's progressive files: decoded by the loader in both)."""
    dataset = _readers()[reader]
    codec = UDPHeatmap(INPUT, (48, 64), sigma=2.0)
    loader, device = _batch(dataset, codec, "loader"), _batch(dataset, codec, "device")
    assert set(loader) == set(device)
    for key, value in loader.items():
        if isinstance(value, torch.Tensor) and key != "image":
            assert torch.equal(value, device[key]), key
    difference = (device["image"].int() - loader["image"].int()).abs()
    assert difference.max() <= 1 and difference.float().mean() < 0.01
    if reader == "coco":  # 12 instances: the augmentations are exercised
        assert any(loader["flipped"]) and not all(loader["flipped"])
        assert (loader["image"] == 0).float().mean() > 0.01  # some crops run off the image


def test_only_baseline_jpegs_are_left_to_the_device() -> None:
    """COCO's and AP-10K's files are baseline JPEGs; MPII's progressive ones, which nvJPEG would
    decode one by one on the host, are decoded by the loader as before (an empty ``jpeg``)."""
    codec = UDPHeatmap(INPUT, (48, 64), sigma=2.0)
    readers = _readers()
    for reader, deferred in (("coco", True), ("ap10k", True), ("mpii", False)):
        pipeline = build_pipeline(standard_topdown_pipeline(True), get_host().registries, codec=codec,
                                  input_size=INPUT, use_udp=True, jpeg_decode="device")
        samples = PipelineDataset(readers[reader], pipeline, seed=5)
        assert {len(samples[i]["jpeg"]) > 0 for i in range(len(samples))} == {deferred}, reader
        if not deferred:
            assert all(samples[i]["image"].float().std() > 5 for i in range(len(samples)))  # decoded already


def test_support_samples_of_few_shot_episodes_are_decoded_on_the_device_too(tmp_path: Path) -> None:
    registry = get_host().registries.datasets
    episodes = registry.build({"type": "synthetic_categories", "split": "test", "num_images": 48,
                               "cache_dir": str(tmp_path), "episodes": True, "num_shots": 1, "num_queries": 1})
    codec = MSRAHeatmap(INPUT, (48, 64), sigma=2.0)
    loader, device = _batch(episodes, codec, "loader"), _batch(episodes, codec, "device")
    for query_loader, query_device in zip(loader["support"], device["support"], strict=True):
        for shot_loader, shot_device in zip(query_loader, query_device, strict=True):
            assert "jpeg" not in shot_device
            assert shot_device["image"].float().std() > 5
            assert (shot_device["image"].int() - torch.as_tensor(shot_loader["image"]).int()).abs().max() <= 1
    assert (device["image"].int() - loader["image"].int()).abs().max() <= 1


def test_a_run_decoding_on_the_device_trains_as_one_decoding_in_the_loader(synthetic_cache, tiny_config,
                                                                           tmp_path: Path) -> None:
    """The same seed, the same losses step by step (the crops differ by a level in a few pixels)."""
    losses = {}
    for place in ("loader", "device"):
        config = apply_overrides(tiny_config(epochs=1), [f"data.jpeg_decode={place}"])
        assert config.data.jpeg_decode == place
        Trainer(config, tmp_path / place, registries=get_host().registries, quiet=True, num_prediction_images=0).fit()
        records = [json.loads(line) for line in (tmp_path / place / "log.jsonl").read_text().splitlines()]
        losses[place] = [record["loss"] for record in records if record.get("kind") == "train"]
    assert len(losses["loader"]) >= 3
    np.testing.assert_allclose(losses["device"], losses["loader"], rtol=1e-3)


def test_a_transform_that_may_read_the_image_after_the_crop_is_refused(tiny_config) -> None:
    """It would see the zero image the loader leaves; the standard pipelines pass."""
    pipeline = ["get_bbox_center_scale", "topdown_affine", "random_flip", "generate_target", "pack_sample"]
    config = apply_overrides(tiny_config(), ["data.jpeg_decode=device", f"data.train_pipeline=[{', '.join(pipeline)}]"])
    registries = get_host().registries
    with pytest.raises(ConfigError, match=r"transform 'random_flip' comes after 'topdown_affine' and may read the "
                                          r"image .* set data\.jpeg_decode=loader"):
        experiment_pipeline(config, registries, build_codec(config, registries), train=True)
    for train in (True, False):  # the standard pipelines
        experiment_pipeline(apply_overrides(tiny_config(), ["data.jpeg_decode=device"]), registries,
                            build_codec(config, registries), train=train)


def test_a_bad_jpeg_decode_setting_is_refused_with_the_choices(tiny_config) -> None:
    with pytest.raises(ConfigError, match=r"must be one of 'loader', 'device' @ data\.jpeg_decode"):
        apply_overrides(tiny_config(), ["data.jpeg_decode=gpu"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (nvJPEG)")
@pytest.mark.parametrize("reader", ["coco", "ap10k"])  # baseline JPEGs, the kind decoded on the device
def test_nvjpeg_crops_are_the_loaders_to_a_few_levels(reader: str) -> None:
    """nvJPEG's IDCT rounds differently from libjpeg-turbo's: a few levels at most, on average far less."""
    codec = UDPHeatmap(INPUT, (48, 64), sigma=2.0)
    dataset = _readers()[reader]
    loader = _batch(dataset, codec, "loader")
    device = _batch(dataset, codec, "device", device="cuda")
    assert device["image"].device.type == "cuda"
    difference = (device["image"].cpu().int() - loader["image"].int()).abs()
    assert difference.max() <= 8 and difference.float().mean() < 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (nvJPEG)")
def test_episodes_decoded_by_nvjpeg_leave_every_image_on_the_gpu(tmp_path: Path) -> None:
    """Queries (moved with the batch) and supports (inside lists, which the move leaves) meet on the GPU."""
    registry = get_host().registries.datasets
    episodes = registry.build({"type": "synthetic_categories", "split": "test", "num_images": 48,
                               "cache_dir": str(tmp_path), "episodes": True, "num_shots": 1, "num_queries": 1})
    codec = MSRAHeatmap(INPUT, (48, 64), sigma=2.0)
    loader = _batch(episodes, codec, "loader")
    device = _batch(episodes, codec, "device", device="cuda")
    assert device["image"].device.type == "cuda"
    for shots_loader, shots_device in zip(loader["support"], device["support"], strict=True):
        for shot_loader, shot_device in zip(shots_loader, shots_device, strict=True):
            assert shot_device["image"].device.type == "cuda"
            assert (shot_device["image"].cpu().int() - torch.as_tensor(shot_loader["image"]).int()).abs().max() <= 8
