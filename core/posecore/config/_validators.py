"""attrs validators whose messages name the field and the allowed values."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import attrs

__all__ = ["at_least", "in_range", "one_of", "optional"]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _where(instance: object, attribute: attrs.Attribute) -> str:
    return f"{type(instance).__name__}.{attribute.name}"


def at_least(minimum: float) -> Validator:
    """The value must be >= ``minimum``."""

    def check(instance: object, attribute: attrs.Attribute, value: float) -> None:
        if value < minimum:
            raise ValueError(f"{_where(instance, attribute)} must be >= {minimum}; got {value!r}")

    return check


def in_range(low: float, high: float, *, low_open: bool = False) -> Validator:
    """The value must lie in ``[low, high]`` (or ``(low, high]`` when ``low_open``)."""

    def check(instance: object, attribute: attrs.Attribute, value: float) -> None:
        ok = (low < value if low_open else low <= value) and value <= high
        if not ok:
            bracket = "(" if low_open else "["
            raise ValueError(
                f"{_where(instance, attribute)} must be in {bracket}{low}, {high}]; got {value!r}"
            )

    return check


def one_of(allowed: Collection[Any]) -> Validator:
    """The value must be one of ``allowed``; the message lists them."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        if value not in allowed:
            listed = ", ".join(repr(a) for a in allowed)
            raise ValueError(f"{_where(instance, attribute)} must be one of {listed}; got {value!r}")

    return check


def optional(validator: Validator) -> Validator:
    """Apply ``validator`` unless the value is None."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None:
            validator(instance, attribute, value)

    return check
