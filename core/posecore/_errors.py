"""Exceptions posecore raises for people to read.

Every error says what was wrong, where (file, field, plugin, index) and how to fix it. They all
derive from :class:`PosecoreError` so the CLI can print them as one clean line instead of a
traceback, while library users can still catch the precise subclass.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "PluginError",
    "PosecoreError",
    "UnknownComponentError",
    "did_you_mean",
]


class PosecoreError(Exception):
    """Base class of every error posecore raises on purpose."""


class ConfigError(PosecoreError, ValueError):
    """A configuration value, key or file is invalid."""


class DataError(PosecoreError, ValueError):
    """A dataset file, image or annotation is missing, corrupt or inconsistent."""


class PluginError(PosecoreError):
    """A plugin could not be loaded, or two plugins conflict."""


class UnknownComponentError(PosecoreError, KeyError):
    """A component name is not registered by any loaded plugin."""

    def __str__(self) -> str:  # KeyError would quote the message; show it as written.
        return str(self.args[0]) if self.args else ""


class CheckpointError(PosecoreError):
    """A checkpoint file cannot be read safely or does not match the model."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
