"""The posecore hooks of plugin ``template``.

posecore finds this module through the entry point ``template`` in the group
``posecore.plugins`` (see ``pyproject.toml``). Each hook returns declarations only; factories
and preset configs are ``"module:attribute"`` strings, so ``posecore plugins`` can list this
plugin without importing torch or building anything. The hook reference is
``core/posecore/hookspecs.py``.
"""

from __future__ import annotations

import posecore
from posecore import Component, Preset

# The plugin API this module was written against, as a literal: posecore refuses plugins that
# ask for a newer API than it implements, and reports the mismatch instead of failing later.
POSECORE_PLUGIN_API = 1


@posecore.hookimpl
def posecore_backbones() -> list[Component]:
    return [
        Component(
            "template_tiny_conv",
            "posecore_template.models:TinyConvBackbone",
            "template: stride-2 conv + BN + ReLU stages (a stand-in for a real backbone)",
            example={"width": 4, "num_stages": 2},
        )
    ]


@posecore.hookimpl
def posecore_heads() -> list[Component]:
    return [
        Component(
            "template_tiny_heatmap",
            "posecore_template.models:TinyHeatmapHead",
            "template: one 1x1 convolution to K heatmaps, argmax decoding",
            example={"in_channels": 8, "num_keypoints": 3, "input_stride": 4},
        )
    ]


@posecore.hookimpl
def posecore_presets() -> list[Preset]:
    return [
        Preset(
            "template-tiny",
            "posecore_template.presets:template_tiny",
            "template: tiny conv backbone + 1x1 heatmap head on COCO 192x256 (no published figure)",
            default=True,
        )
    ]
