"""The operator's config: one TOML file, a ``[hive]`` table and one table per plugin.

Where it comes from, first match wins: ``--config FILE``, ``$HIVEKIT_CONFIG``, ``./hivekit.toml``,
else the embedded defaults (state under ``./.hivekit``). Relative paths in the file are relative
to the file's directory; with no file, to the current directory.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import attrs
from attrs import field, frozen

from hivekit.configpath import find_path  # noqa: F401 - hivekit.config.find_path, as before
from hivekit.errors import ConfigError

#: The backend the hive runs on when the config names none.
DEFAULT_BACKEND = "process"


def positive(_inst: Any, att: attrs.Attribute, value: float) -> None:
    """An attrs validator for plugins' config classes too: the value must be above zero."""
    if value <= 0:
        raise ValueError(f"{att.name} must be positive, got {value}")


def _port(_inst: Any, att: attrs.Attribute, value: int) -> None:
    if not 0 < value < 65536:
        raise ValueError(f"{att.name} must be a TCP port (1-65535), got {value}")


def _manager(_inst: Any, att: attrs.Attribute, value: str) -> None:
    # Checked here, before any path is built from it: `manager = "../../x"` must never reach
    # the disk (the manager's folders are made from its name at the first start).
    from hivekit.names import NAME_RULE, RESERVED, RULE_TEXT

    if not NAME_RULE.fullmatch(value):
        raise ValueError(f"{value!r} is not an agent name: {RULE_TEXT}")
    if value in RESERVED:
        raise ValueError(f"{value!r} is reserved (it names a sender, not an agent); pick "
                         "another name")


def _line(_inst: Any, att: attrs.Attribute, value: str) -> None:
    if any(ord(c) < 32 or c == "\x7f" for c in value) or len(value) > 100:
        raise ValueError(f"{att.name} must be one line of at most 100 characters without "
                         "control characters")


#: hive-c0re's wake-up (see hivekit.wake; kept there, with the placeholders it fills in).
WAKE_TEMPLATE = (
    "{reason}\n\nYou were just (re)started by the operator. If you were mid-task, check "
    "`{notes}/` for your notes and pick up where you left off. claude's `--continue` session "
    "is intact, so prior context is still in your window.")
#: The reference daemon's broadcast hint, word for word.
BROADCAST_HINT = "\n\n⚠️ _hint: this was a broadcast and may not need any action from you_"


def _text(_inst: Any, att: attrs.Attribute, value: str) -> None:
    if len(value) > 4000 or any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise ValueError("must be at most 4000 characters, without control characters but "
                         "newlines and tabs")


def _template(_inst: Any, att: attrs.Attribute, value: str) -> None:
    from hivekit.wake import check_template

    check_template(value)


def _group(_inst: Any, att: attrs.Attribute, value: str | None) -> None:
    # useradd(8)'s rule for names; existence is checked when the daemon starts (a config is
    # also checked where the group need not exist, such as a Nix build).
    if value is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        raise ValueError(f"{value!r} is not a group name (a lowercase letter or '_', then up "
                         "to 31 lowercase letters, digits, '_' or '-')")


@frozen
class HiveConfig:
    """The ``[hive]`` table."""

    #: Where everything durable lives (hive.db, agents/, applied/, meta/, shared/).
    state_dir: Path = Path(".hivekit")
    #: Sockets; default ``<state_dir>/run``. Keep it short: a socket path has a 107-byte limit.
    runtime_dir: Path | None = None
    #: The manager's reserved name; it is declared here and brought up at start.
    manager: str = field(default="manager", validator=_manager)
    #: How agents refer to the operator (reaches agents as HIVE_OPERATOR_PRONOUNS).
    operator_pronouns: str = field(default="she/her", validator=_line)
    #: The backend plugin: exactly one runs the containers.
    backend: str = DEFAULT_BACKEND
    #: Plugins to enable on top of the defaults (third-party plugins are off until listed).
    enable: list[str] = field(factory=list)
    #: Default plugins to turn off.
    disable: list[str] = field(factory=list)
    manager_port: int = field(default=8000, validator=_port)
    port_base: int = field(default=8100, validator=_port)
    port_range: int = field(default=900, validator=positive)
    #: The dashboard's TCP port as agents should know it (HIVE_DASHBOARD_PORT).
    dashboard_port: int = field(default=7000, validator=_port)
    #: The most of an approval's diff any answer carries, in bytes (1 MiB); a longer diff is
    #: cut at a line and ends with a marker saying how much was shown and how to see it all.
    max_diff_bytes: int = field(default=1024 * 1024, validator=positive)
    #: Seconds a deploy waits after its build for the agent to prove healthy (the ``verify``
    #: step) before it fails and is rolled back; a backend may say an agent's own.
    health_timeout: float = field(default=60.0, validator=positive)
    #: What an agent is told when it comes back up (after an apply, an operator's start,
    #: restart or rebuild, an update rebuild): ``{reason}``, ``{notes}`` (its notes dir as it
    #: sees it) and ``{name}`` are filled in (hivekit.wake). Default: hive-c0re's.
    wake_template: str = field(default=WAKE_TEMPLATE, validator=_template)
    #: Appended to every broadcast message (what hive-c0re's agents' prompts know).
    broadcast_hint: str = field(default=BROADCAST_HINT, validator=_text)
    #: A group whose members may use the admin socket (and so the CLI): admin.sock gets mode
    #: 0660 and this group, the runtime dir this group and 0750. None: the daemon's user only.
    operator_group: str | None = field(default=None, validator=_group)

    def __attrs_post_init__(self) -> None:
        if self.port_base + self.port_range - 1 > 65535:
            raise ValueError(f"port_base + port_range goes past 65535 ({self.port_base} + "
                             f"{self.port_range}); lower one of them")


@frozen
class Config:
    """A read config: the ``[hive]`` table structured, the plugin tables still raw."""

    hive: HiveConfig
    #: Every other top-level table, by name, as read.
    tables: dict[str, dict[str, Any]]
    #: The file it came from; None for the embedded defaults.
    path: Path | None
    #: What relative paths are relative to.
    base_dir: Path
    #: Problems found reading it (only with ``read(keep_going=True)``; one line each). A config
    #: with problems is never served: :func:`hivekit.plugins.load` raises them with its own.
    problems: list[str] = field(factory=list)

    @property
    def source(self) -> str:
        """How errors name the config: its path, or "embedded defaults"."""
        return str(self.path) if self.path else "embedded defaults"

    @property
    def state_dir(self) -> Path:
        return (self.base_dir / self.hive.state_dir).resolve()

    @property
    def runtime_dir(self) -> Path:
        if self.hive.runtime_dir is None:
            return self.state_dir / "run"
        return (self.base_dir / self.hive.runtime_dir).resolve()


def read(path: Path | None, *, keep_going: bool = False) -> Config:
    """Read and check the ``[hive]`` table; plugin tables are checked by :mod:`hivekit.plugins`.

    Raises :class:`ConfigError` with one line per problem, each naming the file, table and key.
    With ``keep_going`` a bad ``[hive]`` table is not raised but kept in :attr:`Config.problems`
    (the keys in question at their defaults), so that :func:`hivekit.plugins.load` checks the
    plugin tables too and reports every problem at once; such a config is never served.
    """
    if path is None:
        return Config(hive=HiveConfig(), tables={}, path=None, base_dir=Path.cwd())
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([f"{path}: cannot read: {reason}"]) from None
    hive_raw = raw.pop("hive", {})
    problems: list[str] = []
    if not isinstance(hive_raw, dict):
        problems.append(f"{path}: hive must be a table ([hive]), not a value")
        hive_raw = {}
    for name, value in raw.items():
        if not isinstance(value, dict):
            problems.append(
                f"{path}: top-level key {name!r} is not a table; settings go under [hive] "
                "or under a plugin's own [table]"
            )
    hive = _salvage(HiveConfig, hive_raw, "hive", path, problems)
    if problems and not keep_going:
        raise ConfigError(problems)
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    return Config(hive=hive, tables=tables, path=path, base_dir=path.parent, problems=problems)


def _salvage(cls: type, raw: dict[str, Any], table: str, source: Path, problems: list[str]) -> Any:
    """``raw`` structured into ``cls``; on problems (appended), the class with the offending keys
    left at their defaults, so that checking can go on."""
    from hivekit.convert import Invalid, structure

    try:
        return structure(raw, cls)
    except Invalid as exc:
        problems.extend(table_problems(exc, table, source))
        bad = {p.path.split(".")[0].split("[")[0] for p in exc.problems}
    try:
        return structure({k: v for k, v in raw.items() if k not in bad}, cls)
    except Invalid:
        return cls()


def structure_table(
    cls: type, raw: dict[str, Any], table: str, source: Path | str | None, problems: list[str]
) -> Any:
    """Structure one table into ``cls``; on failure append one line per problem and return None.

    Each line names the file, the table and the key: ``hivekit.toml: [hive] port_base: expected
    an integer, got the string "8100"``.
    """
    from hivekit.convert import Invalid, structure

    try:
        return structure(raw, cls)
    except Invalid as exc:
        problems.extend(table_problems(exc, table, source))
    return None


def table_problems(exc: Any, table: str, source: Path | str | None) -> list[str]:
    """The lines of a :class:`~hivekit.convert.Invalid` for table ``[table]`` of ``source``."""
    where = source or "embedded defaults"
    return [f"{where}: [{table}] {p.path}: {p.message}" if p.path
            else f"{where}: [{table}]: {p.message}" for p in exc.problems]
