"""The template's tests: posecore's contract checks for every component it registers, plus the
behaviour that is specific to this plugin. Copy them along with the plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import posecore
from posecore.testing import ContractCase, contract_cases


@pytest.mark.parametrize("case", contract_cases(plugin="template"), ids=str)
def test_contract(case: ContractCase, tmp_path: Path) -> None:
    case.run(tmp_path)


def test_contract_cases_cover_everything_the_template_registers() -> None:
    checked = {(case.kind, case.name) for case in contract_cases(plugin="template")}
    assert checked == {
        ("backbones", "template_tiny_conv"),
        ("heads", "template_tiny_heatmap"),
        ("presets", "template-tiny"),
    }


def test_default_preset_is_template_tiny() -> None:
    assert posecore.load_plugins().default_preset("template").name == "template-tiny"


def test_template_tiny_builds_a_model_that_predicts_every_keypoint() -> None:
    config = posecore.get_preset("template-tiny")
    torch.manual_seed(0)
    model = posecore.build_model(config)
    model.eval()
    result = model.predict(model.example_batch(2))
    num_keypoints = model.head.num_keypoints
    assert num_keypoints == 17
    assert tuple(result.keypoints.shape) == (2, num_keypoints, 2)
    assert tuple(result.scores.shape) == (2, num_keypoints)
    width, height = config.model.args["input_size"]
    assert result.heatmaps is not None and tuple(result.heatmaps.shape) == (2, num_keypoints, height // 8, width // 8)
    assert bool((result.keypoints >= 0).all())
    assert bool((result.keypoints[..., 0] <= width).all() and (result.keypoints[..., 1] <= height).all())


def test_backbone_output_has_the_declared_channels_and_stride() -> None:
    backbone = posecore.build("backbones", {"type": "template_tiny_conv", "width": 8, "num_stages": 3})
    assert backbone.out_channels == 32 and backbone.stride == 8
    features = backbone(torch.randn(2, 3, 64, 48))
    assert tuple(features.shape) == (2, 32, 8, 6)


def test_head_decodes_the_heatmap_peak_to_input_pixels() -> None:
    head = posecore.build(
        "heads", {"type": "template_tiny_heatmap", "in_channels": 4, "num_keypoints": 2, "input_stride": 8}
    )
    heatmaps = torch.zeros(1, 2, 8, 6)
    heatmaps[0, 0, 3, 5] = 0.9  # indexed [b, k, y, x]: keypoint 0 peaks at cell x=5, y=3
    heatmaps[0, 1, 0, 1] = 0.4
    keypoints, scores = head.decode(heatmaps)
    # The centre of cell (x, y) at stride 8 is input pixel ((x + 0.5) * 8, (y + 0.5) * 8).
    assert keypoints.tolist() == [[[44.0, 28.0], [12.0, 4.0]]]
    assert torch.allclose(scores, torch.tensor([[0.9, 0.4]]))


def test_config_is_checked_against_the_factory_signature() -> None:
    with pytest.raises(posecore.ConfigError, match="did you mean 'width'"):
        posecore.build("backbones", {"type": "template_tiny_conv", "widht": 8})
    backbone = posecore.build("backbones", {"type": "template_tiny_conv", "width": "8"})
    assert backbone.out_channels == 8 * 2**2, "'8' from the command line must arrive as the int 8"


def test_invalid_sizes_are_refused_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="TinyConvBackbone.width"):
        posecore.build("backbones", {"type": "template_tiny_conv", "width": 0})
