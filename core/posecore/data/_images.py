"""Reading images fast: libjpeg-turbo through simplejpeg, OpenCV for everything else.

JPEG decoding is about half the cost of a top-down training sample. simplejpeg decodes COCO
images about 1.5x faster than OpenCV's ``imread`` here (1.5 ms against 2.2 ms for 640x480) and
returns RGB directly, with the same pixels. Decoding at 1/2 or 1/4 scale in the DCT domain was
measured too and saves under 10%: entropy decoding dominates, so it is not worth a second code
path. Anything simplejpeg cannot read (PNG, CMYK JPEG, ...) goes to OpenCV.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import simplejpeg

from posecore._errors import DataError

__all__ = ["decode_image", "read_image"]

_JPEG_MAGIC = b"\xff\xd8"


def decode_image(data: bytes, *, source: str = "<bytes>", image_id: object = None) -> np.ndarray:
    """Decode image bytes to an (H, W, 3) RGB uint8 array; grey images get three channels."""
    if data[:2] == _JPEG_MAGIC:
        try:
            return simplejpeg.decode_jpeg(data, "RGB")
        except ValueError:
            pass  # e.g. CMYK or lossless JPEG: OpenCV handles them below
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise DataError(f"cannot decode image {source}{_for_image(image_id)}: the file is corrupt or not an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | Path, *, image_id: object = None) -> np.ndarray:
    """Read an image file as (H, W, 3) RGB uint8; a missing or corrupt file is a
    :class:`~posecore._errors.DataError` naming the path and the image id."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read image {path}{_for_image(image_id)}: {exc.strerror or exc}") from None
    return decode_image(data, source=str(path), image_id=image_id)


def _for_image(image_id: object) -> str:
    return "" if image_id is None else f" (image id {image_id})"
