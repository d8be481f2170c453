"""Plugin discovery and loading: entry points, fail-soft, strict on demand.

Plugins are modules named by entry points in the group ``posecore.plugins``; the entry-point
name is the plugin's name (``posebh``). Loading follows pytest/tox/datasette habits:

* autoload every installed plugin, unless ``POSECORE_DISABLE_PLUGIN_AUTOLOAD=1``; then only
  those named with ``-p NAME`` / ``--plugin NAME`` load;
* ``-p no:NAME`` or ``POSECORE_DISABLED_PLUGINS=a,b`` blocks a plugin;
* a plugin that fails to import, targets an unsupported plugin API, implements an unknown hook,
  or whose registration hook raises or returns the wrong type is *reported* (status ``error``)
  and withdrawn, while the rest keep working; ``strict=True`` (``--strict-plugins``,
  ``POSECORE_STRICT_PLUGINS=1``) turns any such report into a :class:`PluginError`.

Each plugin's hook implementations are called one plugin at a time, so every component is
attributed to its provider and a failure is isolated to the plugin that caused it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from importlib import metadata
from typing import Any, Literal

import attrs
import pluggy

from posecore import hookspecs
from posecore._components import Preset
from posecore._errors import PluginError, did_you_mean
from posecore._registry import OFFICIAL_PLUGINS, Registries

__all__ = [
    "BUILTIN_PLUGIN",
    "ENTRY_POINT_GROUP",
    "PluginHost",
    "PluginRecord",
    "get_host",
    "load_plugins",
    "set_host",
]

ENTRY_POINT_GROUP = "posecore.plugins"
#: Name under which the core registers its own components (through the same hooks).
BUILTIN_PLUGIN = "posecore"

Status = Literal["ok", "error", "blocked", "not loaded"]


@attrs.define
class PluginRecord:
    """What ``posecore plugins`` reports about one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    status: Status = "ok"
    error: str | None = None
    module: str | None = None
    builtin: bool = False
    components: dict[str, list[str]] = attrs.Factory(dict)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class PluginHost:
    """A pluggy manager plus the registries its plugins filled, and a record per plugin."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registries = Registries()
        self.records: dict[str, PluginRecord] = {}

    # -- loading -----------------------------------------------------------------------------
    def register(
        self,
        plugin: object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
        builtin: bool = False,
    ) -> PluginRecord:
        """Register a plugin object (module or instance) and collect its declarations.

        Never raises for a faulty plugin unless the host is strict: the record carries the error.
        """
        if name in self.records and self.records[name].status == "ok":
            other = self.records[name].distribution or "another plugin"
            duplicate = PluginRecord(f"{name} ({distribution})", distribution, version)
            return self.report_failure(
                duplicate, PluginError(f"two plugins are named {name!r} ({other} and {distribution}); uninstall one")
            )
        record = PluginRecord(name, distribution, version, module=getattr(plugin, "__name__", None), builtin=builtin)
        self.records[name] = record
        try:
            _check_api_version(plugin, name)
            self.pm.register(plugin, name=name)
            self._check_hook_names(plugin, name)
            self._collect(name)
        except Exception as exc:
            self._withdraw(name)
            return self.report_failure(record, exc)
        record.components = self.registries.provided_by(name)
        return record

    def _withdraw(self, name: str) -> None:
        """Remove every trace of a plugin: its components and its hook implementations (pluggy
        keeps the hooks it registered before a validation error, so unregister explicitly)."""
        self.registries.remove_provider(name)
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)

    def record_skipped(self, name: str, status: Status, reason: str, *, distribution: str | None = None,
                       version: str | None = None) -> None:
        """Note a plugin that was found but deliberately not loaded (blocked, autoload off)."""
        self.records[name] = PluginRecord(name, distribution, version, status=status, error=reason)

    def report_failure(self, record: PluginRecord, exc: BaseException) -> PluginRecord:
        """Mark ``record`` broken with ``exc``'s message and keep it for ``posecore plugins``."""
        record.status = "error"
        record.error = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
        record.components = {}
        self.records[record.name] = record
        return record

    # -- queries -----------------------------------------------------------------------------
    @property
    def broken(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.status == "error"]

    def loaded(self) -> list[str]:
        return [name for name, r in self.records.items() if r.status == "ok"]

    def default_preset(self, plugin: str | None = None) -> Preset:
        """The preset ``posecore run`` uses for ``plugin`` (the core's own when ``None``)."""
        owner = plugin or BUILTIN_PLUGIN
        self.require(owner)
        presets = self.registries.presets
        defaults = [presets.get(n) for n in presets.names(owner) if presets.get(n).default]
        if not defaults:
            raise PluginError(
                f"plugin {owner!r} marks no preset as default; choose one with --preset "
                f"({', '.join(presets.names(owner)) or 'it has none'})"
            )
        return defaults[0]

    def require(self, name: str) -> PluginRecord:
        """The record of a loaded plugin, or a clear error saying why it is not available."""
        record = self.records.get(name)
        if record is None:
            hint = f" pip install 'posecore[{name}]'" if name in OFFICIAL_PLUGINS else ""
            raise PluginError(
                f"no plugin named {name!r} is installed{did_you_mean(name, self.records)}.{hint} "
                f"Installed: {', '.join(self.records) or 'none'}"
            )
        if record.status != "ok":
            raise PluginError(f"plugin {name!r} is {record.status}: {record.error}")
        return record

    def add_cli_arguments(self, command: str, parser: argparse.ArgumentParser) -> None:
        """Let loaded plugins add options to ``command``'s parser.

        Each plugin's hook is called on its own: one that raises is reported and withdrawn
        (or, when strict, raises :class:`PluginError`) and the command goes on without it.
        """
        for impl in self.pm.hook.posecore_cli_arguments.get_hookimpls():
            try:
                _call_impl(impl, command=command, parser=parser)
            except Exception as exc:
                error = PluginError(f"hook posecore_cli_arguments raised {type(exc).__name__}: {exc}")
                if self.strict:
                    raise error from exc
                self._withdraw(impl.plugin_name)
                self.report_failure(self.records[impl.plugin_name], error)
                print(f"posecore: plugin {impl.plugin_name!r} disabled: {error}", file=sys.stderr)

    # -- internals ---------------------------------------------------------------------------
    def _check_hook_names(self, plugin: object, name: str) -> None:
        unknown = [caller.name for caller in self.pm.get_hookcallers(plugin) or [] if not caller.has_spec()]
        if unknown:
            known = [n for n in dir(hookspecs) if n.startswith("posecore_")]
            hints = ", ".join(f"{u}{did_you_mean(u, known)}" for u in unknown)
            raise PluginError(f"plugin {name!r} implements unknown hook(s): {hints}")

    def _collect(self, name: str) -> None:
        for kind in self.registries.kinds():
            hook_name = f"posecore_{kind}"
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin_name != name:
                    continue
                try:
                    declared = _call_impl(impl)
                except Exception as exc:
                    raise PluginError(f"hook {hook_name} raised {type(exc).__name__}: {exc}") from exc
                if not isinstance(declared, (list, tuple)):
                    raise PluginError(
                        f"hook {hook_name} must return a list of declarations; got {type(declared).__name__}"
                    )
                for declaration in declared:
                    try:
                        self.registries[kind].add(declaration, name)
                    except PluginError as exc:
                        raise PluginError(f"hook {hook_name}: {exc}") from None
        presets = self.registries.presets
        defaults = [n for n in presets.names(name) if presets.get(n).default]
        if len(defaults) > 1:
            raise PluginError(f"plugin {name!r} marks several presets as default: {', '.join(defaults)}")


def _call_impl(impl: pluggy.HookImpl, **available: Any) -> Any:
    """Call one plugin's implementation with the spec arguments it declares (pluggy's rule: an
    implementation may accept fewer arguments than the spec, so hooks can gain arguments)."""
    return impl.function(**{arg: available[arg] for arg in impl.argnames})


def _check_api_version(plugin: object, name: str) -> None:
    current, oldest = hookspecs.PLUGIN_API_VERSION, hookspecs.MIN_PLUGIN_API_VERSION
    api = getattr(plugin, "POSECORE_PLUGIN_API", None)
    if api is None:
        raise PluginError(
            f"plugin {name!r} does not declare POSECORE_PLUGIN_API; add 'POSECORE_PLUGIN_API = "
            f"{current}' to its plugin module (this posecore implements plugin API {current})"
        )
    if not isinstance(api, int) or isinstance(api, bool):
        raise PluginError(f"plugin {name!r}: POSECORE_PLUGIN_API must be an int; got {api!r}")
    if api > current:
        raise PluginError(
            f"plugin {name!r} was written for plugin API {api}, but this posecore implements API "
            f"{current}; upgrade posecore"
        )
    if api < oldest:
        raise PluginError(
            f"plugin {name!r} was written for plugin API {api}, which this posecore no longer "
            f"supports (oldest supported: {oldest}); upgrade the plugin"
        )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def load_plugins(
    *,
    enable: Iterable[str] = (),
    block: Iterable[str] = (),
    autoload: bool | None = None,
    strict: bool | None = None,
) -> PluginHost:
    """Build a host with the built-in components and the installed plugins.

    Args:
        enable: plugin names to load even when autoload is off (``-p NAME``). Naming a plugin
            that is not installed is an error.
        block: plugin names never to load (``-p no:NAME``), added to ``POSECORE_DISABLED_PLUGINS``.
        autoload: load every installed plugin; default: unless ``POSECORE_DISABLE_PLUGIN_AUTOLOAD``.
        strict: raise :class:`PluginError` if any plugin is broken; default: ``POSECORE_STRICT_PLUGINS``.
    """
    from posecore import _builtin as builtin

    enable = list(enable)
    blocked = set(block) | set(_env_list("POSECORE_DISABLED_PLUGINS"))
    if autoload is None:
        autoload = not _env_flag("POSECORE_DISABLE_PLUGIN_AUTOLOAD")
    if strict is None:
        strict = _env_flag("POSECORE_STRICT_PLUGINS")

    host = PluginHost(strict=strict)
    host.register(builtin, BUILTIN_PLUGIN, distribution="posecore", version=_version("posecore"), builtin=True)
    entry_points = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    for ep in entry_points:
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        if ep.name in blocked:
            host.record_skipped(ep.name, "blocked", "blocked by -p no:NAME or POSECORE_DISABLED_PLUGINS",
                                distribution=dist, version=version)
            continue
        if not autoload and ep.name not in enable:
            host.record_skipped(ep.name, "not loaded", "autoload is off; load it with -p NAME",
                                distribution=dist, version=version)
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            host.report_failure(PluginRecord(ep.name, dist, version, module=ep.value),
                       PluginError(f"import of {ep.value!r} failed: {type(exc).__name__}: {exc}"))
            continue
        host.register(module, ep.name, distribution=dist, version=version)

    missing = [name for name in enable if name not in host.records]
    if missing:
        raise PluginError(
            f"-p/--plugin names plugin(s) that are not installed: {', '.join(missing)}"
            f"{did_you_mean(missing[0], host.records)}. Installed: {', '.join(host.records)}"
        )
    if host.strict and host.broken:
        details = "; ".join(f"{r.name}: {r.error}" for r in host.broken)
        raise PluginError(f"broken plugin(s) with strict loading on: {details}")
    return host


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, loaded on first use with the environment's settings."""
    global _HOST
    if _HOST is None:
        _HOST = load_plugins()
    return _HOST


def set_host(host: PluginHost | None) -> None:
    """Make ``host`` the process-wide one (the CLI does this after parsing its flags)."""
    global _HOST
    _HOST = host
