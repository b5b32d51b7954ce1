"""The operator's config: one TOML file, a ``[hive]`` table and one table per plugin.

Where it comes from, first match wins: ``--config FILE``, ``$HIVEKIT_CONFIG``, ``./hivekit.toml``,
else the embedded defaults (state under ``./.hivekit``). Relative paths in the file are relative
to the file's directory; with no file, to the current directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from attrs import field, frozen

from hivekit.errors import ConfigError

if TYPE_CHECKING:
    import cattrs

#: The backend the hive runs on when the config names none.
DEFAULT_BACKEND = "process"


def positive(_inst: Any, att: attrs.Attribute, value: float) -> None:
    """An attrs validator for plugins' config classes too: the value must be above zero."""
    if value <= 0:
        raise ValueError(f"{att.name} must be positive, got {value}")


def _port(_inst: Any, att: attrs.Attribute, value: int) -> None:
    if not 0 < value < 65536:
        raise ValueError(f"{att.name} must be a TCP port (1-65535), got {value}")


@frozen
class HiveConfig:
    """The ``[hive]`` table."""

    #: Where everything durable lives (hive.db, agents/, applied/, meta/, shared/).
    state_dir: Path = Path(".hivekit")
    #: Sockets; default ``<state_dir>/run``. Keep it short: a socket path has a 107-byte limit.
    runtime_dir: Path | None = None
    #: The manager's reserved name; it is declared here and brought up at start.
    manager: str = "manager"
    #: How agents refer to the operator (reaches agents as HIVE_OPERATOR_PRONOUNS).
    operator_pronouns: str = "she/her"
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


def find_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to use, or None for the embedded defaults.

    An explicitly named file (``--config``/``$HIVEKIT_CONFIG``) must exist.
    """
    named = explicit or os.environ.get("HIVEKIT_CONFIG") or None
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError([f"{path}: no such config file"])
        return path.resolve()
    default = Path("hivekit.toml")
    return default.resolve() if default.is_file() else None


def read(path: Path | None) -> Config:
    """Read and check the ``[hive]`` table; plugin tables are checked by :mod:`hivekit.plugins`.

    Raises :class:`ConfigError` with one line per problem, each naming the file, table and key.
    """
    if path is None:
        return Config(hive=HiveConfig(), tables={}, path=None, base_dir=Path.cwd())
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
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
    hive = structure_table(HiveConfig, hive_raw, "hive", path, problems)
    if problems:
        raise ConfigError(problems)
    assert hive is not None
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    return Config(hive=hive, tables=tables, path=path, base_dir=path.parent)


def structure_table(
    cls: type, raw: dict[str, Any], table: str, source: Path | str | None, problems: list[str]
) -> Any:
    """Structure one table into ``cls``; on failure append one line per problem and return None."""
    import cattrs  # lazily: `hivekit --help` reads the config's [hive] table without cattrs

    from hivekit.convert import converter

    try:
        return converter.structure(raw, cls)
    except cattrs.BaseValidationError as exc:
        where = source or "embedded defaults"
        problems.extend(f"{where}: {line}" for line in _explain(exc, cls, table))
    except (ValueError, TypeError) as exc:
        problems.append(f"{source or 'embedded defaults'}: [{table}]: {exc}")
    return None


_AT = re.compile(r"^(?P<msg>.*) @ \$(?P<path>.*)$")
_EXTRA = re.compile(r"extra fields found \((?P<keys>.*)\)")


def _format(exc: BaseException, type_: type | None) -> str:
    # cattrs says only "invalid value" for a validator's ValueError; its message is the useful part.
    if type(exc) is ValueError and str(exc):
        return str(exc)
    from cattrs.v import format_exception

    return format_exception(exc, type_)


def _explain(exc: cattrs.BaseValidationError, cls: type, table: str) -> list[str]:
    import cattrs

    known = ", ".join(a.name for a in attrs.fields(cls)) if attrs.has(cls) else ""
    lines = []
    for line in cattrs.transform_error(exc, format_exception=_format):
        m = _AT.match(line)
        msg, sub = (m["msg"], m["path"].lstrip(".")) if m else (line, "")
        extra = _EXTRA.search(msg)
        if extra and not sub:
            for key in extra["keys"].split(", "):
                lines.append(f"[{table}] {key}: unknown key (known keys: {known})")
            continue
        lines.append(f"[{table}] {sub}: {msg}" if sub else f"[{table}]: {msg}")
    return lines
