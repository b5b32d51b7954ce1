"""The agent's identity environment: the one definition of every ``HIVE_*`` variable.

Every backend gives its agents these (``hive.agent_env(agent, mounts=...)``), and an agent's
own config cannot override them (the process backend refuses them in ``agent.toml``; the
``nixos_container`` backend writes them to ``/run/hive/identity.env``, which
``nix/agent-base.nix`` reads as the agent service's ``EnvironmentFile``). The table below is
also what the docs list and what the tests check the backends and the Nix files against.

Paths are given as the agent sees them: a backend passes its **mounts**, the host paths it makes
visible inside the agent's sandbox or container and where they appear there. A variable whose
host path is not visible inside is left out (a container that sees no applied repo gets no
``HIVE_CONFIG``). ``mounts=None`` means the agent sees the host's own filesystem (a plain
process). Nothing here assumes the agent runs on the daemon's host: a backend that puts agents
elsewhere mounts the same directories there (see docs/kubernetes.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from attrs import frozen

if TYPE_CHECKING:
    from hivekit.hive import Hive
    from hivekit.records import AgentSpec


@frozen
class Variable:
    """One identity variable."""

    name: str
    #: What it holds, for the docs.
    meaning: str
    #: Set for the manager only.
    manager_only: bool = False


#: Every identity variable, in the order they are documented.
VARIABLES: tuple[Variable, ...] = (
    Variable("HIVE_LABEL", "the agent's name"),
    Variable("HIVE_PORT", "its web port (deterministic from the name; the manager's is "
                          "`manager_port`)"),
    Variable("HIVE_SOCKET", "its API socket (`<runtime_dir>/agents/<n>/hive.sock` on the host, "
                            "`/run/hive/hive.sock` in a sandbox or container)"),
    Variable("HIVE_DASHBOARD_PORT", "`[hive] dashboard_port`"),
    Variable("HIVE_OPERATOR_PRONOUNS", "`[hive] operator_pronouns`"),
    Variable("HIVE_NOTES", "its notes dir (`<state_dir>/agents/<n>/state`: read-write, its "
                           "working directory)"),
    Variable("HIVE_CREDS", "its model credentials dir (`<state_dir>/agents/<n>/creds`: "
                           "read-write, kept across destroy)"),
    Variable("HIVE_SHARED", "the dir shared by every agent (`<state_dir>/shared`)"),
    Variable("HIVE_CONFIG", "its applied config repo (read-only), where the backend shows it"),
    Variable("HIVE_AGENTS", "every agent's proposed repo (`<state_dir>/agents`)",
             manager_only=True),
    Variable("HIVE_APPLIED", "every agent's applied repo (`<state_dir>/applied`, read-only)",
             manager_only=True),
)

#: The names alone.
NAMES: frozenset[str] = frozenset(v.name for v in VARIABLES)

#: ``(host path, path inside)`` pairs: what a backend makes visible to an agent, and where.
Mounts = Iterable[tuple[Path, str]]


def inside(path: Path, mounts: Mounts | None) -> str | None:
    """Where the agent sees host ``path``: under the mount with the longest matching host
    path; None when no mount shows it; ``path`` itself when ``mounts`` is None."""
    if mounts is None:
        return str(path)
    best: tuple[int, str] | None = None
    for host, target in mounts:
        host = Path(host)
        if path == host or host in path.parents:
            depth = len(host.parts)
            if best is None or depth > best[0]:
                rest = path.relative_to(host)
                base = target.rstrip("/") or "/"
                best = (depth, base if rest == Path(".") else f"{base.rstrip('/')}/{rest}")
    return best[1] if best else None


def agent_env(hive: Hive, agent: AgentSpec, mounts: Mounts | None = None) -> dict[str, str]:
    """The identity environment of ``agent``, its paths as ``mounts`` show them (see above)."""
    mounts = None if mounts is None else list(mounts)
    p, h = agent.paths, hive.config.hive
    paths = {
        "HIVE_SOCKET": p.socket, "HIVE_NOTES": p.state, "HIVE_CREDS": p.creds,
        "HIVE_SHARED": hive.paths.shared, "HIVE_CONFIG": p.applied,
        "HIVE_AGENTS": hive.paths.agents_root, "HIVE_APPLIED": hive.paths.applied_root,
    }
    values = {
        "HIVE_LABEL": agent.name, "HIVE_PORT": str(agent.port),
        "HIVE_DASHBOARD_PORT": str(h.dashboard_port),
        "HIVE_OPERATOR_PRONOUNS": h.operator_pronouns,
    }
    env: dict[str, str] = {}
    for var in VARIABLES:
        if var.manager_only and not agent.is_manager:
            continue
        value = values.get(var.name)
        if value is None:
            value = inside(paths[var.name], mounts)
        if value is not None:
            env[var.name] = value
    return env


def environment_file(env: dict[str, str]) -> str:
    """``env`` as a systemd ``EnvironmentFile`` (double-quoted values, ``\\`` and ``"`` escaped).

    :raises ValueError: a value holds a line break or another control character.
    """
    lines = ["# Written by hivekit: the agent's identity (hivekit.identity). Rewritten at every "
             "start."]
    for key, value in env.items():
        if any(ord(c) < 32 for c in value):
            raise ValueError(f"{key} holds a control character, which an environment file "
                             "cannot carry")
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"
