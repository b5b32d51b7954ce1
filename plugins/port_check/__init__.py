"""Port collisions (bundled plugin ``port_check``, on by default).

Every agent's web port is deterministic from its name (:func:`hivekit.names.agent_port`: the
manager's fixed port, else ``port_base + FNV-1a-32(name) % port_range``), so two names can hash
to the same port. The harness of the second agent would then fail to bind forever; this plugin
turns that into an error the operator can act on, before anything is built:

* a spawn or apply **request** for an agent whose port another running (or crash-looping:
  ``failing``) agent holds is refused at once (``check_request``), naming the holder and saying
  how to size ``port_range`` ("port 8123 is already taken by 'coder' — rename one of them and
  retry; ports come from the names: with 300 agents and [hive] port_range = 900, expect about
  49.8 pairs ..."): no approval, repo or tombstone is made;
* the same check runs again when the spawn or a rebuild starts (the holder may have started
  since the request was approved), before the backend or any other plugin acts;
* ``GET /api/state`` gets ``port_conflicts: [{port, agents}]``, one entry per port shared by two
  or more registered agents, running or not (so a collision is visible before it bites).

The port itself is computed by the core and reaches every backend as ``AgentSpec.port``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from hivekit import AgentStatus, Conflict, hookimpl

if TYPE_CHECKING:
    from hivekit import AgentSpec, AgentView, Deploy, Hive, Request


def holder(hive: Hive, agent: AgentSpec) -> str | None:
    """The first other agent (by name) that runs, or keeps trying to (``failing``), and has
    ``agent``'s port, if any. Read from the hive's rows: no backend call per agent."""
    for row in hive.view.rows():
        if row.name != agent.name and row.port == agent.port and \
                row.status in (AgentStatus.RUNNING, AgentStatus.FAILING):
            return row.name
    return None


def sizing_hint(hive: Hive, agent: AgentSpec) -> str:
    """How likely collisions are with this hive's ``port_range``, and what to do about it."""
    span = hive.config.hive.port_range
    names = hive.agent_names()
    n = len(names) + (agent.name not in names)
    pairs = n * (n - 1) / (2 * span)
    return (f"ports come from the names: with {n} agents and [hive] port_range = {span}, "
            f"expect about {pairs:.1f} pairs of names to share a port (n*(n-1)/2 / "
            f"port_range); a larger port_range makes that rarer (README: \"Sizing "
            f"port_range\")")


def check(hive: Hive, agent: AgentSpec) -> None:
    """Raise :class:`Conflict` if another running agent holds ``agent``'s port."""
    other = holder(hive, agent)
    if other is not None:
        raise Conflict(
            f"port {agent.port} is already taken by '{other}' — rename one of them and retry; "
            + sizing_hint(hive, agent))


def conflicts(agents: list[AgentView]) -> list[dict[str, Any]]:
    """Every port shared by two or more of ``agents``: ``[{port, agents}]``, sorted by port."""
    by_port: dict[int, list[str]] = defaultdict(list)
    for view in agents:
        by_port[view.port].append(view.name)
    return [{"port": port, "agents": sorted(names)}
            for port, names in sorted(by_port.items()) if len(names) > 1]


@hookimpl
def check_request(hive: Hive, request: Request) -> None:
    check(hive, request.agent)


# The second check is a wrapper (which pluggy runs before every plain implementation, tryfirst
# or not): plugins that prepare a spawn with tryfirst (the meta flake syncs before the
# container is created) are registered after this default plugin and would otherwise run
# first, leaving their side effects behind for a spawn that is then refused.


@hookimpl(wrapper=True, tryfirst=True)
def spawn(hive: Hive, agent: AgentSpec) -> Generator[None, None, None]:
    check(hive, agent)
    return (yield)


@hookimpl(wrapper=True, tryfirst=True)
def rebuild(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> Generator[None, None, None]:
    check(hive, agent)
    return (yield)


@hookimpl
def state_extras(hive: Hive, agents: list[AgentView]) -> dict[str, Any]:
    return {"port_conflicts": conflicts(agents)}
