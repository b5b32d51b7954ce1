"""Finding, enabling and checking plugins.

Every plugin, bundled or not, is an entry point in the ``hivekit`` group; its entry-point name is
the plugin's name, its config table's name, and what ``[hive] enable``/``disable`` refer to.
Which are enabled: the defaults below that are installed, plus ``[hive] backend``, plus ``[hive]
enable``, minus ``[hive] disable``. A third-party plugin is off until the operator enables it: it
runs inside a daemon trusted with every agent's config.

Two environment variables help an operator debugging plugins (as datasette's do):

* ``HIVEKIT_LOAD_PLUGINS=a,b`` loads only these installed plugins (an allow-list; empty = none).
* ``HIVEKIT_TRACE_PLUGINS=1`` prints every hook call to stderr, plugin by plugin, with what each
  returned (see :mod:`hivekit.trace`).

Every plugin manager hivekit makes comes from :func:`make_manager`, and every set of plugins is
imported and registered by :func:`register_all`: the daemon (:func:`load`), the CLI's command
loading and ``hivekit plugins`` see the same validation (a misspelled hook is an error naming
the plugin everywhere) and the same tracing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
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
    """A plugin manager with hivekit's hookspecs (traced when ``HIVEKIT_TRACE_PLUGINS`` is set).

    The only place one is made: the daemon, the CLI and ``hivekit plugins`` all start here.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("HIVEKIT_TRACE_PLUGINS"):
        from hivekit import trace

        trace.enable(pm)
    return pm


def register(pm: pluggy.PluginManager, name: str, obj: Any) -> None:
    """Register one plugin and validate its hookimpls, naming it in any error.

    Refused: a hookimpl whose name is no hook (a misspelling), one whose arguments the hook
    does not have, and a wrapper implementation of a hook called plugin by plugin
    (:data:`hivekit.hookspecs.PER_PLUGIN`), which would never run as a wrapper.
    """
    try:
        pm.register(obj, name=name)
        pm.check_pending()
        for caller in pm.get_hookcallers(obj) or []:
            if caller.name not in hookspecs.PER_PLUGIN:
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is obj and (impl.wrapper or impl.hookwrapper):
                    raise pluggy.PluginValidationError(
                        obj, f"{caller.name} is called plugin by plugin, so it takes no "
                             "wrapper implementations; drop wrapper=True")
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=name) if pm.has_plugin(name) else None
        raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
    except ValueError as exc:
        raise PluginError(f"plugin {name!r} could not be registered: {exc}") from exc


def register_all(pm: pluggy.PluginManager, names: Iterable[str],
                 available: dict[str, Installed], *, extra: dict[str, Any] | None = None,
                 on_error: Callable[[str, PluginError], None] | None = None) -> dict[str, Any]:
    """Import and :func:`register` the named installed plugins, then the ``extra`` objects.

    Returns ``{name: plugin object}`` of those registered. A plugin that fails to import or to
    validate raises :class:`PluginError`, or, with ``on_error``, is reported to it and skipped
    (the CLI still offers the other plugins' commands; ``hivekit plugins`` lists the error).
    """
    objs: dict[str, Any] = {}
    todo: list[tuple[str, Callable[[], Any]]] = [
        (n, lambda n=n: import_plugin(available[n])) for n in names]
    todo += [(n, lambda o=o: o) for n, o in (extra or {}).items()]
    for name, get in todo:
        try:
            obj = get()
            register(pm, name, obj)
        except PluginError as exc:
            if on_error is None:
                raise
            on_error(name, exc)
            continue
        objs[name] = obj
    return objs


def each(pm: pluggy.PluginManager, hook: str,
         **kwargs: Any) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Each plugin's implementation of ``hook`` in call order, as ``(plugin, call)``.

    ``call()`` runs that one implementation through pluggy's executor (so tracing sees it) and
    returns its result (None for none). For hooks whose results or failures must be told apart
    by plugin: pluggy's own call merges results and stops at the first exception.
    """
    caller = getattr(pm.hook, hook)
    for impl in reversed(caller.get_hookimpls()):
        if impl.wrapper or impl.hookwrapper:  # refused by register() for PER_PLUGIN hooks
            continue
        yield impl.plugin_name, (lambda impl=impl: _call_one(pm, hook, impl, kwargs))


def _call_one(pm: pluggy.PluginManager, hook: str, impl: pluggy.HookImpl,
              kwargs: dict[str, Any]) -> Any:
    result = pm._hookexec(hook, [impl], kwargs, False)
    return result[0] if result else None


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
    objs = register_all(pm, names, available, extra=extra)
    names = list(objs)
    backends = [n for n in names if implements(pm, objs[n], "is_running")]
    backend_named = config.hive.backend in available or config.hive.backend in (extra or {})
    if len(backends) != 1 and (backends or backend_named) \
            and config.hive.backend not in config.hive.disable:
        found = ", ".join(backends) if backends else "none"
        hint = (
            "set [hive] backend to one of the installed backends"
            if not backends
            else _keep_one(config, backends)
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


def _keep_one(config: Config, backends: list[str]) -> str:
    """The fix for two backends: name the one to keep in ``backend``, drop them from enable."""
    listed = [b for b in backends if b in config.hive.enable]
    keep = listed[0] if listed else backends[0]
    fix = f'set [hive] backend = "{keep}"'
    if listed:
        fix += " and remove " + ", ".join(repr(b) for b in listed) + " from [hive] enable"
    return (f"to run on {keep!r}, {fix} (a backend is chosen with [hive] backend, not "
            "enabled)")


def _schema(pm: pluggy.PluginManager, name: str) -> type | None:
    """The config class the named plugin declares (its own ``config_schema`` impl only)."""
    others = [p for n, p in pm.list_name_plugin() if n != name]
    return pm.subset_hook_caller("config_schema", remove_plugins=others)()

