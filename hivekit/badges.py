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


class Badges:
    @hookimpl
    def agent_badges(self, hive: Hive, agent: AgentSpec) -> list[Badge]:
        if not needs_login(agent):
            return []
        return [Badge(label=NEEDS_LOGIN, level=BadgeLevel.WARNING,
                      detail=login_help(agent.name))]
