"""Fixtures of the plugin's tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # pgvl_released_layout.py
