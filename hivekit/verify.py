"""The ``verify`` deploy step: after a build, the deploy waits until the agent is healthy.

Healthy means that every ``health_check`` implementation agrees, in one round of asking: the
backend's own (the process is up and has not restarted since the build), any plugin's, and what
the agent's own config declares (an HTTP probe, a command), which the backend runs. A check
that raises fails the verification at once; one that answers "not yet" is asked again until the
deadline (``[hive] health_timeout``, or the agent's own through the ``health_timeout`` hook).
A check that does not answer is not waited for past the deadline either: each call runs on a
thread of its own, so a hanging one is abandoned there (it should give up by itself, too).

A deploy whose verification fails is rolled back like any failed build: ``main`` back, the
container rebuilt from it (see :func:`hivekit.deploy._fail`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from hivekit.errors import HiveError, OperationFailed, describe

if TYPE_CHECKING:
    from hivekit.hive import Hive
    from hivekit.records import AgentSpec, Deploy

log = logging.getLogger("hivekit.verify")

#: Seconds between two rounds of health checks.
INTERVAL = 0.2


class Unhealthy(OperationFailed):
    """The agent did not become healthy after its build; the message says why."""


def health_timeout(hive: Hive, agent: AgentSpec) -> float:
    """The agent's own deadline (``health_timeout`` hook), else ``[hive] health_timeout``."""
    own = hive.hook.health_timeout(hive=hive, agent=agent)
    if own is None:
        return hive.config.hive.health_timeout
    if isinstance(own, bool) or not isinstance(own, int | float) or not own > 0:
        raise OperationFailed(f"the health timeout of {agent.name} must be a number of seconds "
                              f"above 0, got {own!r}")
    return float(own)


def verify(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> None:
    """Wait until every ``health_check`` says ``agent`` is healthy; returns when it is.

    :raises Unhealthy: a check raised (at once), or the deadline passed (with the last reason
        each check that was not yet satisfied gave), or the daemon began to stop.
    """
    timeout = health_timeout(hive, agent)
    deadline = time.monotonic() + timeout
    waiting: dict[str, str] = {}
    while True:
        waiting = {}
        for plugin, call in hive.each("health_check", hive=hive, agent=agent, deploy=deploy):
            answer = _bounded(call, deadline - time.monotonic(), plugin, timeout)
            if isinstance(answer, str):
                waiting[plugin] = answer
            elif answer not in (None, True):
                raise Unhealthy(f"{plugin}: the health check answered {answer!r}")
        if not waiting:
            return
        if hive.stopping.is_set():
            raise Unhealthy("interrupted: the hive is stopping")
        if time.monotonic() + INTERVAL >= deadline:
            why = "; ".join(f"{p}: {w}" for p, w in waiting.items())
            raise Unhealthy(f"not healthy within {timeout:g}s ({why})")
        hive.stopping.wait(INTERVAL)


def _bounded(call: Any, remaining: float, plugin: str, timeout: float) -> Any:
    """``call()``'s answer, waited for at most ``remaining`` seconds; its exception re-raised
    as :class:`Unhealthy` naming the plugin."""
    result: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            result["answer"] = call()
        except BaseException as exc:  # handed to the deploy's thread
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"health-{plugin}", daemon=True).start()
    if not done.wait(max(remaining, 0)):
        raise Unhealthy(f"not healthy within {timeout:g}s ({plugin}: its health check did not "
                        "answer)")
    if "error" in result:
        exc = result["error"]
        if not isinstance(exc, Exception):
            raise exc
        if not isinstance(exc, HiveError):
            log.error("plugin %r failed in health_check", plugin, exc_info=exc)
        raise Unhealthy(f"{plugin}: {describe(exc)}") from exc
    return result.get("answer")
