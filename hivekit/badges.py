"""The core's own badges (plugin ``core-badges``): what the operator should know about an agent
at a glance, whatever the backend and whichever surface shows it (dashboard, ``hivekit agents``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
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
    """True when the agent has no credentials at all: no key (``hivekit creds NAME set``) and
    no login's files in its creds dir (a missing or unreadable dir counts as empty)."""
    from hivekit.creds import has_any

    return not has_any(agent)


def login_help(name: str) -> str:
    """What the ``needs login`` badge says: what is missing, and the commands that fix it."""
    return (f"no key and no login in its creds dir: `hivekit creds {name} set "
            f"ANTHROPIC_API_KEY` (the value on stdin) or `hivekit exec {name} -- claude login`, "
            f"then `hivekit restart {name}`")


#: A listing is reused while its dir's mtime stays put, but only if that mtime was already this
#: much older than the listing (ns): a change within the same tick of the kernel's coarse file
#: clock (or a filesystem's 1-2 s granularity) leaves the mtime as it was.
SETTLED_NS = 2_000_000_000

#: path → ((mtime_ns, inode), the listing: (name, is_dir) pairs, sorted; trusted or not).
Listings = dict[str, tuple[tuple[int, int], list[tuple[str, bool]], bool]]


def _listing(path: str, cache: Listings) -> list[tuple[str, bool]] | None:
    """``path``'s entries, from ``cache`` while its mtime proves it unchanged (one ``stat``);
    None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        cache.pop(path, None)
        return None
    key = (st.st_mtime_ns, st.st_ino)
    hit = cache.get(path)
    if hit is not None and hit[0] == key and hit[2]:
        return hit[1]
    listed_at = time.time_ns()
    try:
        with os.scandir(path) as entries:
            names = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in entries)
    except OSError:
        cache.pop(path, None)
        return None
    cache[path] = (key, names, listed_at - st.st_mtime_ns > SETTLED_NS)
    return names


def _creds_signature(agent: AgentSpec, cache: Listings | None = None) -> tuple[str, ...] | None:
    """What changes when an entry is added to or removed from the creds dir or one of its
    subdirectories (a login's file is one level down: ``.claude/.credentials.json``,
    ``.codex/auth.json``): the names there. None when the dir is missing.

    With ``cache`` (kept by the caller between calls), a dir whose mtime has not moved since a
    settled listing costs one ``stat``, not a listing (see :data:`SETTLED_NS`).
    """
    cache = {} if cache is None else cache
    root = str(agent.paths.creds)
    top = _listing(root, cache)
    if top is None:
        return None
    names = []
    for name, is_dir in top:
        names.append(name)
        if is_dir:
            below = _listing(os.path.join(root, name), cache)
            names += [f"{name}/{n}" for n, _ in below or ()]
    return tuple(names)


class Badges:
    """``needs login`` for every agent without credentials, kept current as creds come and go.

    Badges run when a row is made, so a creds dir that fills (an agent logging in from inside
    its container, an operator copying a token) would otherwise show the badge until the next
    operation on the agent: a watcher lists every agent's creds dir (and its subdirectories)
    every :data:`CREDS_INTERVAL` seconds and refreshes the row of each one that changed.
    Commands that change creds call ``hive.refresh(agent)`` themselves.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, ...] | None] = {}
        #: agent → the listings of its creds dir and subdirectories (see _creds_signature).
        self._listings: dict[str, Listings] = {}

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
            signature = _creds_signature(agent, self._listings.setdefault(row.name, {}))
            if row.name not in self._seen:
                shown = any(b.label == NEEDS_LOGIN for b in row.badges)
                if shown != needs_login(agent):
                    changed.append(row.name)
            elif self._seen[row.name] != signature:
                changed.append(row.name)
            self._seen[row.name] = signature
        for gone in set(self._seen) - {row.name for row in rows}:
            del self._seen[gone]
            self._listings.pop(gone, None)
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
                detail=login_help(agent.name)))
        return badges
