"""The ``hivekit`` command: a click group whose commands come from plugins (``register_commands``).

The core contributes only what must work without a daemon and whatever plugins are enabled:
``serve``, ``plugins`` and ``config check``. The operator's commands (``agents``, ``approve``...)
come from the bundled ``cli`` plugin.

Starting fast: what plugins contribute and where the config puts the admin socket are learnt
once and kept (:mod:`hivekit.clicache`, keyed by the installed distributions and the config
file). With that record, ``hivekit --help`` imports click and nothing of any plugin, and a
command imports only the plugin that owns it; without one (the first run, or after an install,
an uninstall or a config edit), every enabled plugin is imported as before and the record made.

Exit codes: 0 success, 1 the operation failed (the reason on stderr), 2 bad usage.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import click

from hivekit import __version__


class HiveContext:
    """What commands get as ``ctx.obj``: the config path and lazily loaded config."""

    def __init__(self, config_path: str | None, record: dict[str, Any] | None = None) -> None:
        self.config_path = config_path
        self._config: Any = None
        #: What an earlier run learnt of this config (:mod:`hivekit.clicache`), if anything.
        self._record = record

    @property
    def config(self) -> Any:
        """The read config (``hivekit.config.Config``); a bad one ends the command with exit 1."""
        if self._config is None:
            from hivekit import config as cfg
            from hivekit.errors import ConfigError

            try:
                self._config = cfg.read(cfg.find_path(self.config_path))
            except ConfigError as exc:
                fail(str(exc))
        return self._config

    def loaded(self, file: str | None = None) -> tuple[Any, Any]:
        """The config (``file``, else the one in use) and its plugins, loaded and checked; every
        problem of the file (``[hive]`` and every plugin table) ends the command at once, with
        exit 1."""
        from hivekit import config as cfg
        from hivekit import plugins
        from hivekit.errors import HiveError

        try:
            config = cfg.read(cfg.find_path(file or self.config_path), keep_going=True)
            return config, plugins.load(config)
        except HiveError as exc:
            fail(str(exc))

    def admin_socket(self) -> Path:
        """The daemon's admin socket, as the config says: from the record of an earlier run
        that read and checked this same config file (:mod:`hivekit.clicache`), else read now."""
        record = self._record
        if record is not None and record.get("runtime_dir"):
            from hivekit.configpath import find_path
            from hivekit.errors import ConfigError

            try:
                path = find_path(self.config_path)
            except ConfigError as exc:
                fail(str(exc))
            if record.get("config") == (str(path) if path else None):
                return Path(record["runtime_dir"]) / "admin.sock"
        return self.config.runtime_dir / "admin.sock"

    def client(self) -> Any:
        from hivekit.client import Client

        return Client(self.admin_socket())


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` to stderr (each line prefixed ``error:``) and exit ``code``."""
    for line in message.splitlines() or [""]:
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON (what every ``--json`` prints)."""
    import json

    click.echo(json.dumps(obj, indent=2, sort_keys=False))


class AgentNameType(click.ParamType):
    """An agent name (or ``operator`` where a recipient is meant), checked by the agent-name
    rule before anything is sent."""

    name = "NAME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        from hivekit.errors import BadRequest
        from hivekit.names import check_name

        try:
            return check_name(str(value))
        except BadRequest as exc:
            self.fail(exc.message, param, ctx)


class IdType(click.ParamType):
    """An approval's or a question's id: ASCII digits, 1 to 2^63-1."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        from hivekit.convert import Invalid, parse_id

        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        try:
            return parse_id(str(value), "ID")
        except Invalid:
            self.fail(f"{value!r} is not an id: an id is a whole number from 1 to 2^63-1 "
                      "(`hivekit approvals --all` lists them)", param, ctx)


AGENT_NAME = AgentNameType()
ID = IdType()


def api_path(*segments: str | int) -> str:
    """``/seg/seg/...`` with every segment percent-encoded: no argument can address another
    route."""
    return "".join("/" + quote(str(s), safe="") for s in segments)


class UnexpectedAnswer(Exception):
    """The daemon's answer does not have the shape this command reads."""


def expect(data: Any, type_: Any) -> Any:
    """``data`` unchanged if it structures into ``type_`` (a record, ``list[Approval]``...);
    :class:`UnexpectedAnswer` naming what is off otherwise."""
    from hivekit.convert import Invalid, structure

    try:
        structure(data, type_)
    except Invalid as exc:
        raise UnexpectedAnswer(exc.message) from None
    return data


def api_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Make a click command talk to the running daemon: it gets the admin API's client as its
    first argument (``client.get(path)``, ``client.post(path, body)``, ``client.events()``,
    ``client.watch(...)``), and an error (no daemon running, a refusal) ends it with
    ``error: <message>`` and exit code 1, as does an answer of a shape the command cannot read
    (check one with :func:`expect`): never a traceback; Ctrl-C ends it with ``interrupted``
    and exit code 130. Put it under ``@cli.command()``; build paths with :func:`api_path` and
    take names and ids as :data:`AGENT_NAME` and :data:`ID`."""

    @functools.wraps(func)
    @click.pass_obj
    def wrapper(obj: HiveContext, *args: Any, **kwargs: Any) -> Any:
        from hivekit.errors import HiveError

        client = obj.client()
        try:
            return func(client, *args, **kwargs)
        except HiveError as exc:
            fail(str(exc))
        except KeyboardInterrupt:  # Ctrl-C: say so, exit 130 (no click "Aborted!")
            click.echo("\ninterrupted", err=True)
            raise SystemExit(130) from None
        except (UnexpectedAnswer, KeyError, IndexError, TypeError, AttributeError,
                ValueError) as exc:
            what = str(exc) if isinstance(exc, UnexpectedAnswer) else \
                f"{type(exc).__name__}: {exc}"
            fail(f"unexpected answer from the hive at {client.socket} ({what}); is the daemon "
                 "the same hivekit version as this command?")

    wrapper.hivekit_api = True  # type: ignore[attr-defined]
    return wrapper


class HiveGroup(click.Group):
    """The root group. Its plugin commands may be known from :mod:`hivekit.clicache` only (name,
    owner, help): the owning plugin is imported when one of its commands is used, and
    ``--help`` lists them without importing any."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The cache record this run uses, if any.
        self.record: dict[str, Any] | None = None
        self._lazy: dict[str, dict[str, Any]] = {}

    def use_record(self, record: dict[str, Any]) -> None:
        self.record = record
        self._lazy = {c["name"]: c for c in record["commands"] if c["name"] not in self.commands}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self._lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self._lazy:
            self._load(self._lazy[cmd_name]["plugin"])
        return self.commands.get(cmd_name)

    def _load(self, plugin: str) -> None:
        """Import ``plugin`` (by its entry point, as the record names it) and register its
        commands."""
        import importlib

        import pluggy

        from hivekit import hookspecs

        assert self.record is not None
        value = self.record["plugins"][plugin]
        module, _, attr = value.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in filter(None, attr.split(".")):
                obj = getattr(obj, part)
            pm = pluggy.PluginManager("hivekit")
            pm.add_hookspecs(hookspecs)
            pm.register(obj, name=plugin)
        except Exception as exc:  # the plugin's own failure, named as such
            fail(f"plugin {plugin!r} ({value}) failed to import: {type(exc).__name__}: {exc}")
        for impl in pm.hook.register_commands.get_hookimpls():
            impl.function(self)
        for name, entry in list(self._lazy.items()):
            if entry["plugin"] == plugin:
                del self._lazy[name]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own, but a command not loaded is described from the record: listing the
        # commands imports no plugin.
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name)
            if cmd is None:
                entry = self._lazy[name]
                cmd = click.Command(name, help=entry["help"], short_help=entry["short_help"],
                                    hidden=entry["hidden"], deprecated=entry["deprecated"])
            if not cmd.hidden:
                rows.append((name, cmd))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])


@click.group(cls=HiveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="FILE", envvar="HIVEKIT_CONFIG",
              help="Config file (default: $HIVEKIT_CONFIG, else ./hivekit.toml, else embedded "
                   "defaults).")
@click.version_option(__version__, prog_name="hivekit")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """hivekit: a control plane for a hive of AI agents.

    A manager agent proposes work, you approve or deny it, and every decision is deployed
    through git-audited tags. Start the hive with `hivekit serve`; the other commands talk to it.
    """
    ctx.obj = HiveContext(config_path, record=getattr(ctx.command, "record", None))


@cli.command()
@click.pass_obj
def serve(obj: HiveContext) -> None:
    """Run the hive: store, plugins, recovery, and the API on the admin socket."""
    import logging

    from hivekit import daemon
    from hivekit.errors import HiveError

    logging.basicConfig(level=os.environ.get("HIVEKIT_LOG_LEVEL", "INFO").upper(),
                        format="hivekit: %(levelname)s %(name)s: %(message)s")
    logging.getLogger("sh").setLevel(logging.WARNING)  # one INFO line per subprocess otherwise
    config, loaded = obj.loaded()
    try:
        code = daemon.serve(config, loaded)
    except HiveError as exc:
        fail(str(exc))
    sys.exit(code)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def plugins_command(obj: HiveContext, as_json: bool) -> None:
    """List every installed plugin: enabled or not, where it comes from, the hooks it implements.

    A plugin that cannot be loaded (it fails to import, or implements a hook that does not
    exist) is listed with its error; the exit code is 1 when such a plugin is enabled.
    """
    from hivekit import plugins

    available = plugins.installed()
    enabled, _problems = plugins.enabled_names(obj.config, available)
    errors: dict[str, str] = {}
    pm = plugins.make_manager()
    objs = plugins.register_all(pm, sorted(available), available,
                                on_error=lambda name, exc: errors.__setitem__(name, str(exc)))
    rows = []
    for name, plugin in sorted(available.items()):
        row: dict[str, Any] = {
            "name": name, "enabled": name in enabled, "module": plugin.entry_point.value,
            "distribution": plugin.distribution, "version": plugin.version, "hooks": [],
        }
        if name in objs:
            row["hooks"] = plugins.hook_names(pm, objs[name])
            row["backend"] = "is_running" in row["hooks"]
        else:
            row["error"] = errors[name]
        rows.append(row)
    broken = any("error" in row and row["enabled"] for row in rows)
    if as_json:
        print_json(rows)
        sys.exit(1 if broken else 0)
    for row in rows:
        state = "enabled " if row["enabled"] else "disabled"
        origin = f"{row['distribution']} {row['version']}" if row["distribution"] else "?"
        kind = " (backend)" if row.get("backend") else ""
        click.echo(f"{state}  {row['name']}{kind}  [{origin}]  {row['module']}")
        if "error" in row:
            click.echo(f"          error: {row['error']}")
        elif row["hooks"]:
            click.echo(f"          hooks: {', '.join(row['hooks'])}")
    if broken:
        sys.exit(1)


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True,
              help='Print JSON: {"ok", "source", "backend", "plugins", "state_dir", "problems"}.')
@click.pass_obj
def config_check(obj: HiveContext, file: str | None, as_json: bool) -> None:
    """Validate a config file (default: the one `serve` would use) and its plugins' tables."""
    from hivekit import config as cfg
    from hivekit import plugins
    from hivekit.errors import ConfigError, HiveError

    if not as_json:
        config, loaded = obj.loaded(file)
    else:
        path = None
        try:
            path = cfg.find_path(file or obj.config_path)
            config = cfg.read(path, keep_going=True)
            loaded = plugins.load(config)
        except HiveError as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else str(exc).splitlines()
            print_json({"ok": False, "source": str(path) if path else None, "backend": None,
                        "plugins": [], "state_dir": None, "problems": problems})
            sys.exit(1)
        print_json({"ok": True, "source": str(config.source), "backend": loaded.backend,
                    "plugins": list(loaded.enabled), "state_dir": str(config.state_dir),
                    "problems": []})
        return
    click.echo(f"{config.source}: ok (backend {loaded.backend}; plugins: "
               f"{', '.join(loaded.enabled)}; state in {config.state_dir})")


# --- plugin commands --------------------------------------------------------------------------


def _argv_config(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return os.environ.get("HIVEKIT_CONFIG")


def _enabled_for_cli(argv: list[str]) -> list[str] | None:
    """Which plugins' commands to offer: the config's enabled set, read cheaply (TOML only).

    None when the config cannot be read: then every installed plugin's commands are offered and
    the command itself reports the config problem.
    """
    import tomllib

    from hivekit.plugins import DEFAULT_ENABLED

    named = _argv_config(argv)
    path = Path(named) if named else Path("hivekit.toml")
    hive: dict[str, Any] = {}
    if path.is_file():
        try:
            hive = tomllib.loads(path.read_text()).get("hive", {})
        except (tomllib.TOMLDecodeError, OSError):
            return None
    elif named:
        return None
    if not isinstance(hive, dict):
        return None
    from hivekit.config import DEFAULT_BACKEND

    names = [*DEFAULT_ENABLED, hive.get("backend", DEFAULT_BACKEND), *hive.get("enable", [])]
    disabled = hive.get("disable", [])
    return [n for n in names if isinstance(n, str) and n not in disabled]


def load_commands(group: click.Group, argv: list[str]) -> dict[str, Any]:
    """Register the enabled plugins' commands on ``group``; a plugin that fails is reported.

    Returns what :mod:`hivekit.clicache` keeps of it: ``owners`` (command → plugin),
    ``plugins`` (plugin → entry point) and ``ok`` (no plugin failed).
    """
    from hivekit import plugins

    wanted = _enabled_for_cli(argv)
    available = plugins.installed()
    names = [n for n in available if wanted is None or n in wanted]
    pm = plugins.make_manager()
    failed: list[str] = []

    def on_error(name: str, exc: Exception) -> None:
        click.echo(f"warning: {exc}", err=True)
        failed.append(name)

    objs = plugins.register_all(pm, names, available, on_error=on_error)
    owners = {name: "core" for name in group.commands}
    for plugin, call in plugins.each(pm, "register_commands", cli=group):
        before = dict(group.commands)
        call()
        for cmd_name in set(group.commands) - set(before):
            owners[cmd_name] = plugin
        for cmd_name, cmd in before.items():
            if group.commands.get(cmd_name) is not cmd:
                fail(f"plugin {plugin!r} registers command {cmd_name!r}, already "
                     f"registered by {owners[cmd_name]!r}")
    owned = {n: o for n, o in owners.items() if o != "core"}
    return {"owners": owned, "ok": not failed,
            "plugins": {p: available[p].entry_point.value for p in set(owned.values())
                        if p in objs and p in available}}


def _cached_record(args: list[str]) -> tuple[str | None, dict[str, Any] | None]:
    """This run's cache key and its record (None when there is none or it is stale)."""
    from hivekit import clicache
    from hivekit.configpath import find_path
    from hivekit.errors import ConfigError

    try:
        path = find_path(_argv_config(args))
    except ConfigError:
        return None, None  # the command reports it
    key = clicache.key(path)
    record = clicache.load(key)
    if record is not None and record.get("config") != (str(path) if path else None):
        record = None
    return key, record


def _write_record(key: str, group: click.Group, loaded: dict[str, Any],
                  args: list[str]) -> None:
    """Keep what this run learnt (only if nothing failed: a problem must show every time)."""
    from hivekit import clicache
    from hivekit import config as cfg
    from hivekit.errors import ConfigError

    if not loaded["ok"]:
        return
    try:
        path = cfg.find_path(_argv_config(args))
        config = cfg.read(path)
    except ConfigError:
        return
    commands = []
    for name, plugin in sorted(loaded["owners"].items()):
        cmd = group.commands[name]
        commands.append({"name": name, "plugin": plugin, "help": cmd.help,
                         "short_help": cmd.short_help, "hidden": cmd.hidden,
                         "deprecated": bool(cmd.deprecated)})
    record = {"config": str(path) if path else None, "commands": commands,
              "plugins": loaded["plugins"], "runtime_dir": str(config.runtime_dir),
              "state_dir": str(config.state_dir)}
    modules = []
    for value in loaded["plugins"].values():
        module = value.partition(":")[0]
        found = sys.modules.get(module)
        # A plugin that is a package: itself and its submodules; a module: its package too.
        modules.append(module if hasattr(found, "__path__") else module.rpartition(".")[0]
                       or module)
    clicache.store(key, record, modules)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    key, record = _cached_record(args)
    if record is not None:
        cli.use_record(record)
    else:
        loaded = load_commands(cli, args)
        if key is not None:
            _write_record(key, cli, loaded, args)
    cli.main(args=args, prog_name="hivekit")
