"""Fixtures of the plugin's tests; the helpers they share are in ``poseanything_helpers.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # poseanything_helpers.py, released_layout.py


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One cache folder for the synthetic creatures of the whole session."""
    return str(tmp_path_factory.mktemp("synthetic-cache"))
