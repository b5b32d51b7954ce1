"""The forge plugin (``forge``): a Forgejo user and access token for every agent.

Enable it with ``[hive] enable = ["forge"]``. After a successful spawn (``trylast``: after the
backend), and for every agent plus the manager at startup (in a background thread), it makes sure
the agent has a Forgejo user named after it and a token in ``<agent state>/forge-token`` (0600).
No forge running: one log line, nothing else. A failure is a warning in the log, never a failed
spawn; the next startup sweep retries. ``destroy --purge`` deletes the agent's user.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from hivekit import hookimpl

if TYPE_CHECKING:
    from hivekit import AgentSpec, Hive

log = logging.getLogger("hivekit.forge")


def _say(hive: Hive, agent: str, line: str, warning: bool = False) -> None:
    """A line in the daemon's log (a warning if ``warning``) and on the dashboard's live log."""
    from hivekit import events

    log.log(logging.WARNING if warning else logging.INFO, "[%s] %s", agent, line)
    hive.log_event(agent, events.LogLine(agent=agent, line=line,
                                         stream="stderr" if warning else "stdout"))


def _describe(exc: Exception) -> str:
    from hivekit import describe

    return describe(exc)


def _ensure(hive: Hive, agent: AgentSpec) -> None:
    """Provision ``agent``, logging what happened; never raises."""
    from .forge import forge_for

    try:
        created, issued = forge_for(hive).ensure(agent)
    except Exception as exc:
        _say(hive, agent.name, f"forge: could not provision {agent.name!r} (retried at the next "
                               f"start): {_describe(exc)}", warning=True)
        return
    if created or issued:
        done = [w for w, did in (("user created", created), ("token issued", issued)) if did]
        _say(hive, agent.name, f"forge: {', '.join(done)} for {agent.name!r}")


@hookimpl
def config_schema() -> type:
    from .config import ForgeConfig

    return ForgeConfig


@hookimpl(trylast=True)
def spawn(hive: Hive, agent: AgentSpec) -> None:
    from .forge import forge_for

    try:
        present = forge_for(hive).present()
    except Exception as exc:
        _say(hive, agent.name, f"forge: probe failed: {_describe(exc)}", warning=True)
        return
    if not present:
        _say(hive, agent.name, "forge: no forge container running; not provisioning")
        return
    _ensure(hive, agent)


def sweep(hive: Hive) -> None:
    """Provision every agent and the manager (the startup sweep); never raises."""
    from .forge import forge_for

    try:
        if not forge_for(hive).present():
            log.info("forge: no forge container running (container %s); not provisioning "
                     "users", hive.plugin_config("forge").container)
            return
        names = sorted(set(hive.agent_names()) | {hive.manager})
    except Exception as exc:
        log.warning("forge: startup sweep failed: %s", _describe(exc))
        return
    for name in names:
        if hive.stopping.is_set():
            return
        _ensure(hive, hive.agent(name))
    log.info("forge: startup sweep done (%d agents)", len(names))


@hookimpl
def startup(hive: Hive) -> None:
    threading.Thread(target=sweep, args=(hive,), name="forge-sweep", daemon=True).start()


@hookimpl(trylast=True)
def destroy(hive: Hive, agent: AgentSpec, purge: bool) -> None:
    from .forge import forge_for

    if not purge or not hive.plugin_config("forge").purge_user:
        return
    forge = forge_for(hive)
    try:
        if not forge.present():
            _say(hive, agent.name, "forge: no forge container running; user not deleted")
            return
        if forge.delete_user(agent.name):
            _say(hive, agent.name, f"forge: user {agent.name!r} deleted")
    except Exception as exc:
        # The container is gone already; a leftover forge user is not worth failing for.
        _say(hive, agent.name, f"forge: could not delete user {agent.name!r}: "
                               f"{_describe(exc)}", warning=True)
