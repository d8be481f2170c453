"""Building transform pipelines from config, and the standard top-down pipelines.

A pipeline is a list of ``transforms`` component specs. Arguments that belong to the whole
experiment (the codec, the input size, UDP or not) are not repeated in every spec: they are
passed as context and given to each transform whose factory accepts them and whose spec does
not set them.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from posecore.config._spec import ComponentSpec
from posecore.data._transforms import Compose
from posecore._registry import PIPELINE_CONTEXT

__all__ = ["build_pipeline", "standard_topdown_pipeline"]


def standard_topdown_pipeline(train: bool, *, half_body: bool = True, scale_factor: float = 0.35,
                              rotate_factor: float = 45.0, shift_factor: float = 0.0,
                              shift_prob: float = 0.0) -> list[ComponentSpec]:
    """The top-down pipeline every method here trains and tests with (mmpose 0.x order):
    box -> [flip, half-body, random scale/rotation/shift] -> affine -> [target] -> pack.

    ``shift_factor``/``shift_prob`` move the box centre (see
    :class:`~posecore.data._transforms.RandomBBoxTransform`). mmpose 0.x's COCO-style and InterHand
    loaders instead move the centre of 30% of the training boxes once, when the dataset is built,
    by up to 0.2 of the unpadded box: ``shift_prob=0.3, shift_factor=0.16`` (0.2 / 1.25 of the
    padded box) draws from the same distribution, anew every epoch."""
    specs = [ComponentSpec("get_bbox_center_scale")]
    if train:
        specs.append(ComponentSpec("random_flip"))
        if half_body:
            specs.append(ComponentSpec("random_half_body"))
        bbox_args = {"scale_factor": scale_factor, "rotate_factor": rotate_factor}
        if shift_prob:
            bbox_args.update(shift_factor=shift_factor, shift_prob=shift_prob)
        specs.append(ComponentSpec("random_bbox_transform", bbox_args))
    specs.append(ComponentSpec("topdown_affine"))
    if train:
        specs.append(ComponentSpec("generate_target"))
    specs.append(ComponentSpec("pack_sample"))
    return specs


def build_pipeline(specs: Sequence[ComponentSpec | dict[str, Any] | str], registries: Any = None,
                   **context: Any) -> Compose:
    """Build the transforms of ``specs`` (from ``registries.transforms``, default: the loaded
    plugins'), giving each the ``context`` values (``codec=``, ``input_size=``, ``use_udp=``)
    its factory accepts and its spec leaves unset."""
    if registries is None:
        from posecore._plugins import get_host

        registries = get_host().registries
    unknown = set(context) - set(PIPELINE_CONTEXT)
    if unknown:
        raise TypeError(f"build_pipeline: unknown context {sorted(unknown)}; the engine provides {PIPELINE_CONTEXT}")
    transforms = []
    for raw in specs:
        spec = ComponentSpec.parse(raw)
        factory = registries.transforms.get(spec.type).resolve()
        params = inspect.signature(factory).parameters
        extra = {key: value for key, value in context.items() if key in params and key not in spec.args}
        transforms.append(registries.transforms.build(spec, **extra))
    return Compose(transforms)
