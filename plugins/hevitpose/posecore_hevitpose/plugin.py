"""The posecore hooks of plugin ``hevitpose``: HEViTPose (Wu, Tan, Li; arXiv 2311.13615), RECONSTRUCTED.

No code or weights were published; the backbone is rebuilt from the paper's figure and its parent
designs (EfficientViT, PVTv2), sized by ``posecore_hevitpose.search`` to the paper's parameter and
GFLOPs table. The model is core's ``topdown_heatmap`` with core's ``heatmap_deconv`` head and codecs.
Published figures: the authors' README (T1sweet/HEViTPose), which supersedes older placeholder tables.
"""

from __future__ import annotations

import posecore
from posecore import Component, Preset, PublishedResult

POSECORE_PLUGIN_API = 1

_SOURCE = "Wu, Tan, Li, HEViTPose (arXiv 2311.13615; Sci. Rep. 2026); T1sweet/HEViTPose README"
_RECONSTRUCTION = ("RECONSTRUCTION: no code or weights were published; widths/depths/groups chosen to match the "
                   "paper's params and GFLOPs; training recipe is mmpose 0.29's default (ours)")
#: size -> (params M, GFLOPs, MPII val PCKh@0.5, MPII test PCKh@0.5)
TABLE = {"T": (3.21, 1.75, 87.2, 88.7), "S": (5.88, 3.64, 88.5, 90.1), "B": (10.63, 5.58, 89.4, 90.7)}


@posecore.hookimpl
def posecore_backbones() -> list[Component]:
    return [
        Component(
            "hevitpose",
            "posecore_hevitpose.hevit:HEViT",
            "HEViTPose backbone (reconstructed): OPE, EfficientViT sandwich blocks, cascaded group "
            "spatial-reduction attention, strides 4/8/16",
            example={"arch": "T", "widths": [16, 32, 32], "depths": [1, 1, 1], "groups": [1, 2, 2],
                     "heads": [1, 1, 1], "sr_ratios": [4, 2, 1], "drop_path_rate": 0.1},
        )
    ]


@posecore.hookimpl
def posecore_presets() -> list[Preset]:
    presets = [
        Preset(
            "hevitpose-tiny-synthetic",
            "posecore_hevitpose.presets:tiny_synthetic",
            "HEViTPose (a small reconstructed HEViT) end to end on synthetic people: no data needed, a few CPU minutes",
            default=True,
        )
    ]
    for size, (params, gflops, val, test) in TABLE.items():
        presets.append(Preset(
            f"hevitpose-{size.lower()}-mpii-256x256",
            f"posecore_hevitpose.presets:hevitpose_{size.lower()}_mpii",
            f"HEViTPose-{size} on MPII 256x256 ({params}M params, {gflops} GFLOPs in the paper). {_RECONSTRUCTION}",
            published=[
                PublishedResult("MPII", "val", "Mean", val, f"{_SOURCE}; PCKh@0.5, GT boxes"),
                PublishedResult("MPII", "test", "PCKh@0.5", test,
                                f"{_SOURCE}; the MPII benchmark server scores the test set, posecore does not"),
            ],
        ))
    presets.append(Preset(
        "hevitpose-b-coco-256x256",
        "posecore_hevitpose.presets:hevitpose_b_coco",
        f"HEViTPose-B on COCO 256x256. {_RECONSTRUCTION}",
        published=[
            PublishedResult("COCO", "val2017", "AP", 75.4, f"{_SOURCE}; box source not stated (possibly GT boxes)"),
            PublishedResult("COCO", "test-dev", "AP", 72.6, f"{_SOURCE}; the evaluation server scores it"),
        ],
    ))
    return presets
