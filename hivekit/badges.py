"""The core's own badges (plugin ``core-badges``): what the operator should know about an agent
at a glance, whatever the backend and whichever surface shows it (dashboard, ``hivekit agents``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hivekit import hookimpl
from hivekit.records import Badge, BadgeLevel

if TYPE_CHECKING:
    from hivekit.hive import Hive
    from hivekit.records import AgentSpec

#: Shown when the agent has no model credentials: it cannot work until someone logs it in.
NEEDS_LOGIN = "needs login"
#: Shown when the agent's container may not run its applied ``main`` (a rollback's rebuild
#: failed): until an operator's rebuild succeeds.
NEEDS_REBUILD = "needs rebuild"


def needs_login(agent: AgentSpec) -> bool:
    """True when the agent's creds dir is missing or empty (nothing to authenticate with)."""
    creds = agent.paths.creds
    try:
        return not any(creds.iterdir())
    except OSError:  # missing, or unreadable: either way the agent cannot use it
        return True


class Badges:
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
