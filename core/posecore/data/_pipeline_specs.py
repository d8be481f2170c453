"""The standard top-down pipelines as transform specs.

Specs, not transforms: presets build them while plugins are discovered, so this module imports
no torch (the transforms themselves are in :mod:`posecore.data._transforms`).
"""

from __future__ import annotations

from posecore.config._spec import ComponentSpec

__all__ = ["standard_topdown_pipeline"]


def standard_topdown_pipeline(train: bool, *, half_body: bool = True, scale_factor: float = 0.35,
                              rotate_factor: float = 45.0, shift_factor: float = 0.0,
                              shift_prob: float = 0.0, shift_once: bool = False) -> list[ComponentSpec]:
    """The top-down pipeline every method here trains and tests with (mmpose 0.x order):
    box -> [centre shift, flip, half-body, random scale/rotation/shift] -> affine -> [target] -> pack.

    ``shift_factor``/``shift_prob`` move the box centre. By default anew every epoch, after the
    half-body crop, as mmpose 1.x does (:class:`~posecore.data._transforms.RandomBBoxTransform`).
    ``shift_once=True`` is mmpose 0.x's: its COCO-style and InterHand loaders move the centre of
    30% of the training boxes by up to 0.2 of the unpadded box once, when the dataset is built,
    before the flip and the half-body crop, which discards it
    (:class:`~posecore.data._transforms.CenterShift`). ``shift_prob=0.3, shift_factor=0.16``
    (0.2 / 1.25 of the padded box) is that distribution."""
    specs = [ComponentSpec("get_bbox_center_scale")]
    if train:
        if shift_prob and shift_once:
            specs.append(ComponentSpec("center_shift", {"factor": shift_factor, "prob": shift_prob, "once": True}))
        specs.append(ComponentSpec("random_flip"))
        if half_body:
            specs.append(ComponentSpec("random_half_body"))
        bbox_args = {"scale_factor": scale_factor, "rotate_factor": rotate_factor}
        if shift_prob and not shift_once:
            bbox_args.update(shift_factor=shift_factor, shift_prob=shift_prob)
        specs.append(ComponentSpec("random_bbox_transform", bbox_args))
    specs.append(ComponentSpec("topdown_affine"))
    if train:
        specs.append(ComponentSpec("generate_target"))
    specs.append(ComponentSpec("pack_sample"))
    return specs
