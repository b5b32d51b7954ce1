"""The ``verify`` deploy step: after a build, the deploy waits until the agent is healthy.

Healthy means that every ``health_check`` implementation agrees, in one round of asking: the
backend's own (the process is up and has not restarted since the build), any plugin's, and what
the agent's own config declares (an HTTP probe, a command), which the backend runs. The core
adds its own, from the status channel: an agent its backend reported ``failing`` since the
build began is unhealthy (its words say why), one reported ``stopped`` is not healthy yet — so
a backend that reports its agents' status (``nixos_container``: a failed or restarting unit) is
checked without a ``health_check`` of its own. A check
that raises fails the verification at once; one that answers "not yet" is asked again until the
deadline (``[hive] health_timeout``, or the agent's own through the ``health_timeout`` hook).
A check that does not answer is not waited for past the deadline either: each call runs on a
thread of its own, so a hanging one is abandoned there (it should give up by itself, too).

A deploy whose verification fails is rolled back like any failed build: ``main`` back, the
container rebuilt from it (see :func:`hivekit.deploy._fail`).

For backends, two pieces of the plugin API live here: :class:`Health`, what an agent's own config
may declare about its health (the process backend's ``[health]`` table, the NixOS module's
``hivekit.agent.health``), checked the same way whichever backend reads it; and
:func:`http_probe`, the GET on the agent's port that a declared ``http`` probe makes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from hivekit.errors import HiveError, OperationFailed, describe
from hivekit.records import AgentStatus

if TYPE_CHECKING:
    from hivekit.hive import Hive
    from hivekit.records import AgentSpec, Deploy

log = logging.getLogger("hivekit.verify")

#: Seconds between two rounds of health checks.
INTERVAL = 0.2


def _seconds(_inst: Any, att: Any, value: float | None) -> None:
    if value is not None and not value > 0:  # also refuses NaN
        raise ValueError(f"health.{att.name} must be a number of seconds above 0, got {value}")


def _probe_path(_inst: Any, _att: Any, value: str | None) -> None:
    if value is not None and (not value.startswith("/") or any(
            c.isspace() or ord(c) < 32 for c in value)):
        raise ValueError(f"health.http must be a path on the agent's port starting with / "
                         f"(no spaces), got {value!r}")


def _probe_command(_inst: Any, _att: Any, value: list[str] | None) -> None:
    if value is not None and (not value or not value[0].strip()):
        raise ValueError("health.command must be a non-empty list: the program, then its "
                         "arguments")
    if value is not None and any("\0" in v for v in value):
        raise ValueError("health.command must not contain NUL bytes")


@frozen
class Health:
    """What an agent's own config declares about its health (every field optional).

    Structure raw data into it with :func:`hivekit.structure` (strict: a wrong type or an
    unknown key is refused, naming the field); a backend answers :func:`health_timeout` from
    ``timeout`` and runs the probes in its ``health_check``, after its own checks.
    """

    #: Seconds a deploy may wait for the agent to become healthy (default:
    #: ``[hive] health_timeout``).
    timeout: float | None = field(default=None, validator=_seconds)
    #: Seconds the agent must run without a restart after its build (default: the backend's
    #: ``health_settle`` setting).
    settle: float | None = field(default=None, validator=_seconds)
    #: A path on the agent's port that must answer 2xx to a GET (``"/healthz"``).
    http: str | None = field(default=None, validator=_probe_path)
    #: A command run where the agent runs (its sandbox or container) that must exit 0.
    command: list[str] | None = field(default=None, validator=_probe_command)


def http_probe(port: int, path: str, host: str = "127.0.0.1", timeout: float = 2.0) -> str | None:
    """``GET path`` on ``host:port``: None when it answers 2xx, else what happened (for a
    ``health_check`` to return as "not healthy yet"). Waits ``timeout`` seconds at most."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"GET {path} on port {port}: {exc}"
    finally:
        conn.close()
    return None if 200 <= status < 300 else f"GET {path} on port {port} answered {status}"


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
    #: Each plugin's last "not yet": what the deadline reports if it strikes during its call.
    last: dict[str, str] = {}
    while True:
        waiting: dict[str, str] = {}
        if (stopped := _reported(hive, agent)) is not None:
            waiting["status"] = stopped
        for plugin, call in hive.each("health_check", hive=hive, agent=agent, deploy=deploy):
            answer = _bounded(hive, agent, call, deadline, plugin, timeout, last.get(plugin))
            if isinstance(answer, str):
                waiting[plugin] = last[plugin] = answer
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


def _reported(hive: Hive, agent: AgentSpec) -> str | None:
    """The core's own check, from the status channel: raises if the backend reported the agent
    ``failing`` since the operation began; a reason to wait if it reported it ``stopped``."""
    known = hive.view.reported(agent.name)
    if known is None:
        return None
    if known.status == AgentStatus.FAILING:
        code = known.exit_code
        detail = known.detail or "no detail"
        if code is not None and f"exit code {code}" not in detail:
            detail += f" (exit code {code})"
        raise Unhealthy(f"its backend reports it failing: {detail}")
    if known.status == AgentStatus.STOPPED:
        return "its backend reports it stopped"
    return None


def _bounded(hive: Hive, agent: AgentSpec, call: Any, deadline: float, plugin: str,
             timeout: float, before: str | None = None) -> Any:
    """``call()``'s answer, waited for until ``deadline`` at most (and no longer once the
    backend reports the agent failing); its exception re-raised as :class:`Unhealthy` naming the
    plugin. A deadline that strikes during the call reports ``before``, the plugin's last answer,
    if it gave one."""
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
    while not done.wait(max(min(INTERVAL, deadline - time.monotonic()), 0)):
        _reported(hive, agent)
        if time.monotonic() >= deadline or hive.stopping.is_set():
            why = before if before is not None else "its health check did not answer"
            raise Unhealthy(f"not healthy within {timeout:g}s ({plugin}: {why})")
    if "error" in result:
        exc = result["error"]
        if not isinstance(exc, Exception):
            raise exc
        if not isinstance(exc, HiveError):
            log.error("plugin %r failed in health_check", plugin, exc_info=exc)
        raise Unhealthy(f"{plugin}: {describe(exc)}") from exc
    return result.get("answer")
