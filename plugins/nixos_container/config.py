"""The ``[nixos_container]`` table: executables, host paths, flakes and resource limits.

Bad values are refused when the config is loaded (``hivekit config check`` and ``serve`` say
which key and why), never at the first spawn.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
from attrs import field, frozen

from hivekit import NAME_RULE, positive

# systemd.resource-control(5): MemoryMax= takes bytes with an optional K/M/G/T/P/E suffix
# (base 1024), a percentage of physical memory, or "infinity".
_MEMORY = re.compile(r"(?:(?P<size>\d+(?:\.\d+)?)(?P<unit>[KMGTPE]?)|(?P<pct>\d+(?:\.\d+)?)%"
                     r"|infinity)")
# CPUQuota= takes a percentage of one CPU (may exceed 100% on several CPUs); empty = no quota.
_QUOTA = re.compile(r"(?P<pct>\d+(?:\.\d+)?)%|")


def check_memory_max(value: str) -> None:
    """Raise ValueError unless ``value`` is a MemoryMax= systemd accepts and that leaves room."""
    m = _MEMORY.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(
            f"memory_max {value!r} is not a systemd MemoryMax= value: use a size such as "
            "'2G' or '512M' (K/M/G/T suffixes, base 1024), a percentage such as '25%', "
            "or 'infinity'")
    if (m["size"] is not None and float(m["size"]) == 0) or (
            m["pct"] is not None and not 0 < float(m["pct"]) <= 100):
        raise ValueError(f"memory_max {value!r} leaves the container no memory or is over "
                         "100%: use a positive size, a percentage in (0, 100], or 'infinity'")


def check_cpu_quota(value: str) -> None:
    """Raise ValueError unless ``value`` is a positive CPUQuota= percentage (or empty)."""
    m = _QUOTA.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(
            f"cpu_quota {value!r} is not a systemd CPUQuota= value: use a percentage of one "
            "CPU such as '50%' or '200%' (two CPUs), or '' for no quota")
    if m["pct"] is not None and float(m["pct"]) == 0:
        raise ValueError(f"cpu_quota {value!r} would never let the container run: use a "
                         "positive percentage, or '' for no quota")


def check_flake(value: str) -> None:
    """Raise ValueError unless ``value`` is a flake reference without an attribute."""
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ValueError(f"flake {value!r} must be a non-empty flake reference such as "
                         "'/etc/hive-flake' or 'git+file:///srv/hive'")
    if "#" in value:
        raise ValueError(f"flake {value!r}: give the flake without '#attribute'; hivekit "
                         "builds '<flake>#<agent name>'")
    if value.startswith(("./", "../", "~")) or value in (".", ".."):
        raise ValueError(f"flake {value!r}: use an absolute path (nixos-container runs in "
                         "its own working directory)")
    if any(c.isspace() for c in value):
        raise ValueError(f"flake {value!r} contains whitespace")


def _validator(check: Any) -> Any:
    def validate(_inst: Any, _att: attrs.Attribute, value: Any) -> None:
        if value is not None:
            check(value)

    return validate


def _agents(_inst: Any, _att: attrs.Attribute, value: dict[str, Any]) -> None:
    for name in value:
        if not NAME_RULE.fullmatch(name):
            raise ValueError(f"agents: {name!r} is not an agent name (1-9 characters: a "
                             "lowercase letter, then lowercase letters, digits or '-')")


@frozen
class AgentSettings:
    """``[nixos_container.agents.<name>]``: one agent's overrides of the hive-wide values."""

    #: The flake to build this agent from (``<flake>#<name>``) when no plugin answers
    #: ``agent_flake_ref``; overrides the table's ``flake``.
    flake: str | None = field(default=None, validator=_validator(check_flake))
    memory_max: str | None = field(default=None, validator=_validator(check_memory_max))
    cpu_quota: str | None = field(default=None, validator=_validator(check_cpu_quota))
    #: Seconds a deploy of this agent may wait for it to become healthy; overrides what the
    #: agent's own config declares (``hivekit.agent.health.timeout``) and ``[hive]
    #: health_timeout``.
    health_timeout: float | None = field(default=None, validator=attrs.validators.optional(
        positive))


@frozen
class NixosContainerConfig:
    """``[nixos_container]``."""

    #: The ``nixos-container`` executable (a name on PATH or a path).
    nixos_container: str = "nixos-container"
    #: The ``systemctl`` executable.
    systemctl: str = "systemctl"
    #: The ``journalctl`` executable (``hivekit logs`` reads a container's journal with it).
    journalctl: str = "journalctl"
    #: The ``nix-env`` executable (sets a container's system profile back after a failed
    #: activation).
    nix_env: str = "nix-env"
    #: Where nixos-container keeps each container's system profile
    #: (``<profiles_dir>/<container>/system``; nixos-container.pl's per-container profiles).
    profiles_dir: Path = Path("/nix/var/nix/profiles/per-container")
    #: Where nixos-container keeps ``<container>.conf`` (its configurationDirectory).
    containers_conf_dir: Path = Path("/etc/nixos-containers")
    #: Where runtime unit drop-ins go (``container@<c>.service.d/hivekit-limits.conf``).
    systemd_run_dir: Path = Path("/run/systemd/system")
    #: nixos-container's working directories (create/update leave a ``.tmp`` link in the
    #: current directory); default ``<state_dir>/nixos-container``. One subdirectory per
    #: container, so concurrent builds never share a ``.tmp``.
    work_dir: Path | None = None
    #: The flake every agent is built from (``<flake>#<name>``) when no plugin answers
    #: ``agent_flake_ref`` (the meta_flake plugin does) and the agent has no ``flake`` of its own.
    flake: str | None = field(default=None, validator=_validator(check_flake))
    #: Resource limits of every container (systemd MemoryMax= and CPUQuota=).
    memory_max: str = field(default="2G", validator=_validator(check_memory_max))
    cpu_quota: str = field(default="50%", validator=_validator(check_cpu_quota))
    #: Where an agent's ``creds/`` dir appears inside its container (where the model's CLI
    #: looks for its login: Claude Code reads ``$HOME/.claude``).
    creds_mount: str = "/root/.claude"
    #: Seconds ``create``/``update`` (a full nix build) may take.
    build_timeout: float = field(default=3600.0, validator=positive)
    #: Seconds every other command (start, stop, destroy, systemctl) may take.
    timeout: float = field(default=300.0, validator=positive)
    #: Seconds between two reads of every container's status (one ``systemctl list-units``
    #: for all of them; the dashboard shows a container that died within this long).
    status_interval: float = field(default=5.0, validator=positive)
    #: Seconds a container and its agent service must run without a restart after a build
    #: before the deploy counts it healthy (an agent's ``hivekit.agent.health.settle``
    #: overrides it).
    health_settle: float = field(default=1.0, validator=positive)
    #: Per-agent overrides: ``[nixos_container.agents.coder] memory_max = "4G"``.
    agents: dict[str, AgentSettings] = field(factory=dict, validator=_agents)

    def __attrs_post_init__(self) -> None:
        if not self.creds_mount.startswith("/") or any(
                c.isspace() or c in "\"':\\" for c in self.creds_mount):
            raise ValueError(f"creds_mount {self.creds_mount!r} must be an absolute path "
                             "without spaces, quotes or ':'")

    def agent(self, name: str) -> AgentSettings:
        return self.agents.get(name, AgentSettings())

    def memory_max_of(self, name: str) -> str:
        return self.agent(name).memory_max or self.memory_max

    def cpu_quota_of(self, name: str) -> str:
        override = self.agent(name).cpu_quota
        return self.cpu_quota if override is None else override
