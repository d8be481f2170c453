"""JPEG decoding and the top-down crop on the model's device (``data.jpeg_decode: device``).

On a GPU, decoding JPEGs in the data-loader workers is what bounds training (about 1.5 ms of a
COCO training sample's 2 ms on one core here). With ``jpeg_decode: device`` the workers only
read a baseline JPEG file, check its header and compute the crop's matrix (progressive and other
JPEGs they decode as before: nvJPEG would decode those one at a time, Huffman stage on the host)
(:class:`~posecore.data._transforms.TopdownAffine` leaves ``jpeg`` and ``jpeg_crop_to_file`` in the
sample and a zero image in its place); here, after the batch moves to the device, every such
image of the batch (and of its few-shot support samples) is decoded in one call of torchvision's
``decode_jpeg`` (nvJPEG on CUDA, libjpeg-turbo on the CPU), each file once however many crops
come from it, and warped into its crop by one batched bilinear resampling.

The crop is OpenCV's ``warpAffine`` (bilinear, zero border) computed in float and rounded:
pixels differ from the CPU path's by at most one level (OpenCV rounds sampling positions to
1/32 pixel). libjpeg-turbo decodes the same pixels as the CPU path's simplejpeg; nvJPEG's IDCT
may differ by a few levels. torchvision's decoders (nvJPEG, and libjpeg-turbo without the
loader's strict mode) decode some damaged compressed data that the loader refuses, and trust the
frame header's size; a truncated file is an error naming it (checked with libjpeg-turbo; nvJPEG
not yet verified). Check a new dataset once with the default ``jpeg_decode: loader``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from posecore._errors import DataError

__all__ = ["decode_deferred_jpegs", "warp_crops"]


def decode_deferred_jpegs(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Decode the JPEGs whose crops ``batch`` defers and write the crops into its images (and
    into its support samples' images, every one of which then lies on ``device`` as the
    batch's own images do), on ``device``; drop the deferral keys. A batch without them is
    returned as it is. A file several crops come from (the people of one picture) is decoded once."""
    items = list(_deferred(batch))
    for holder, row, _, _ in items:
        if row is None:  # a support sample: the loader moves nothing inside lists
            holder["image"] = torch.as_tensor(holder["image"]).to(device)
    deferred = [item for item in items if len(item[2])]
    if not deferred:
        return batch
    files: dict[str | bytes, int] = {}  # one decode per file, known by its path (hashing bytes costs ~0.1 ms a file)
    encoded, names, sources = [], [], []
    for holder, row, data, _ in deferred:
        key = _path(holder, row) or data
        if key not in files:
            files[key] = len(files)
            encoded.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
            names.append(_name(holder, row))
        sources.append(files[key])
    images = _decode(encoded, device, names)
    holder, row = deferred[0][:2]
    height, width = (holder["image"] if row is None else holder["image"][row]).shape[-2:]
    samplings = torch.stack([torch.as_tensor(sampling, device=device) for *_, sampling in deferred])
    crops = warp_crops(images, samplings, (width, height), sources=sources)
    rows = [row for holder, row, _, _ in deferred if row is not None]
    if rows:  # the batch's own rows come first
        batch["image"][torch.tensor(rows, device=batch["image"].device)] = crops[: len(rows)].to(batch["image"].device)
    for (holder, _, _, _), crop in zip(deferred[len(rows):], crops[len(rows):], strict=True):
        holder["image"] = crop
    return batch


def warp_crops(images: Sequence[torch.Tensor], crop_to_image: torch.Tensor, size: tuple[int, int],
               sources: Sequence[int] | None = None) -> torch.Tensor:
    """Cut (3, h, w) crops, ``size = (w, h)``, from images by 2x3 crop-to-image matrices (the
    inverses of the matrices ``cv2.warpAffine`` takes), as ``cv2.warpAffine`` does with bilinear
    sampling and a zero border. Crop ``i`` is cut from the (3, H, W) uint8 image ``sources[i]``
    (default: image ``i``); the images may differ in size. Returns (N, 3, h, w) uint8 on the
    images' device.

    All crops are sampled in one gather over the images laid end to end, so a batch costs a
    handful of kernels whatever its size, instead of a resampling call per image. The loader
    inverts the matrices (in float64, with the crop's other geometry), so the device only samples.
    """
    device = images[0].device
    width, height = size
    source = torch.as_tensor(range(len(images)) if sources is None else sources, device=device)
    inverse = torch.as_tensor(crop_to_image).to(device=device, dtype=torch.float32)
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                            torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    source_x = inverse[:, 0, 0, None, None] * xs + inverse[:, 0, 1, None, None] * ys + inverse[:, 0, 2, None, None]
    source_y = inverse[:, 1, 0, None, None] * xs + inverse[:, 1, 1, None, None] * ys + inverse[:, 1, 2, None, None]
    image_heights = torch.tensor([image.shape[-2] for image in images], device=device)
    image_widths = torch.tensor([image.shape[-1] for image in images], device=device)
    image_starts = torch.cumsum(image_heights * image_widths, 0) - image_heights * image_widths
    heights, widths = image_heights[source][:, None, None], image_widths[source][:, None, None]
    starts = image_starts[source][:, None, None]  # where each crop's image begins in ``pixels``
    pixels = torch.cat([image.reshape(3, -1) for image in images], 1)
    left, top = source_x.floor(), source_y.floor()
    right_weight, bottom_weight = source_x - left, source_y - top
    left, top = left.long(), top.long()
    crops = torch.zeros(3, len(source), height, width, device=device)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        x, y = left + dx, top + dy
        inside = (x >= 0) & (x < widths) & (y >= 0) & (y < heights)
        index = starts + y.clamp(min=0).minimum(heights - 1) * widths + x.clamp(min=0).minimum(widths - 1)
        weight = (right_weight if dx else 1 - right_weight) * (bottom_weight if dy else 1 - bottom_weight)
        crops += pixels[:, index].float() * (weight * inside)
    return crops.round_().clamp_(0, 255).to(torch.uint8).transpose(0, 1)


def _deferred(batch: dict[str, Any]) -> Iterator[tuple[dict[str, Any], int | None, Any, Any]]:
    """``(holder, row, jpeg, crop_to_file)`` of every deferred image, the deferral keys popped: the
    batch's rows first (``row`` its index), then each support sample's image (``row`` None). An
    empty ``jpeg`` (``b""``) is an image the loader decoded itself (not a JPEG nvJPEG reads)."""
    if "jpeg" in batch:
        jpegs, samplings = batch.pop("jpeg"), batch.pop("jpeg_crop_to_file")
        for row, data in enumerate(jpegs):
            yield batch, row, data, samplings[row]
    for supports in batch.get("support") or ():
        for sample in supports:
            if "jpeg" in sample:
                yield sample, None, sample.pop("jpeg"), sample.pop("jpeg_crop_to_file")


def _decode(encoded: list[torch.Tensor], device: torch.device, names: list[str]) -> list[torch.Tensor]:
    """(3, H, W) uint8 RGB images on ``device``; a file that does not decode is a DataError naming it."""
    try:
        return _decode_jpeg(encoded, device)
    except RuntimeError:
        pass
    for data, name in zip(encoded, names, strict=True):  # find the file that failed
        try:
            _decode_jpeg([data], device)
        except RuntimeError as exc:
            raise DataError(f"image {name} is a JPEG that cannot be decoded on {device} ({exc}). Replace the file, "
                            "or decode in the data loader (data.jpeg_decode=loader), whose decoder says more") from None
    raise DataError(f"a batch of {len(encoded)} JPEGs failed to decode on {device}, though each decodes alone")


def _decode_jpeg(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """torchvision's ``decode_jpeg`` on a list (one nvJPEG batch on CUDA). torchvision 0.29
    deprecates its image codecs for TorchCodec's (same call, not a dependency here); the warning
    would repeat every batch."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The image decoding and encoding capabilities", DeprecationWarning)
        return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)


def _path(holder: dict[str, Any], row: int | None) -> str | None:
    path = holder.get("image_path")
    return path if row is None or path is None else path[row]


def _name(holder: dict[str, Any], row: int | None) -> str:
    image_id = holder.get("image_id")
    if row is not None and image_id is not None:
        image_id = image_id[row]
    return f"{_path(holder, row) or '<no path>'}" + ("" if image_id is None else f" (image id {int(image_id)})")
