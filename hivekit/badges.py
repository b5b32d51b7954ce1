"""The core's own badges (plugin ``core-badges``): what the operator should know about an agent
at a glance, whatever the backend and whichever surface shows it (dashboard, ``hivekit agents``).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from hivekit import hookimpl
from hivekit.records import Badge, BadgeLevel

if TYPE_CHECKING:
    from hivekit.hive import Hive
    from hivekit.records import AgentSpec

log = logging.getLogger("hivekit")

#: Shown when the agent has no model credentials: it cannot work until someone logs it in.
NEEDS_LOGIN = "needs login"
#: Shown when the agent's container may not run its applied ``main`` (a rollback's rebuild
#: failed): until an operator's rebuild succeeds.
NEEDS_REBUILD = "needs rebuild"
#: Seconds between two looks at every agent's creds dir.
CREDS_INTERVAL = 3.0


def needs_login(agent: AgentSpec) -> bool:
    """True when the agent's creds dir is missing or empty (nothing to authenticate with)."""
    creds = agent.paths.creds
    try:
        return not any(creds.iterdir())
    except OSError:  # missing, or unreadable: either way the agent cannot use it
        return True


def _creds_signature(agent: AgentSpec) -> tuple[int, int] | None:
    """What changes when an entry is added to or removed from the creds dir: its mtime (and
    inode: a dir replaced wholesale). None when it is missing."""
    try:
        st = os.stat(agent.paths.creds)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class Badges:
    """``needs login`` for every agent without credentials, kept current as creds come and go.

    Badges run when a row is made, so a creds dir that fills (an agent logging in from inside
    its container, an operator copying a token) would otherwise show the badge until the next
    operation on the agent: a watcher stats every agent's creds dir every
    :data:`CREDS_INTERVAL` seconds (one ``stat`` each, no listing) and refreshes the row of
    each one that changed. Commands that change creds call ``hive.refresh(agent)`` themselves.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int] | None] = {}

    @hookimpl
    def startup(self, hive: Hive) -> None:
        threading.Thread(target=self._watch, args=(hive,), name="creds-watch",
                         daemon=True).start()

    def _watch(self, hive: Hive) -> None:
        while not hive.stopping.wait(CREDS_INTERVAL):
            try:
                self.check(hive)
            except Exception:
                log.exception("watching the agents' creds dirs failed (retrying)")

    def check(self, hive: Hive) -> list[str]:
        """Refresh the row of every agent whose creds dir changed since the last check (the
        first time it sees an agent: whose badge disagrees with its creds); returns them."""
        changed = []
        rows = [row for row in hive.view.rows() if row.status != "spawning"]
        for row in rows:
            agent = hive.agent(row.name)
            signature = _creds_signature(agent)
            if row.name not in self._seen:
                shown = any(b.label == NEEDS_LOGIN for b in row.badges)
                if shown != needs_login(agent):
                    changed.append(row.name)
            elif self._seen[row.name] != signature:
                changed.append(row.name)
            self._seen[row.name] = signature
        for gone in set(self._seen) - {row.name for row in rows}:
            del self._seen[gone]
        for name in changed:
            hive.refresh(name)
        return changed

    @hookimpl
    def agent_badges(self, hive: Hive, agent: AgentSpec) -> list[Badge]:
        badges = []
        mark = hive.store.rebuild_mark(agent.name)
        if mark is not None and mark[0] == "needed":
            badges.append(Badge(
                label=NEEDS_REBUILD, level=BadgeLevel.ERROR,
                detail=f"its container may not run the deployed config: {mark[1]}".rstrip()
                + ("" if "hivekit rebuild" in (mark[1] or "")
                   else f"; run `hivekit rebuild {agent.name}`")))
        if needs_login(agent):
            badges.append(Badge(
                label=NEEDS_LOGIN, level=BadgeLevel.WARNING,
                detail=f"no model credentials in {agent.paths.creds}: the agent cannot "
                       "call its model until they are there"))
        return badges
