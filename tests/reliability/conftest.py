"""Every test in this folder is a bad-input or fault case: ``pytest -m reliability`` runs them with
the older ones marked elsewhere in the suite (docs/reliability.md lists what they promise)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.reliability)
