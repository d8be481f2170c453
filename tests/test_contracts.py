"""Registry-driven contract checks: every component of every installed plugin, built and run.

As in timm, a plugin gets these tests for free the moment it registers a component.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from posecore._plugins import load_plugins
from posecore.testing import ContractCase, contract_cases

HOST = load_plugins(autoload=True, strict=True)
CASES = contract_cases(host=HOST)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_component_contract(case: ContractCase, tmp_path: Path) -> None:
    case.run(tmp_path)


def test_every_component_kind_is_exercised() -> None:
    kinds = {case.kind for case in CASES}
    assert {"backbones", "heads", "datasets", "models", "presets"} <= kinds


def test_a_broken_component_fails_its_check(tmp_path: Path) -> None:
    """The checks must be able to fail: a head that decodes the wrong number of keypoints."""
    from torch import nn

    import posecore
    from posecore.testing import check_head

    class WrongCountHead(nn.Module):
        def __init__(self, in_channels: int = 4, num_keypoints: int = 3) -> None:
            super().__init__()
            self.in_channels, self.num_keypoints = in_channels, num_keypoints
            self.conv = nn.Conv2d(in_channels, num_keypoints, 1)

        def forward(self, features):
            return self.conv(features)

        def decode(self, heatmaps):
            from posecore.codecs import heatmap_argmax

            coords, scores = heatmap_argmax(heatmaps[:, :-1])
            return coords, scores

    host = load_plugins(autoload=False)
    host.registries.heads.add(posecore.Component("wrong_count", WrongCountHead), "test")
    with pytest.raises(AssertionError, match="decode gave keypoints"):
        check_head(host.registries, "wrong_count", tmp_path)
