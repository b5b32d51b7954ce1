"""What the operator sees: agent views and the ``/api/state`` snapshot."""

from __future__ import annotations

import logging
import os
from typing import Any

from hivekit.convert import converter
from hivekit.errors import PluginError
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
                     deployed_sha=read_ref(spec.paths.applied),
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
    state.update(extras(hive, views))
    return state


def extras(hive: Hive, views: list[AgentView], *, strict: bool = False) -> dict[str, Any]:
    """Every plugin's ``state_extras``, merged.

    A key the core uses or another plugin gave first is a :class:`PluginError` naming both
    with ``strict`` (the daemon's start); otherwise it is logged and left out, as is the
    contribution of a plugin that raised, so that one plugin never breaks the snapshot.
    """
    merged: dict[str, Any] = {}
    owner = dict.fromkeys(CORE_KEYS, "core")
    for plugin, call in hive.each("state_extras", hive=hive, agents=views):
        try:
            found = call() or {}
            if not isinstance(found, dict):
                raise TypeError(f"state_extras returned {type(found).__name__}, not a dict")
        except Exception as exc:
            if strict:
                raise PluginError(f"plugin {plugin!r} failed in state_extras: "
                                  f"{type(exc).__name__}: {exc}") from exc
            log.exception("plugin %r failed in state_extras (its keys are left out)", plugin)
            continue
        for key, value in found.items():
            if key in owner:
                message = (f"plugins {owner[key]!r} and {plugin!r} both give /api/state key "
                           f"{key!r}; disable one of them" if owner[key] != "core" else
                           f"plugin {plugin!r} gives /api/state key {key!r}, which the core "
                           "uses; the plugin must rename it")
                if strict:
                    raise PluginError(message)
                log.error("%s (left out)", message)
                continue
            owner[key] = plugin
            merged[key] = value
    return merged


def check_extras(hive: Hive) -> None:
    """At the daemon's start: every plugin's ``state_extras`` once, refusing a key clash or a
    failure with a :class:`PluginError` (instead of a broken snapshot later)."""
    extras(hive, agents(hive), strict=True)
