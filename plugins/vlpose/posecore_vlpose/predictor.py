"""``posecore predict`` for VLPose: the core's top-down predictor, each input with its Human-Art style.

VLPose's Human-Art stage picks its prompt by the image's scene (``cartoon``, ``sketch``, ...). The
original reads it from the image's folder (``.../<style>/<image>.jpg``, Human-Art's layout); here
the style of each input comes from, first match wins:

* ``--styles FILE``: a JSON object ``{file name or path: style}``;
* ``--style NAME``: every input's style; ``--style parent_dir`` the original's rule;
* the model's ``default_style`` (when its config sets one).

A style the model has no prompt for fails that input alone, with the styles it knows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import posecore
from posecore import ConfigError, PredictRequest

__all__ = ["predict_styled", "style_of"]


def style_of(request: PredictRequest) -> Callable[[Path], Mapping[str, Any]]:
    """The batch extras of each input: ``{"style": ...}``, or nothing (the model's default)."""
    table: dict[str, str] = {}
    if request.options.get("vlpose_styles"):
        path = Path(request.options["vlpose_styles"])
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--styles {path}: cannot read a JSON object {{image: style}} ({exc})") from exc
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise ConfigError(f"--styles {path}: must be a JSON object mapping image file names to style names")
    fixed = request.options.get("vlpose_style")

    def extras(path: Path) -> Mapping[str, Any]:
        for key in (str(path), path.name):
            if key in table:
                return {"style": table[key]}
        if fixed == "parent_dir":
            return {"style": path.parent.name}
        return {"style": fixed} if fixed else {}

    return extras


def predict_styled(request: PredictRequest) -> int:
    """The core's top-down prediction with each input's style (see the module docstring)."""
    return posecore.predict_topdown(request, batch_extras=style_of(request))
