"""What the operator sees: the ``/api/state`` snapshot, encoded once per bus ``seq``.

The agents' rows and the tombstones are kept in memory by :mod:`hivekit.view`; a snapshot only
serialises them with the pending approvals, the operator's questions and the plugins' extras.
The encoded bytes are kept for the bus's ``seq``: every client asking before the next event gets
the same bytes. When the seq moved, only the parts the events since then can have changed are
made again (a broker message or a log line changes none of them).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from hivekit import events
from hivekit.convert import converter
from hivekit.errors import PluginError
from hivekit.hive import Hive
from hivekit.records import AgentView, ApprovalStatus, Tombstone

log = logging.getLogger("hivekit")

CORE_KEYS = frozenset(
    {"seq", "agents", "approvals", "questions", "transients", "tombstones", "plugins"})

#: The parts of a snapshot the events of each type can change (others change only ``seq``).
_DIRTIES: dict[type, frozenset[str]] = {
    events.ApprovalAdded: frozenset({"approvals"}),
    events.ApprovalChanged: frozenset({"approvals"}),
    events.QuestionAdded: frozenset({"questions"}),
    events.QuestionResolved: frozenset({"questions"}),
    events.TransientChanged: frozenset({"transients"}),
}
_ALL = frozenset({"approvals", "questions", "transients"})


def agent_view(hive: Hive, name: str) -> AgentView | None:
    """Agent ``name``'s row as the hive keeps it (see :mod:`hivekit.view`), or None if it has
    none (not registered, not being spawned). Calls no plugin."""
    return hive.view.row(name)


def agents(hive: Hive) -> list[AgentView]:
    """Every agent's row (also those being spawned), by name."""
    return hive.view.rows()


def tombstones(hive: Hive) -> list[Tombstone]:
    """Agents with kept state (repos, creds, notes) but no container: destroyed, re-spawnable."""
    return hive.view.tombstones()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Snapshots:
    """The encoded snapshot of one hive, kept per ``seq`` (one per hive: :func:`snapshots`)."""

    def __init__(self, hive: Hive) -> None:
        self.hive = hive
        self._lock = threading.Lock()
        self._seq = -1
        self._bytes = b""
        self._parts: dict[str, bytes] = {}
        self._view_version = -1
        self._extras: list[tuple[str, bytes]] = []
        self._plugins = _dumps(list(hive.loaded.enabled))

    def cached(self) -> bytes | None:
        """The snapshot if making it calls nothing that may block — none was published since it
        was encoded, or only events that change no part of it (a broker message, a log line):
        then only the seq is new — else None. For the event loop, before handing the work to a
        thread."""
        if self._seq == self.hive.bus.seq:
            return self._bytes
        with self._lock:
            since = self.hive.bus.since(self._seq) if self._seq >= 0 else None
            if since is None or any(type(e.event) in _DIRTIES for e in since) or \
                    self.hive.view.version != self._view_version:
                return None
        return self.encoded()

    def encoded(self) -> bytes:
        """``GET /api/state`` as JSON bytes; its ``seq`` is read first, so a client that applies
        only later events misses nothing."""
        hive = self.hive
        seq = hive.bus.seq
        with self._lock:  # one encoder at a time; the others then reuse what it made
            if seq == self._seq:
                return self._bytes
            dirty = self._dirty_since(self._seq)
            for part in dirty:
                self._parts[part] = self._make(part)
            version = hive.view.version
            moved = version != self._view_version
            if dirty or moved:
                self._extras = self._make_extras()
                self._view_version = version
            out = [b'{"seq":', str(seq).encode(), b',"agents":', hive.view.rows_json(),
                   b',"approvals":', self._parts["approvals"],
                   b',"questions":', self._parts["questions"],
                   b',"transients":', self._parts["transients"],
                   b',"tombstones":', hive.view.tombstones_json(),
                   b',"plugins":', self._plugins]
            for key, value in self._extras:
                out += [b",", _dumps(key), b":", value]
            out.append(b"}")
            self._bytes, self._seq = b"".join(out), seq
            return self._bytes

    def _dirty_since(self, seq: int) -> frozenset[str]:
        if seq < 0:
            return _ALL
        since = self.hive.bus.since(seq)
        if since is None:  # more happened than the replay buffer holds: make everything
            return _ALL
        dirty: set[str] = set()
        for env in since:
            dirty |= _DIRTIES.get(type(env.event), frozenset())
        return frozenset(dirty)

    def _make(self, part: str) -> bytes:
        hive = self.hive
        if part == "approvals":
            return _dumps(converter.unstructure(
                hive.store.approvals(ApprovalStatus.PENDING)
                + hive.store.approvals(ApprovalStatus.RUNNING)))
        if part == "questions":
            return _dumps(converter.unstructure(hive.store.questions(target="operator")))
        return _dumps({k: v.value for k, v in hive.transients().items()})

    def _make_extras(self) -> list[tuple[str, bytes]]:
        found = []
        for key, value in extras(self.hive, self.hive.view.rows()).items():
            try:
                found.append((key, _dumps(value)))
            except (TypeError, ValueError):
                log.exception("/api/state key %r is not JSON (left out)", key)
        return found


def snapshots(hive: Hive) -> Snapshots:
    return hive.plugin_state("core:snapshots", lambda: Snapshots(hive))


def encoded_snapshot(hive: Hive) -> bytes:
    """``GET /api/state``'s body: the same bytes for every client until the next event."""
    return snapshots(hive).encoded()


def snapshot(hive: Hive) -> dict[str, Any]:
    """``GET /api/state`` as a dict (for in-process callers; the API serves the bytes)."""
    return json.loads(encoded_snapshot(hive))


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
