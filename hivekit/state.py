"""What the operator sees: agent views and the ``/api/state`` snapshot."""

from __future__ import annotations

import logging
import os
from typing import Any

from hivekit.convert import converter
from hivekit.git import read_ref
from hivekit.hive import Hive
from hivekit.records import AgentView, ApprovalStatus, Badge, Tombstone

log = logging.getLogger("hivekit")

CORE_KEYS = frozenset(
    {"seq", "agents", "approvals", "questions", "transients", "tombstones", "plugins"})


def agent_view(hive: Hive, name: str) -> AgentView:
    spec = hive.agent(name)
    running = bool(hive.hook.is_running(hive=hive, agent=spec))
    badges: list[Badge] = []
    for plugin, call in hive.each("agent_badges", hive=hive, agent=spec):
        try:
            badges += [b if isinstance(b, Badge) else Badge(label=str(b)) for b in call() or []]
        except Exception:
            log.exception("plugin %r failed in agent_badges (skipped)", plugin)
    return AgentView(name=name, status="running" if running else "stopped", port=spec.port,
                     # While an apply runs, main is already the proposal: not deployed yet.
                     deployed_sha=hive.deploying.get(name) or read_ref(spec.paths.applied),
                     transient=hive.transients().get(name),
                     badges=badges, is_manager=spec.is_manager)


def agents(hive: Hive) -> list[AgentView]:
    return [agent_view(hive, n) for n in hive.store.agent_names()]


def tombstones(hive: Hive) -> list[Tombstone]:
    """Agents with kept state (repos, creds, notes) but no container: destroyed, re-spawnable."""
    root = hive.paths.agents_root
    try:
        # scandir, not iterdir: its entries know whether they are dirs without a stat each, and
        # names sort faster than Paths (a tenth of a 900-agent snapshot otherwise).
        with os.scandir(root) as entries:
            dirs = sorted(e.name for e in entries if e.is_dir())
    except FileNotFoundError:
        return []
    active = set(hive.store.agent_names())
    found = []
    for name in dirs:
        if name not in active and (root / name / "config").is_dir():
            found.append(Tombstone(name=name,
                                   deployed_sha=read_ref(hive.paths.agent(name).applied)))
    return found


def snapshot(hive: Hive) -> dict[str, Any]:
    """``GET /api/state``: its ``seq`` is read first, so a client applies only later events."""
    seq = hive.bus.seq
    views = agents(hive)
    state: dict[str, Any] = {
        "seq": seq,
        "agents": converter.unstructure(views),
        "approvals": converter.unstructure(
            hive.store.approvals(ApprovalStatus.PENDING)
            + hive.store.approvals(ApprovalStatus.RUNNING)),
        "questions": converter.unstructure(hive.store.questions(target="operator")),
        "transients": {k: v.value for k, v in hive.transients().items()},
        "tombstones": converter.unstructure(tombstones(hive)),
        "plugins": list(hive.loaded.enabled),
    }
    for plugin, call in hive.each("state_extras", hive=hive, agents=views):
        for key, value in (call() or {}).items():
            if key in state:
                raise RuntimeError(f"plugin {plugin!r} returns state key {key!r}, already taken")
            state[key] = value
    return state
