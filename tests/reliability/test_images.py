"""Damaged, mislabelled and turned image files: read through a COCO-style annotation file and the
real test pipeline, a damaged image is a DataError naming the file and the image id, never
pixels of garbage; a wrong size is an error; the EXIF orientation is applied by every decoder.

The images are made by real encoders (OpenCV, Pillow) and damaged byte by byte here."""

from __future__ import annotations

import io
import json
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from posecore import DataError
from posecore._plugins import get_host
from posecore.data import PipelineDataset, build_pipeline, collate_samples, decode_image, standard_topdown_pipeline
from posecore.data._coco import CocoKeypointDataset
from posecore.engine._evaluation import move_to_device

Image = pytest.importorskip("PIL.Image")

INPUT = (48, 64)  # input width, height of the test pipeline
EXIF_ORIENTATION = 0x0112


def photo(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """A smooth RGB test picture: its JPEG has real entropy-coded data, not runs of zeros."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (9, 9), 0)


def jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


def with_orientation(image: np.ndarray, orientation: int, file_format: str = "JPEG") -> bytes:
    """``image`` stored as is, with an EXIF orientation tag (Pillow writes the EXIF block)."""
    picture = Image.fromarray(image)
    exif = picture.getexif()
    exif[EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    picture.save(buffer, file_format, exif=exif.tobytes(), **({"quality": 95} if file_format == "JPEG" else {}))
    return buffer.getvalue()


def scan_data(data: bytes) -> slice:
    """Where a baseline JPEG's entropy-coded data lies: after the start-of-scan header, before EOI."""
    sos = data.index(b"\xff\xda")
    (length,) = struct.unpack(">H", data[sos + 2 : sos + 4])
    return slice(sos + 2 + length, len(data) - 2)


def flip_scan_bytes(data: bytes) -> bytes:
    """Invert every 5th byte of the middle third of the entropy-coded data."""
    scan = scan_data(data)
    third = (scan.stop - scan.start) // 3
    damaged = bytearray(data)
    for position in range(scan.start + third, scan.start + 2 * third, 5):
        damaged[position] ^= 0xFF
    return bytes(damaged)


def bad_png_crc(data: bytes) -> bytes:
    """The same PNG with the checksum of its first IDAT chunk wrong (the pixel data untouched)."""
    idat = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[idat : idat + 4])
    crc = idat + 8 + length
    damaged = bytearray(data)
    damaged[crc] ^= 0xFF
    return bytes(damaged)


def write_dataset(root: Path, files: dict[str, bytes], sizes: dict[str, tuple[int, int] | None]) -> Path:
    """A COCO-style file with one image per entry of ``files`` (ids 101, 102, ... in order) and one
    labelled person on each; ``sizes`` gives each image record's (width, height), None for none."""
    images, annotations = [], []
    for number, (name, content) in enumerate(files.items()):
        (root / name).write_bytes(content)
        image_id = 101 + number
        record = {"id": image_id, "file_name": name}
        if sizes[name] is not None:
            record["width"], record["height"] = sizes[name]
        images.append(record)
        points = np.column_stack([np.linspace(10, 30, 17), np.linspace(10, 30, 17), np.full(17, 2)])
        annotations.append({"id": 900 + number, "image_id": image_id, "category_id": 1, "bbox": [5, 5, 30, 30],
                            "area": 900, "num_keypoints": 17, "keypoints": points.ravel().tolist()})
    ann_file = root / "annotations.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                    "categories": [{"id": 1, "name": "person"}]}), encoding="utf-8")
    return ann_file


def evaluation_samples(ann_file: Path, jpeg_decode: str = "loader") -> PipelineDataset:
    """The ``coco`` reader and the standard test pipeline, as evaluation reads the images."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # keypoints outside the small images are noted, not our subject
        dataset = CocoKeypointDataset(str(ann_file), "coco")
    pipeline = build_pipeline(standard_topdown_pipeline(False), get_host().registries, input_size=INPUT,
                              jpeg_decode=jpeg_decode)
    return PipelineDataset(dataset, pipeline)


def evaluation_images(ann_file: Path, jpeg_decode: str) -> torch.Tensor:
    """Every crop of ``ann_file``'s dataset as the engine gets it on the CPU: collated, and the
    JPEGs ``jpeg_decode="device"`` deferred decoded when the batch moves to the device."""
    samples = evaluation_samples(ann_file, jpeg_decode)
    batch = move_to_device(collate_samples([samples[i] for i in range(len(samples))]), torch.device("cpu"))
    assert "jpeg" not in batch and "jpeg_crop_to_file" not in batch
    return batch["image"]


def _damaged_case(kind: str) -> tuple[str, bytes]:
    image = photo()
    if kind == "truncated-jpeg":
        data = jpeg(image)
        return "truncated.jpg", data[: len(data) * 2 // 3]
    if kind == "flipped-scan-bytes":
        return "flipped.jpg", flip_scan_bytes(jpeg(image))
    return "bad-crc.png", bad_png_crc(png(image))


@pytest.mark.parametrize("kind", ["truncated-jpeg", "flipped-scan-bytes", "png-bad-crc"])
def test_a_damaged_image_is_a_data_error_naming_file_and_image_id(tmp_path: Path, kind: str) -> None:
    name, damaged = _damaged_case(kind)
    good = jpeg(photo(seed=1))
    ann_file = write_dataset(tmp_path, {"good.jpg": good, name: damaged}, {"good.jpg": (160, 120), name: (160, 120)})
    samples = evaluation_samples(ann_file)
    assert samples[0]["image"].shape == (3, INPUT[1], INPUT[0])  # the intact image still reads
    with pytest.raises(DataError) as caught:
        samples[1]
    message = str(caught.value)
    assert str(tmp_path / name) in message and "(image id 102)" in message
    assert ("corrupt JPEG" in message) if name.endswith(".jpg") else ("corrupt or not an image" in message)


def test_damaged_scan_data_is_what_opencv_alone_decodes_to_garbage() -> None:
    """The hazard the check closes: libjpeg (OpenCV's) decodes the flipped bytes into an image,
    with only a warning on stderr; posecore refuses it and names libjpeg's complaint."""
    damaged = flip_scan_bytes(jpeg(photo()))
    garbage = cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_COLOR)
    assert garbage is not None and garbage.shape == (120, 160, 3)
    with pytest.raises(DataError, match=r"flipped\.jpg \(image id 7\) is a corrupt JPEG: libjpeg reports 'Corrupt JPEG"):
        decode_image(damaged, source="flipped.jpg", image_id=7)


def test_an_image_of_another_size_than_its_record_is_an_error(tmp_path: Path) -> None:
    ann_file = write_dataset(tmp_path, {"small.jpg": jpeg(photo(100, 150))}, {"small.jpg": (160, 120)})
    with pytest.raises(DataError) as caught:
        evaluation_samples(ann_file)[0]
    message = str(caught.value)
    assert str(tmp_path / "small.jpg") in message and "(image id 101)" in message
    assert "is 150x100 pixels but its annotation gives width 160 and height 120" in message
    assert "correct 'width' and 'height'" in message


def test_a_record_without_width_and_height_is_not_size_checked(tmp_path: Path) -> None:
    ann_file = write_dataset(tmp_path, {"any.jpg": jpeg(photo(100, 150))}, {"any.jpg": None})
    assert evaluation_samples(ann_file)[0]["image"].shape == (3, INPUT[1], INPUT[0])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_opencv_applies_it(orientation: int) -> None:
    """simplejpeg's path turns the pixels as OpenCV's ``imdecode`` does, for all eight tags."""
    data = with_orientation(photo(40, 60), orientation)
    reference = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    ours = decode_image(data)
    assert ours.shape == ((60, 40, 3) if orientation >= 5 else (40, 60, 3))
    np.testing.assert_array_equal(ours, reference)


def test_every_decoder_path_turns_the_image_the_same_way() -> None:
    """A PNG goes to OpenCV, a JPEG to simplejpeg: the same tag gives the same upright picture."""
    image = photo(40, 60)
    from_png = decode_image(with_orientation(image, 6, "PNG"))
    np.testing.assert_array_equal(from_png, np.rot90(image, -1))  # orientation 6: turn 90 degrees clockwise
    from_jpeg = decode_image(with_orientation(image, 6))
    assert from_jpeg.shape == from_png.shape == (60, 40, 3)
    assert np.abs(from_jpeg.astype(int) - from_png).mean() < 3  # JPEG's loss, not a different turn


def test_a_turned_jpeg_loads_upright_and_the_size_check_uses_the_upright_size(tmp_path: Path) -> None:
    sideways = with_orientation(photo(120, 160), 6)  # stored 160x120, shown 120x160
    ann_file = write_dataset(tmp_path, {"upright.jpg": sideways, "stored.jpg": sideways},
                             {"upright.jpg": (120, 160), "stored.jpg": (160, 120)})
    samples = evaluation_samples(ann_file)
    assert samples[0]["image"].shape == (3, INPUT[1], INPUT[0])
    with pytest.raises(DataError, match=r"is 120x160 pixels but its annotation gives width 160 and height 120.*"
                                        r"turned by 90 degrees.*EXIF orientation tag"):
        samples[1]


# -- data.jpeg_decode: device (the loader reads the file; the engine decodes it where the model runs) --


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_jpeg_decoded_on_the_device_is_turned_and_cropped_as_the_loader_does(tmp_path: Path, orientation: int) -> None:
    """The EXIF orientation becomes part of the crop's matrix instead of a turn of the pixels:
    the same crop, to the rounding of OpenCV's 1/32-pixel sampling positions."""
    turned = orientation >= 5
    ann_file = write_dataset(tmp_path, {"turned.jpg": with_orientation(photo(120, 160), orientation)},
                             {"turned.jpg": (120, 160) if turned else (160, 120)})
    loader, device = evaluation_images(ann_file, "loader"), evaluation_images(ann_file, "device")
    assert device.dtype == torch.uint8 and device.shape == loader.shape == (1, 3, INPUT[1], INPUT[0])
    assert device.float().std() > 20  # a picture, not the zeros the loader leaves in its place
    assert (device.int() - loader.int()).abs().max() <= 1


def test_device_decoding_leaves_other_formats_to_the_loader(tmp_path: Path) -> None:
    """A PNG in a batch of JPEGs is decoded by the loader (its ``jpeg`` is empty) and kept as it is."""
    files = {"a.jpg": jpeg(photo(seed=1)), "b.png": png(photo(seed=2)), "c.jpg": jpeg(photo(seed=3))}
    ann_file = write_dataset(tmp_path, files, dict.fromkeys(files, (160, 120)))
    samples = evaluation_samples(ann_file, "device")
    assert [len(samples[i]["jpeg"]) > 0 for i in range(3)] == [True, False, True]
    loader, device = evaluation_images(ann_file, "loader"), evaluation_images(ann_file, "device")
    assert torch.equal(device[1], loader[1])
    assert (device.int() - loader.int()).abs().max() <= 1


def test_a_jpeg_of_another_size_fails_in_the_loader_when_decoding_is_deferred(tmp_path: Path) -> None:
    """The size check reads the JPEG's frame header, so the error comes from the loader, as before."""
    ann_file = write_dataset(tmp_path, {"small.jpg": jpeg(photo(100, 150))}, {"small.jpg": (160, 120)})
    with pytest.raises(DataError, match=r"small\.jpg \(image id 101\) is 150x100 pixels but its annotation gives "
                                        r"width 160 and height 120"):
        evaluation_samples(ann_file, "device")[0]


def test_a_truncated_jpeg_decoded_on_the_device_is_a_data_error_naming_file_and_image_id(tmp_path: Path) -> None:
    """(Damaged entropy-coded data that libjpeg only warns about is not caught on the device: the
    option's documentation says so, and tells to check a new dataset with the loader first.)"""
    name, damaged = _damaged_case("truncated-jpeg")
    files = {"good.jpg": jpeg(photo(seed=1)), name: damaged}
    ann_file = write_dataset(tmp_path, files, dict.fromkeys(files, (160, 120)))
    with pytest.raises(DataError) as caught:
        evaluation_images(ann_file, "device")
    message = str(caught.value)
    assert f"{tmp_path / name} (image id 102) is a JPEG that cannot be decoded on cpu" in message
    assert "data.jpeg_decode=loader" in message


def test_a_jpeg_whose_header_is_damaged_fails_in_the_loader_when_decoding_is_deferred(tmp_path: Path) -> None:
    """No frame header to read the size from: the loader's own decoder reads it, and refuses it."""
    damaged = b"\xff\xd8" + bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))
    ann_file = write_dataset(tmp_path, {"noise.jpg": damaged}, {"noise.jpg": (160, 120)})
    with pytest.raises(DataError, match=r"noise\.jpg \(image id 101\)"):
        evaluation_samples(ann_file, "device")[0]
