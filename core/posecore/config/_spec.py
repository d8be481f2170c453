"""``ComponentSpec``: how a config names a component and its arguments.

In YAML a spec is a mapping with a ``type`` key and the factory's keyword arguments beside it::

    backbone: {type: vit, arch: base, drop_path_rate: 0.3}

A bare string is shorthand for a spec without arguments (``codec: msra_heatmap``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["ComponentSpec"]


def _freeze_args(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keep arguments in their YAML form (nested specs as mappings, sequences as lists), so that a
    spec written to a file and read back is equal to the original."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"ComponentSpec.args must be a mapping; got {type(value).__name__}")
    return {key: _plain(item) for key, item in value.items()}


@attrs.frozen(eq=True, hash=False)
class ComponentSpec:
    """A component name (``type``) plus its factory arguments (``args``)."""

    type: str = attrs.field()
    args: dict[str, Any] = attrs.field(factory=dict, converter=_freeze_args)

    @type.validator
    def _check_type(self, attribute: attrs.Attribute, value: object) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"ComponentSpec.type must be a non-empty component name; got {value!r}")

    @classmethod
    def parse(cls, value: ComponentSpec | Mapping[str, Any] | str) -> ComponentSpec:
        """Accept the YAML forms (``{type: x, ...}`` or ``"x"``) as well as a spec."""
        if isinstance(value, ComponentSpec):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            if "type" not in value:
                keys = ", ".join(map(str, value)) or "nothing"
                raise ValueError(f"a component needs a 'type' key naming it; found {keys}")
            args = {k: v for k, v in value.items() if k != "type"}
            return cls(value["type"], args)
        raise TypeError(
            f"a component is given as {{type: NAME, ...}} or 'NAME'; got {type(value).__name__}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The YAML form: ``{"type": ..., **args}`` with nested specs expanded."""
        return {"type": self.type, **self.args}

    def with_args(self, **changes: Any) -> ComponentSpec:
        """A copy with some arguments replaced."""
        return ComponentSpec(self.type, {**self.args, **changes})


def _plain(value: Any) -> Any:
    if isinstance(value, ComponentSpec):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
