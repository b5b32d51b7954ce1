"""A third-party notifier and gatekeeper: what an operator's chat bridge would be.

It hears every request and every lifecycle change (written, one JSON line each, to
``<state_dir>/notifier.jsonl``), refuses requests for the names in its ``deny`` list and
applies of commits holding a file named in ``deny_files`` before anything exists, and can be
told to misbehave: ``bad_event = true`` publishes an event the bus cannot encode (a record where
a name belongs) whenever an agent starts; ``state_key`` and ``route`` claim an ``/api/state``
key and a ``GET`` route that may collide with someone else's.
"""

from __future__ import annotations

import json
import threading

from attrs import field, frozen

from hivekit import CommandFailed, Forbidden, Repo, events, hookimpl

_lock = threading.Lock()


@frozen
class NotifierConfig:
    #: Agent names no one may spawn or apply to.
    deny: list[str] = field(factory=list)
    #: Applies of a commit holding one of these files are refused.
    deny_files: list[str] = field(factory=list)
    #: Publish an event that cannot be encoded whenever an agent starts.
    bad_event: bool = False
    #: A key to add to /api/state (empty: none).
    state_key: str = ""
    #: A GET route to serve (empty: none).
    route: str = ""


def _note(hive, **entry):
    with _lock, open(hive.paths.state_dir / "notifier.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


@hookimpl
def config_schema():
    return NotifierConfig


@hookimpl
def startup(hive):
    _note(hive, hook="startup")


@hookimpl
def shutdown(hive):
    _note(hive, hook="shutdown")


@hookimpl
def check_request(hive, request):
    config = hive.plugin_config("notifier")
    _note(hive, hook="check_request", kind=request.kind.value, agent=request.agent.name,
          sha=request.sha)
    if request.agent.name in config.deny:
        raise Forbidden(f"the notifier's deny list refuses {request.agent.name!r}")
    for name in config.deny_files if request.sha else []:
        try:  # the proposal is read where the manager committed it: nothing is fetched yet
            Repo(request.agent.paths.config)("cat-file", "-e", f"{request.sha}:{name}")
        except CommandFailed:
            continue
        raise Forbidden(f"the notifier refuses commits holding {name!r}")


@hookimpl
def state_extras(hive, agents):
    key = hive.plugin_config("notifier").state_key
    return {key: len(agents)} if key else None


@hookimpl
def register_routes(hive, register):
    path = hive.plugin_config("notifier").route
    if path:
        from litestar import get  # here, not at import: every CLI call imports the plugin

        @get(path)
        async def notifier_route() -> str:
            return "notifier"

        register(notifier_route)


@hookimpl
def approval_requested(hive, approval):
    _note(hive, hook="approval_requested", id=approval.id, kind=approval.kind.value,
          agent=approval.agent, status=approval.status.value)


@hookimpl
def approval_resolved(hive, approval):
    _note(hive, hook="approval_resolved", id=approval.id, status=approval.status.value)


@hookimpl
def agent_started(hive, agent, reason):
    _note(hive, hook="agent_started", agent=agent.name, reason=reason)
    hive.log(agent, f"notifier: {agent.name} started ({reason})", "hive")
    if hive.plugin_config("notifier").bad_event:
        hive.bus.publish(events.LogLine(agent=agent, line="this event cannot be encoded"))


@hookimpl
def agent_stopped(hive, agent, reason):
    _note(hive, hook="agent_stopped", agent=agent.name, reason=reason)


@hookimpl
def agent_crashed(hive, agent, status, reason):
    _note(hive, hook="agent_crashed", agent=agent.name, status=status, reason=reason)


@hookimpl
def agent_destroyed(hive, agent, purge, reason):
    _note(hive, hook="agent_destroyed", agent=agent.name, purge=purge, reason=reason)
