"""The released demo's crop: ``Resize_Pad`` of orhir/PoseAnything's ``demo.py``, for
``FewShotPose(original_demo_geometry=True)`` and ``posecore predict --original-demo-geometry``.

The demo never crops a box. It pads the whole image to a square along its shorter side, by
``(long - short) // 2`` on each side (so an odd difference leaves it one pixel short of square),
and resizes the result to the model's input, bilinearly and without antialiasing (torchvision
0.15's default for tensors). An image whose height/width rounds to 1.00 is resized without
padding. The padding is 0 *after* the ImageNet normalisation, i.e. the mean colour.

Here the same geometry is a transform of the predictor's pipeline: the region (the whole image,
or a given box) is padded with the model's mean colour and resized with OpenCV's bilinear
(half-pixel centres, as torch's ``align_corners=False``), and the sample's ``warp`` is the exact
pixel map, so keypoints map back to the original image like any other crop. What differs from
the demo: the images stay uint8 until the model normalises them, so the crop is rounded to whole
grey levels and the padding is the mean colour rounded (at most 0.5 / 255 off, 0.009 after
normalisation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from posecore.data import read_image

__all__ = ["ResizePad", "resize_pad_geometry"]


def resize_pad_geometry(width: int, height: int, output_size: tuple[int, int]) -> tuple[tuple[int, int], np.ndarray]:
    """The demo's padding of a ``width`` x ``height`` image and its pixel map to ``output_size``.

    Returns:
        ``(left, top)``: the columns added on the left and on the right, the rows added at the
        top and at the bottom; and the (2, 3) matrix from the unpadded image's pixel coordinates
        to the output's (pixel centres aligned, as a bilinear resize samples them).
    """
    ratio = height / width
    left = top = 0
    if round(ratio, 2) != 1:
        if ratio > 1:
            left = (height - width) // 2
        else:
            top = (width - height) // 2
    scale_x = output_size[0] / (width + 2 * left)
    scale_y = output_size[1] / (height + 2 * top)
    matrix = np.array([[scale_x, 0.0, (left + 0.5) * scale_x - 0.5],
                       [0.0, scale_y, (top + 0.5) * scale_y - 0.5]])
    return (left, top), matrix


class ResizePad:
    """``(sample, rng) -> sample``: the demo's crop of the sample's box (whole pixels from
    ``x1, y1`` to ``x2, y2``, the whole image for ``[0, 0, W - 1, H - 1]``), in place of the
    test pipeline's box padding and affine warp. Adds what that warp adds: ``image`` (the crop),
    ``keypoints`` in its pixels, ``image_keypoints``, ``warp`` and ``flipped``.

    Args:
        input_size: (width, height) of the model's input.
        fill: the padding's RGB colour (the model's normalisation mean: 0 once normalised).
    """

    def __init__(self, input_size: tuple[int, int], fill: tuple[int, int, int]) -> None:
        import cv2

        self._cv2 = cv2
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.fill = tuple(int(v) for v in fill)

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        cv2 = self._cv2
        image = sample.get("image")
        if image is None:
            image = read_image(sample["image_path"], image_id=sample.get("image_id"))
        x1, y1, x2, y2 = (int(round(float(v))) for v in sample["bbox"][:4])
        x1, y1 = max(x1, 0), max(y1, 0)
        region = image[y1:y2 + 1, x1:x2 + 1]
        height, width = region.shape[:2]
        (left, top), matrix = resize_pad_geometry(width, height, self.input_size)
        padded = cv2.copyMakeBorder(region, top, top, left, left, cv2.BORDER_CONSTANT, value=self.fill)
        sample["image"] = cv2.resize(padded, self.input_size, interpolation=cv2.INTER_LINEAR)
        warp = matrix.copy()
        warp[:, 2] -= matrix[:, :2] @ np.array([x1, y1], dtype=np.float64)
        keypoints = np.asarray(sample["keypoints"], dtype=np.float64)
        sample["image_keypoints"] = sample["keypoints"]
        sample["keypoints"] = (keypoints @ warp[:, :2].T + warp[:, 2]).astype(np.float32)
        sample["warp"] = warp.astype(np.float32)
        sample["flipped"] = False
        return sample
