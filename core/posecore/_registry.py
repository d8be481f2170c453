"""Typed registries: name -> declaration, one per component kind, filled by plugin hooks.

A component's factory signature is its configuration schema. ``ComponentRegistry.build``
checks a :class:`~posecore.config.ComponentSpec` against it (unknown argument -> "did you mean",
missing argument, wrong type), structures each value to the annotated type with cattrs (so
``"12"`` from the command line becomes ``12``), builds nested components marked with
:class:`~posecore.Nested`, and calls the factory.

Some arguments belong to the whole run rather than to one spec (the experiment's codec, a
dataset's position in the list). The caller passes them as *context*: a value goes to every
factory that takes an argument of that name and whose spec leaves it unset. ``build(spec,
context=...)`` and ``validate(spec, provided=...)`` apply that one rule, so a config that
validates with the names of a context builds with its values.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import cattrs

from posecore._components import AppTab, Component, Converter, Nested, Preset
from posecore._errors import ConfigError, PluginError, UnknownComponentError, did_you_mean
from posecore.config._converter import config_converter
from posecore.config._spec import ComponentSpec

__all__ = [
    "COMPONENT_KINDS",
    "ComponentRegistry",
    "OFFICIAL_PLUGINS",
    "Registries",
    "Registry",
    "singular",
]

#: Component kinds, in the order ``posecore plugins`` lists them; each has a hook ``posecore_<kind>``.
COMPONENT_KINDS = ("backbones", "heads", "losses", "codecs", "transforms", "datasets", "metrics", "models",
                   "detectors")
#: The method plugins maintained with posecore, for "install posecore[NAME]" hints.
OFFICIAL_PLUGINS = ("pgvl", "vlpose", "posebh", "poseanything", "hevitpose")

D = TypeVar("D", Component, Preset, Converter, AppTab)


def singular(kind: str) -> str:
    """``"backbones"`` -> ``"backbone"``, ``"losses"`` -> ``"loss"``, for messages."""
    if kind.endswith("sses"):
        return kind[:-2]
    return kind[:-1] if kind.endswith("s") else kind


class Registry(Generic[D]):
    """Declarations of one kind by name, remembering which plugin provided each."""

    def __init__(self, kind: str, declaration_type: type[D]) -> None:
        self.kind = kind
        self.declaration_type = declaration_type
        self._entries: dict[str, tuple[D, str]] = {}

    def add(self, declaration: D, provider: str) -> None:
        """Register ``declaration`` for plugin ``provider``; a taken name is an error naming both."""
        if not isinstance(declaration, self.declaration_type):
            raise PluginError(
                f"plugin {provider!r} declared a {type(declaration).__name__} among its {self.kind}; "
                f"expected posecore.{self.declaration_type.__name__}"
            )
        name = declaration.name
        if name in self._entries:
            other = self._entries[name][1]
            raise PluginError(
                f"{singular(self.kind)} {name!r} is registered by both plugin {other!r} and plugin "
                f"{provider!r}; uninstall or block one of them (posecore -p no:NAME ...)"
            )
        self._entries[name] = (declaration, provider)

    def remove_provider(self, provider: str) -> None:
        """Withdraw everything ``provider`` registered (used when a plugin turns out broken)."""
        self._entries = {k: v for k, v in self._entries.items() if v[1] != provider}

    def get(self, name: str) -> D:
        """The declaration called ``name``; an unknown name lists the choices and an install hint."""
        try:
            return self._entries[name][0]
        except KeyError:
            raise UnknownComponentError(self._unknown_message(name)) from None

    def provider(self, name: str) -> str:
        self.get(name)
        return self._entries[name][1]

    def names(self, provider: str | None = None) -> list[str]:
        """Sorted names, optionally only those of one plugin."""
        return sorted(k for k, (_, p) in self._entries.items() if provider in (None, p))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[D]:
        return (self._entries[name][0] for name in self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def _unknown_message(self, name: str) -> str:
        what = singular(self.kind)
        message = f"unknown {what} {name!r}{did_you_mean(name, self._entries)}."
        plugin = next((p for p in OFFICIAL_PLUGINS if name.startswith(p)), None)
        if plugin is not None:
            message += f" It looks like one of plugin {plugin!r}'s: pip install 'posecore[{plugin}]'."
        available = self.names()
        shown = ", ".join(available[:30]) + (" ..." if len(available) > 30 else "")
        message += f" Available {self.kind}: {shown or 'none'}."
        return message


class ComponentRegistry(Registry[Component]):
    """A registry of buildable components; ``build`` validates arguments against the factory."""

    def __init__(self, kind: str, owner: Registries) -> None:
        super().__init__(kind, Component)
        self._owner = owner

    def build(self, spec: ComponentSpec | Mapping[str, Any] | str, context: Mapping[str, Any] | None = None,
              **overrides: Any) -> Any:
        """Build the component a spec describes.

        ``context`` holds values the caller supplies by name (``{"codec": codec}``): each goes
        to the factory if it takes that argument and the spec leaves it unset, as it is (context
        values are the caller's objects, not config text to convert). ``overrides`` replace spec
        arguments outright.
        """
        spec = ComponentSpec.parse(spec)
        factory = self.get(spec.type).resolve()
        args = {**spec.args, **overrides}
        from_context = {name: context[name] for name in _taken_from_context(factory, args, context or {})}
        kwargs = self._bind(spec.type, factory, args, build_nested=True, provided=from_context)
        return factory(**kwargs, **from_context)

    def validate(self, spec: ComponentSpec | Mapping[str, Any] | str, provided: Collection[str] = ()) -> None:
        """Check a spec (and its nested specs) against the factories without building anything.

        ``provided`` names the context the caller will build with (the keys of ``build``'s
        ``context``): an argument it supplies is not missing from the spec.
        """
        spec = ComponentSpec.parse(spec)
        factory = self.get(spec.type).resolve()
        args = dict(spec.args)
        self._bind(spec.type, factory, args, build_nested=False, provided=_taken_from_context(factory, args, provided))

    def build_example(self, name: str, workdir: Path) -> Any:
        """Build ``name`` from its declared small example (for contract checks).

        ``workdir`` receives the example's files, if it writes any; the ``input_size`` key is a
        hint for the checks and not passed to the factory.
        """
        example = self.get(name).example_kwargs(workdir)
        example.pop("input_size", None)
        return self.build(ComponentSpec(name, example))

    def _bind(self, name: str, factory: Callable[..., Any], args: dict[str, Any], *, build_nested: bool,
              provided: Collection[str] = ()) -> dict[str, Any]:
        where = f"{singular(self.kind)} {name!r}"
        signature = inspect.signature(factory)
        params = signature.parameters
        open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in args:
            if key not in params and not open_kwargs:
                raise ConfigError(
                    f"{where} has no argument {key!r}{did_you_mean(key, accepted)}; "
                    f"it accepts: {', '.join(accepted) or 'no arguments'}"
                )
        missing = [
            n for n in accepted if params[n].default is inspect.Parameter.empty and n not in args and n not in provided
        ]
        if missing:
            raise ConfigError(f"{where} needs argument(s) {', '.join(missing)}; add them to its config")
        hints = _type_hints(factory)
        return {
            key: self._convert(where, key, value, hints.get(key), build_nested=build_nested)
            for key, value in args.items()
        }

    def _convert(self, where: str, key: str, value: Any, hint: Any, *, build_nested: bool) -> Any:
        nested = _nested_marker(hint)
        if nested is not None and value is not None:
            registry = self._owner[nested.kind]
            many = isinstance(value, (list, tuple))
            specs = [ComponentSpec.parse(v) for v in (value if many else [value])]
            for spec in specs:
                try:
                    registry.validate(spec)
                except (ConfigError, UnknownComponentError) as exc:
                    raise ConfigError(f"{where}, argument {key!r}: {exc}") from None
            if not build_nested:
                return value
            built = [registry.build(spec) for spec in specs]
            return built if many else built[0]
        if hint is None or hint is Any:
            return value
        try:
            return config_converter().structure(value, hint)
        except cattrs.StructureHandlerNotFoundError:
            return value  # an annotation cattrs cannot build (e.g. a module class): pass as given
        except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"{where}, argument {key!r}: {value!r} is not a valid {_type_name(hint)} ({_first_line(exc)})"
            ) from None


class Registries:
    """Every registry of a plugin host: ``registries.backbones``, ``registries["heads"]``, ..."""

    def __init__(self) -> None:
        self._component: dict[str, ComponentRegistry] = {k: ComponentRegistry(k, self) for k in COMPONENT_KINDS}
        self.presets: Registry[Preset] = Registry("presets", Preset)
        self.converters: Registry[Converter] = Registry("converters", Converter)
        self.app_tabs: Registry[AppTab] = Registry("app_tabs", AppTab)

    def __getitem__(self, kind: str) -> Registry[Any]:
        if kind in self._component:
            return self._component[kind]
        if kind in ("presets", "converters", "app_tabs"):
            return getattr(self, kind)
        raise KeyError(f"unknown registry kind {kind!r}{did_you_mean(kind, self.kinds())}")

    def __getattr__(self, kind: str) -> ComponentRegistry:
        try:
            return self.__dict__["_component"][kind]
        except KeyError:
            raise AttributeError(kind) from None

    @staticmethod
    def kinds() -> Sequence[str]:
        """Every kind, components first."""
        return (*COMPONENT_KINDS, "presets", "converters", "app_tabs")

    def remove_provider(self, provider: str) -> None:
        for kind in self.kinds():
            self[kind].remove_provider(provider)

    def provided_by(self, provider: str) -> dict[str, list[str]]:
        """``{kind: [names]}`` of what one plugin registered (kinds with no entries omitted)."""
        found = {kind: self[kind].names(provider) for kind in self.kinds()}
        return {kind: names for kind, names in found.items() if names}


def _taken_from_context(factory: Callable[..., Any], args: Mapping[str, Any], names: Collection[str]) -> list[str]:
    """The context names ``factory`` receives: those it has a parameter for and ``args`` leave unset.

    The one rule behind ``build(context=...)`` and ``validate(provided=...)``; a factory's
    ``**kwargs`` takes no context (only a named parameter asks for a value by name).
    """
    params = inspect.signature(factory).parameters
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return [name for name in names if name in named and name not in args]


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    while isinstance(factory, functools.partial):  # a class or function with arguments bound
        factory = factory.func
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # annotations naming TYPE_CHECKING-only imports: fall back to no checking
        return {}


def _nested_marker(hint: Any) -> Nested | None:
    """The Nested marker of ``Annotated[..., Nested(kind)]``, also inside ``X | None``."""
    if typing.get_origin(hint) is typing.Annotated:
        return next((m for m in hint.__metadata__ if isinstance(m, Nested)), None)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(filter(None, map(_nested_marker, typing.get_args(hint))), None)
    return None


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        messages = cattrs.transform_error(exc)
        return messages[0] if messages else str(exc)
    return str(exc).splitlines()[0]
