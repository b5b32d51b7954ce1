"""The ``[process]`` config table: sandboxing, supervision, and per-hive/per-agent rlimits."""

from __future__ import annotations

import re
from typing import Any

import attrs
from attrs import field, frozen

from hivekit import check_name, positive

SANDBOXES = ("auto", "bwrap", "none")
CGROUP_MODES = ("auto", "required", "off")
_SIZE = re.compile(r"(?P<n>\d+)\s*(?P<unit>[KMGT]?)(?:i?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
#: The value that lifts a limit the hive-wide table set (``memory = "unlimited"``, or 0).
UNLIMITED = "unlimited"


def parse_size(text: str) -> int:
    """Bytes in ``"2G"``/``"512M"``/``"1073741824"`` (binary units); 0 for ``"unlimited"``."""
    text = text.strip()
    if text.lower() == UNLIMITED:
        return 0
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(f"{text!r} is not a size: use bytes or a number with K, M, G or T "
                         f"(e.g. \"2G\"), or \"{UNLIMITED}\"")
    return int(m["n"]) * _UNITS[m["unit"].upper()]


def _size(_inst: Any, att: attrs.Attribute, value: str | None) -> None:
    if value is not None:
        try:
            parse_size(value)
        except ValueError as exc:
            raise ValueError(f"{att.name}: {exc}") from None


def _count(_inst: Any, att: attrs.Attribute, value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{att.name} must be 0 (unlimited) or more, got {value}")



def _cpus(_inst: Any, att: attrs.Attribute, value: float | None) -> None:
    if value is not None and (isinstance(value, bool) or not value >= 0):
        raise ValueError(f"{att.name} must be 0 (unlimited) or a number of cores such as 1.5, "
                         f"got {value!r}")


def _ro_binds(_inst: Any, att: attrs.Attribute, value: list[str]) -> None:
    for path in value:
        if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
            raise ValueError(f"{att.name}: {path!r} must be an absolute path without '..'")


@frozen
class Resolved:
    """One agent's limits, the per-agent table merged over the hive-wide keys; None = none."""

    #: Bytes of memory for the whole agent (cgroup), or per process (RLIMIT_DATA, fallback).
    memory: int | None
    #: Cores' worth of CPU time (cgroup only).
    cpus: float | None
    #: CPU seconds per process (RLIMIT_CPU).
    cpu_seconds: int | None
    #: Open file descriptors per process (RLIMIT_NOFILE).
    open_files: int | None


@frozen
class Limits:
    """Resource limits for one agent; None = not set here (the hive-wide key applies)."""

    #: The agent's memory, e.g. "2G" (see the README: a cgroup's limit on every process of the
    #: agent together, else RLIMIT_DATA per process); "unlimited" (or "0") lifts a hive-wide one.
    memory: str | None = field(default=None, validator=_size)
    #: CPU cores' worth of time the agent may use at once, e.g. 1.5 (cgroups only); 0 = no cap.
    cpus: float | None = field(default=None, validator=_cpus)
    #: CPU seconds each process may use in total (RLIMIT_CPU); 0 = unlimited.
    cpu_seconds: int | None = field(default=None, validator=_count)
    #: Open file descriptors per process (RLIMIT_NOFILE); 0 = leave as inherited.
    open_files: int | None = field(default=None, validator=_count)


def _sandbox(_inst: Any, _att: attrs.Attribute, value: str) -> None:
    if value not in SANDBOXES:
        raise ValueError(f"sandbox must be one of {', '.join(SANDBOXES)}, got {value!r}")


@frozen
class ProcessConfig:
    """``[process]``: how agents are run. Every key has a default."""

    #: "auto": bubblewrap when ``bwrap`` runs here, else plain processes with a warning;
    #: "bwrap": bubblewrap or refuse to start; "none": plain processes.
    sandbox: str = field(default="auto", validator=_sandbox)
    #: The bubblewrap program (a name on PATH or an absolute path).
    bwrap: str = "bwrap"
    #: Seconds between SIGTERM and SIGKILL when an agent is stopped.
    stop_timeout: float = field(default=10.0, validator=positive)
    #: Seconds a start may take to listen on HIVE_PORT before it counts as failed.
    start_timeout: float = field(default=30.0, validator=positive)
    #: First wait before restarting a crashed agent; doubles per crash up to the max.
    restart_delay: float = field(default=1.0, validator=positive)
    restart_delay_max: float = field(default=60.0, validator=positive)
    #: An agent that ran this long before crashing restarts after ``restart_delay`` again.
    restart_reset: float = field(default=60.0, validator=positive)
    #: ``agent.log`` (in the agent's notes dir) is rotated to ``agent.log.1`` past this size.
    log_max_bytes: int = field(default=10 * 1024 * 1024, validator=positive)
    #: "auto": limits through cgroups when the hive may make them, else rlimits with a warning
    #: naming what is not enforced; "required": refuse to start without; "off": rlimits only.
    cgroup: str = field(default="auto", validator=attrs.validators.in_(CGROUP_MODES))
    #: Further host paths (absolute) bound read-only into every agent's sandbox.
    ro_binds: list[str] = field(factory=list, validator=_ro_binds)
    #: Seconds an agent must run without a restart after its build before a deploy counts it
    #: healthy (an agent's ``[health] settle`` overrides it).
    health_settle: float = field(default=1.0, validator=positive)
    #: Hive-wide limits (see :class:`Limits`).
    memory: str | None = field(default=None, validator=_size)
    cpus: float | None = field(default=None, validator=_cpus)
    cpu_seconds: int | None = field(default=None, validator=_count)
    open_files: int | None = field(default=None, validator=_count)
    #: Per-agent limits, overriding the hive-wide ones key by key: ``[process.agents.coder]``.
    agents: dict[str, Limits] = field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for name in self.agents:
            try:
                check_name(name)
            except Exception as exc:
                raise ValueError(f"agents: {exc}") from None

    def limits(self, agent: str) -> Resolved:
        """``agent``'s limits: its own keys, else the hive-wide ones; unset or lifted → None."""
        own = self.agents.get(agent, Limits())

        def pick(key: str) -> Any:
            mine = getattr(own, key)
            return mine if mine is not None else getattr(self, key)

        memory = pick("memory")
        return Resolved(memory=(parse_size(memory) or None) if memory is not None else None,
                        cpus=pick("cpus") or None, cpu_seconds=pick("cpu_seconds") or None,
                        open_files=pick("open_files") or None)

    def any_set(self, key: str) -> bool:
        """Whether any agent (or the hive-wide table) sets limit ``key``."""
        return bool(getattr(self, key)) or any(getattr(a, key) for a in self.agents.values())

    def rlimits(self, agent: str, *, memory: bool = True) -> dict[str, int]:
        """The rlimits for ``agent`` as ``{"DATA": bytes, "CPU": seconds, "NOFILE": n}``; a
        limit unset or lifted is absent (the agent inherits the hive's own). ``memory=False``
        when a cgroup enforces it instead."""
        got = self.limits(agent)
        out: dict[str, int] = {}
        if memory and got.memory:
            out["DATA"] = got.memory
        if got.cpu_seconds:
            out["CPU"] = got.cpu_seconds
        if got.open_files:
            out["NOFILE"] = got.open_files
        return out
