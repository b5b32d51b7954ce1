"""The ``[process]`` config table: sandboxing, supervision, and per-hive/per-agent rlimits."""

from __future__ import annotations

import re
from typing import Any

import attrs
from attrs import field, frozen

from hivekit import check_name, positive

SANDBOXES = ("auto", "bwrap", "none")
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



@frozen
class Limits:
    """Resource limits (rlimits) for one agent's processes; None = not set here (inherit)."""

    #: Address space (RLIMIT_AS), e.g. "2G"; "unlimited" (or "0") lifts a hive-wide limit.
    memory: str | None = field(default=None, validator=_size)
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
    #: Seconds an agent must run without a restart after its build before a deploy counts it
    #: healthy (an agent's ``[health] settle`` overrides it).
    health_settle: float = field(default=1.0, validator=positive)
    #: Hive-wide limits (see :class:`Limits`).
    memory: str | None = field(default=None, validator=_size)
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

    def rlimits(self, agent: str) -> dict[str, int]:
        """The rlimits for ``agent`` as ``{"AS": bytes, "CPU": seconds, "NOFILE": n}``; a limit
        that is unset or lifted is absent (the agent inherits the hive's own)."""
        own = self.agents.get(agent, Limits())
        memory = own.memory if own.memory is not None else self.memory
        cpu = own.cpu_seconds if own.cpu_seconds is not None else self.cpu_seconds
        files = own.open_files if own.open_files is not None else self.open_files
        out: dict[str, int] = {}
        if memory is not None and parse_size(memory):
            out["AS"] = parse_size(memory)
        if cpu:
            out["CPU"] = cpu
        if files:
            out["NOFILE"] = files
        return out

