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


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory, synthetic_cache: str) -> Path:
    """A posecore checkpoint of the small synthetic model (random weights), carrying its config."""
    import torch
    from poseanything_helpers import small_synthetic_config

    import posecore
    from posecore._checkpoint import save_checkpoint
    from posecore.config import dump_config

    config = small_synthetic_config(synthetic_cache)
    torch.manual_seed(0)
    model = posecore.build_model(config)
    path = tmp_path_factory.mktemp("weights") / "best.pth"
    save_checkpoint({"state_dict": model.state_dict(), "meta": {"config": dump_config(config)}}, path)
    return path
