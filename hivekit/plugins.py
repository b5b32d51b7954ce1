"""Finding, enabling and checking plugins.

Every plugin, bundled or not, is an entry point in the ``hivekit`` group; its entry-point name is
the plugin's name, its config table's name, and what ``[hive] enable``/``disable`` refer to.
Which are enabled: the defaults below that are installed, plus ``[hive] backend``, plus ``[hive]
enable``, minus ``[hive] disable``. A third-party plugin is off until the operator enables it: it
runs inside a daemon trusted with every agent's config.

Two environment variables help an operator debugging plugins (as datasette's do):

* ``HIVEKIT_LOAD_PLUGINS=a,b`` loads only these installed plugins (an allow-list; empty = none).
* ``HIVEKIT_TRACE_PLUGINS=1`` prints every hook call, its plugins and results to stderr.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy
from attrs import field, frozen

from hivekit import hookspecs
from hivekit.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from hivekit.config import Config

GROUP = "hivekit"

#: Bundled plugins that are on unless disabled. Backends are chosen by ``[hive] backend`` instead.
DEFAULT_ENABLED = ("cli", "port_check", "agent_api", "dashboard")


@frozen
class Installed:
    """A plugin the environment offers (an entry point), loaded or not."""

    name: str
    entry_point: EntryPoint

    @property
    def distribution(self) -> str | None:
        dist = self.entry_point.dist
        return dist.name if dist else None

    @property
    def version(self) -> str | None:
        dist = self.entry_point.dist
        return dist.version if dist else None


def installed() -> dict[str, Installed]:
    """Every plugin installed in this environment, allowed by ``HIVEKIT_LOAD_PLUGINS``."""
    allow = os.environ.get("HIVEKIT_LOAD_PLUGINS")
    allowed = None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}
    found: dict[str, Installed] = {}
    for ep in entry_points(group=GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        found.setdefault(ep.name, Installed(ep.name, ep))
    return found


def import_plugin(plugin: Installed) -> ModuleType | Any:
    try:
        return plugin.entry_point.load()
    except Exception as exc:  # any import-time failure is the plugin's, named as such
        raise PluginError(
            f"plugin {plugin.name!r} ({plugin.entry_point.value}) failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def make_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("HIVEKIT_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()
    return pm


def register(pm: pluggy.PluginManager, name: str, obj: Any) -> None:
    """Register one plugin and validate its hookimpls, naming it in any error."""
    try:
        pm.register(obj, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=name) if pm.has_plugin(name) else None
        raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
    except ValueError as exc:
        raise PluginError(f"plugin {name!r} could not be registered: {exc}") from exc


def hook_names(pm: pluggy.PluginManager, obj: Any) -> list[str]:
    return sorted(c.name for c in pm.get_hookcallers(obj) or [])


def implements(pm: pluggy.PluginManager, obj: Any, hook: str) -> bool:
    return hook in hook_names(pm, obj)


@frozen
class Loaded:
    """The plugins a config enables, registered and checked, with their config instances."""

    pm: pluggy.PluginManager
    #: Enabled plugin names in load order.
    enabled: list[str]
    installed: dict[str, Installed]
    backend: str
    #: Each enabled plugin's structured config table (absent when it has no schema).
    plugin_configs: dict[str, Any] = field(factory=dict)


def enabled_names(config: Config, available: dict[str, Installed]) -> tuple[list[str], list[str]]:
    """The plugin names ``config`` enables, and the problems with what it names."""
    hive, problems = config.hive, []
    for key, names in (("enable", hive.enable), ("disable", hive.disable)):
        for name in names:
            if name not in available:
                problems.append(_unknown(config, f"[hive] {key}", name, available))
    if hive.backend not in available:
        problems.append(_unknown(config, "[hive] backend", hive.backend, available))
    wanted = [n for n in DEFAULT_ENABLED if n in available]
    wanted += [hive.backend, *hive.enable]
    seen: list[str] = []
    for name in wanted:
        if name in available and name not in hive.disable and name not in seen:
            seen.append(name)
    if hive.backend in hive.disable:
        problems.append(
            f"{config.source}: [hive] backend {hive.backend!r} is also in [hive] disable; "
            "a hive needs exactly one backend"
        )
    return seen, problems


def _unknown(config: Config, where: str, name: str, available: dict[str, Installed]) -> str:
    names = ", ".join(sorted(available)) or "none"
    return f"{config.source}: {where}: no plugin named {name!r} is installed (installed: {names})"


def load(config: Config, extra: dict[str, Any] | None = None) -> Loaded:
    """Import, register and check the plugins ``config`` enables; structure their tables.

    ``extra`` registers further plugin objects by name as if enabled (tests use it).
    Every problem is collected before anything is raised: the config's own (a ``[hive]`` table
    read with ``keep_going``), unknown plugins and tables, the backend count and every enabled
    plugin's table, so an operator fixes a config in one pass. Raises :class:`ConfigError`
    (every config problem, one line each) or :class:`PluginError` (a plugin that cannot load).
    """
    from hivekit.config import structure_table

    available = installed()
    names, problems = enabled_names(config, available)
    problems = [*config.problems, *problems]
    for table in config.tables:
        if table not in available and table not in (extra or {}):
            problems.append(
                f"{config.source}: [{table}]: no plugin named {table!r} is installed "
                f"(installed: {', '.join(sorted(available)) or 'none'})"
            )
    pm = make_manager()
    objs: dict[str, Any] = {}
    for name in names:
        objs[name] = import_plugin(available[name])
        register(pm, name, objs[name])
    for name, obj in (extra or {}).items():
        objs[name] = obj
        register(pm, name, obj)
        names.append(name)
    backends = [n for n in names if implements(pm, objs[n], "is_running")]
    backend_named = config.hive.backend in available or config.hive.backend in (extra or {})
    if len(backends) != 1 and (backends or backend_named) \
            and config.hive.backend not in config.hive.disable:
        found = ", ".join(backends) if backends else "none"
        hint = (
            "set [hive] backend to one of the installed backends"
            if not backends
            else "keep one: remove the others from [hive] enable"
        )
        problems.append(
            f"{config.source}: exactly one backend must be enabled, found {found}: {hint}")
    elif backends and backends[0] != config.hive.backend and config.hive.backend in names:
        problems.append(
            f"{config.source}: [hive] backend {config.hive.backend!r} is not a backend plugin "
            f"(it does not implement is_running); the enabled backend is {backends[0]!r}")
    plugin_configs: dict[str, Any] = {}
    for name in names:
        schema = _schema(pm, name)
        if schema is None:
            if config.tables.get(name):
                problems.append(f"{config.source}: [{name}]: plugin {name!r} takes no settings")
            continue
        value = structure_table(schema, config.tables.get(name, {}), name, config.source,
                                problems)
        if value is not None:
            plugin_configs[name] = value
    if problems:
        raise ConfigError(problems)
    return Loaded(pm=pm, enabled=names, installed=available, backend=backends[0],
                  plugin_configs=plugin_configs)


def _schema(pm: pluggy.PluginManager, name: str) -> type | None:
    """The config class the named plugin declares (its own ``config_schema`` impl only)."""
    others = [p for n, p in pm.list_name_plugin() if n != name]
    return pm.subset_hook_caller("config_schema", remove_plugins=others)()

