"""posecore's contract checks for everything the plugin registers."""

from __future__ import annotations

from pathlib import Path

import pytest

from posecore.testing import ContractCase, contract_cases


@pytest.mark.parametrize("case", contract_cases(plugin="hevitpose"), ids=str)
def test_contract(case: ContractCase, tmp_path: Path) -> None:
    case.run(tmp_path)
