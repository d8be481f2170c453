"""The cattrs converter for configs, and turning its errors into messages for people."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from posecore._errors import ConfigError, did_you_mean
from posecore.config._experiment import MixedPrecision
from posecore.config._spec import ComponentSpec

__all__ = ["config_converter", "structure", "unstructure"]

T = TypeVar("T")


@functools.cache
def config_converter() -> cattrs.Converter:
    """The converter shared by config loading, overrides and component arguments.

    Unknown keys are errors (``forbid_extra_keys``); component specs use their flat YAML form.
    """
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(ComponentSpec, lambda value, _: ComponentSpec.parse(value))
    converter.register_unstructure_hook(ComponentSpec, ComponentSpec.to_dict)

    def structure_attrs(cls: type) -> Any:
        return make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True)

    converter.register_structure_hook_factory(
        lambda cls: attrs.has(cls) and cls is not ComponentSpec, structure_attrs
    )
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook_func(lambda t: t == MixedPrecision, _structure_mixed_precision)
    return converter


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _structure_bool(value: Any, _: type) -> bool:
    """Booleans, 0/1, and the words YAML and shells use; ``bool("false")`` would be True."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false; got {value!r}")


def _structure_int(value: Any, _: type) -> int:
    """Integers, and floats or strings holding a whole number; never truncates 1.5 to 1."""
    if isinstance(value, bool):
        raise ValueError(f"expected an integer; got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected an integer; got {value!r}")


def _structure_mixed_precision(value: Any, type_: Any) -> str:
    # YAML 1.1 reads a bare ``no`` as False; it means the "no" mode here.
    value = "no" if value is False else value
    if value not in get_args(type_):
        raise ValueError(f"must be one of {', '.join(map(repr, get_args(type_)))}; got {value!r}")
    return value


def unstructure(obj: Any) -> Any:
    """Plain Python data (dicts, lists, scalars) for YAML or JSON."""
    return _lists(config_converter().unstructure(obj))


def _lists(value: Any) -> Any:
    # YAML has no tuples: write sequences as lists so the file reads naturally.
    if isinstance(value, Mapping):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


def structure(data: Any, cls: type[T], *, source: str = "config") -> T:
    """Build ``cls`` from plain data, raising :class:`ConfigError` naming each bad field."""
    try:
        return config_converter().structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        raise ConfigError(f"invalid {source}:\n" + "\n".join(describe_errors(exc, cls))) from exc


def describe_errors(exc: BaseException, cls: type) -> list[str]:
    """One line per problem: ``  train.epochs: must be >= 0; got -1``, with did-you-mean hints."""
    if not isinstance(exc, cattrs.BaseValidationError):
        return [f"  {exc}"]
    lines = []
    for message in cattrs.transform_error(exc, path="$", format_exception=_format):
        lines.append("  " + message.replace(" @ $.", " @ ").replace(" @ $", ""))
    return lines or [f"  {exc}"]


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        allowed = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        hints = [f"{key!r}{did_you_mean(key, allowed)}" for key in sorted(exc.extra_fields)]
        return f"unknown key {', '.join(hints)}; allowed keys: {', '.join(allowed)}"
    if isinstance(exc, KeyError):
        return "required key is missing"
    if get_origin(type_) is Literal:
        return f"must be one of {', '.join(repr(a) for a in get_args(type_))}"
    if type_ is None or attrs.has(type_) or type_ in (int, bool, MixedPrecision):
        # Raised by an attrs validator while building the class: its message already names
        # the field and the allowed values.
        return str(exc)
    return cattrs.v.format_exception(exc, type_)
