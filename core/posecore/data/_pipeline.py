"""Building transform pipelines from config (the standard top-down specs are in
:mod:`posecore.data._pipeline_specs`).

A pipeline is a list of ``transforms`` component specs. Arguments that belong to the whole
experiment (the codec, the input size, UDP or not) are not repeated in every spec: they are
passed as context and given to each transform whose factory accepts them and whose spec does
not set them (``ComponentRegistry.build``'s context rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from posecore._registry import Registries
from posecore.config._spec import ComponentSpec
from posecore.data._transforms import Compose

__all__ = ["build_pipeline"]


def build_pipeline(specs: Sequence[ComponentSpec | dict[str, Any] | str], registries: Registries,
                   **context: Any) -> Compose:
    """Build the transforms of ``specs`` from ``registries.transforms``, giving each the
    ``context`` values (the engine's are ``codec=``, ``input_size=``, ``use_udp=``) its factory
    accepts and its spec leaves unset."""
    return Compose([registries.transforms.build(spec, context=context) for spec in specs])
