"""The operations every surface offers (admin API, dashboard, agent sockets): plain functions of
``hive`` that validate their input, change the hive, and raise :class:`~hivekit.errors.HiveError`
with an operator-facing message when they refuse. Bad input changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hivekit import creds, deploy, events, outbox, teardown, wake
from hivekit.errors import BadRequest, Conflict, HiveError, NotFound, OperationFailed
from hivekit.git import Repo
from hivekit.hive import OPERATOR, SYSTEM, Hive
from hivekit.names import RESERVED, check_id, check_name
from hivekit.records import (
    AgentSpec,
    AgentView,
    Approval,
    ApprovalDetail,
    ApprovalKind,
    ApprovalStatus,
    ExecPlan,
    Message,
    Request,
    Transient,
)

if TYPE_CHECKING:
    from hivekit.broker import BroadcastResult

log = logging.getLogger("hivekit")

NO_CHANGE = "(proposal matches currently-deployed tree)"
#: The last line of a diff cut at ``[hive] max_diff_bytes``.
TRUNCATED = ("\n… diff truncated: {shown} of {total} bytes shown; `git diff {base}..proposal/{id}`"
             " in the applied repo shows it all\n")
MAX_DESCRIPTION = 4000
MAX_NOTE = 20000
#: The most approvals or messages one listing returns.
MAX_LIST = 1000


def _text(value: str, field: str, limit: int) -> str:
    """``value`` if it fits ``limit`` characters and holds no NUL (git refuses NUL in the tag
    messages notes end up in)."""
    if len(value) > limit:
        raise BadRequest(f"{field} is too long ({len(value)} characters; the limit is {limit})")
    if "\0" in value:
        raise BadRequest(f"{field} must not contain NUL characters")
    return value


def _limit(value: int | None, field: str = "limit") -> int | None:
    if value is not None and not 0 < value <= MAX_LIST:
        raise BadRequest(f"{field} must be between 1 and {MAX_LIST}, got {value}")
    return value


def existing_agent(hive: Hive, name: str) -> AgentSpec:
    name = check_name(name)
    if not hive.store.has_agent(name):
        known = ", ".join(hive.store.agent_names()) or "none"
        raise NotFound(f"no agent named {name!r} (agents: {known})")
    return hive.agent(name)


# --- requests --------------------------------------------------------------------------------


def templates(hive: Hive) -> dict[str, str]:
    """Every template a new agent can be seeded with (``agent_templates``): name → what it is."""
    found: dict[str, str] = {}
    for plugin, call in hive.each("agent_templates", hive=hive):
        for key, about in (call() or {}).items():
            if key in found:
                raise OperationFailed(f"plugins offer template {key!r} twice (the second is "
                                      f"{plugin!r}); disable one of them")
            found[key] = about
    return found


def _template(hive: Hive, value: str | None, name: str) -> str | None:
    if value is None:
        return None
    known = templates(hive)
    if value not in known:
        offered = ", ".join(sorted(known)) or "none"
        raise BadRequest(f"no template named {value!r} (templates: {offered})")
    if hive.paths.agent(name).config.exists():
        raise BadRequest(f"{name!r} is a tombstone: a re-spawn keeps its config history, so it "
                         "takes no template; purge it first to start afresh from one")
    return value


def request_spawn(hive: Hive, name: str, description: str = "",
                  template: str | None = None) -> Approval:
    """Ask the operator to approve a new agent ``name`` (or the re-spawn of a tombstone),
    seeded from ``template`` (one of :func:`templates`; None: the backend's default)."""
    name = check_name(name)
    description = _text(description, "description", MAX_DESCRIPTION)
    if name == hive.manager:
        raise Conflict(f"{name!r} is the manager's reserved name; the hive runs it already")
    if name in RESERVED:
        raise BadRequest(f"{name!r} is reserved (it names a sender, not an agent); "
                         "pick another name")
    if hive.store.has_agent(name):
        raise Conflict(f"agent {name!r} already exists")
    pending = hive.store.pending_spawn(name)
    if pending:
        raise Conflict(f"a spawn of {name!r} is already requested: approval #{pending.id}")
    chosen = _template(hive, template, name)
    check_request(hive, Request(kind=ApprovalKind.SPAWN, agent=hive.agent(name),
                                description=description))
    approval = hive.store.add_approval(ApprovalKind.SPAWN, name, description=description,
                                       template=chosen)
    _requested(hive, approval)
    return approval


def request_apply(hive: Hive, agent: str, commit: str, description: str = "") -> Approval:
    """Ask the operator to deploy ``commit`` of the agent's proposed repo.

    The commit is fetched into the applied repo as ``proposal/<id>`` now, so amending the proposed
    repo later changes nothing about what the operator approves.
    """
    spec = existing_agent(hive, agent)
    description = _text(description, "description", MAX_DESCRIPTION)
    if not commit.strip():
        raise BadRequest("commit must be a non-empty ref or sha of the agent's proposed repo")
    commit = commit.strip()
    if commit.startswith("-") or any(c.isspace() or ord(c) < 32 for c in commit):
        raise BadRequest(f"{commit!r} is not a valid commit ref")
    proposed, applied = deploy.proposed_repo(hive, spec), Repo(spec.paths.applied)
    sha = proposed.rev(commit)
    if sha is None:
        raise NotFound(f"commit {commit!r} not found in {spec.name}'s proposed repo "
                       f"({spec.paths.config}); commit there first")
    check_request(hive, Request(kind=ApprovalKind.APPLY, agent=spec, commit=commit, sha=sha,
                                description=description))
    try:
        applied.fetch(proposed.git_dir, sha)
    except Exception as exc:
        raise OperationFailed(f"could not fetch {sha[:12]} into {spec.name}'s applied repo: "
                              f"{deploy.describe(exc)}") from exc
    approval = hive.store.add_approval(ApprovalKind.APPLY, spec.name, ref=commit, sha=sha,
                                       description=description)
    try:
        applied.tag(f"proposal/{approval.id}", sha)
    except Exception as exc:
        hive.store.delete_approval(approval.id)
        raise OperationFailed(
            f"could not tag proposal/{approval.id}: {deploy.describe(exc)}") from exc
    _requested(hive, approval)
    return approval


def check_request(hive: Hive, request: Request) -> None:
    """Ask every plugin's ``check_request`` whether ``request`` may become an approval.

    A :class:`HiveError` refuses it with its message; any other exception refuses it too, as
    the plugin's failure (logged with its traceback). Nothing exists yet to undo.
    """
    try:
        hive.hook.check_request(hive=hive, request=request)
    except HiveError:
        raise
    except Exception as exc:
        log.exception("check_request failed for the %s of %r", request.kind.value,
                      request.agent.name)
        raise OperationFailed(f"the {request.kind.value} of {request.agent.name!r} could not "
                              f"be checked: {deploy.describe(exc)}") from exc


def _requested(hive: Hive, approval: Approval) -> None:
    hive.bus.publish(events.ApprovalAdded(approval=approval))
    hive.call_each("approval_requested", hive=hive, approval=approval)


# --- approvals -------------------------------------------------------------------------------


def get_approval(hive: Hive, approval_id: int) -> ApprovalDetail:
    """One approval with its diff: against ``main`` while pending, else against the ``main``
    it replaced; spawns have none. At most ``[hive] max_diff_bytes`` of the diff are read and
    returned, cut at a line, with a marker line saying so (:data:`TRUNCATED`)."""
    approval = hive.store.approval(check_id(approval_id, "approval"))
    if approval.kind != ApprovalKind.APPLY:
        return ApprovalDetail(approval=approval, diff="")
    repo = Repo(hive.agent(approval.agent).paths.applied)
    proposal = f"refs/tags/proposal/{approval.id}"
    if not repo.exists() or repo.ref(proposal) is None:
        return ApprovalDetail(approval=approval,
                              diff="(the proposal is gone: the agent was purged)")
    base = approval.prev_sha if approval.prev_sha and approval.status.terminal else "main"
    limit = hive.config.hive.max_diff_bytes
    head, total = repo.diff(base, proposal, limit)
    text = head.decode(errors="replace")
    if total <= limit and _json_size(text) <= limit:
        return ApprovalDetail(approval=approval, diff=text or NO_CHANGE, diff_bytes=total)
    # Cut at a line (unless one line is longer than the cap) so that the diff as every answer
    # carries it, JSON-escaped, stays within the cap.
    while (excess := _json_size(text) - limit) > 0 or not text.endswith("\n"):
        end = text.rfind("\n", 0, len(text) - max(excess, 0)) + 1
        if end <= 0:
            text = text[:max(len(text) - max(excess, 1), 0)]
            break
        text = text[:end]
    marker = TRUNCATED.format(shown=len(text.encode()), total=total,
                              base=base[:12] if base != "main" else base, id=approval.id)
    return ApprovalDetail(approval=approval, diff=text + marker, diff_bytes=total,
                          diff_truncated=True)


def _json_size(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode())


def list_approvals(hive: Hive, status: ApprovalStatus | None = None, include_all: bool = False,
                   limit: int | None = None) -> list[Approval]:
    """Pending and running approvals, oldest first; with ``status`` those in that state, with
    ``include_all`` every one (newest first when ``limit`` is given)."""
    limit = _limit(limit)
    if status is not None:
        return hive.store.approvals(status, limit=limit)
    if include_all:
        return hive.store.approvals(limit=limit)
    return hive.store.approvals(ApprovalStatus.PENDING) + hive.store.approvals(
        ApprovalStatus.RUNNING)


def approve(hive: Hive, approval_id: int) -> Approval:
    """Approve a pending approval. An apply deploys before this returns (the result says how it
    ended); a spawn runs in the background and this returns it ``running``."""
    approval = hive.store.approval(check_id(approval_id, "approval"))
    if approval.status != ApprovalStatus.PENDING:
        raise Conflict(f"approval #{approval.id} is {approval.status.value}, not pending")
    if approval.kind == ApprovalKind.SPAWN:
        if hive.store.has_agent(approval.agent):
            raise Conflict(f"agent {approval.agent!r} already exists")
        return deploy.approve_spawn(hive, approval)
    if not hive.store.has_agent(approval.agent):
        raise Conflict(f"agent {approval.agent!r} no longer exists")
    return deploy.approve_apply(hive, approval)


def deny(hive: Hive, approval_id: int, note: str = "") -> Approval:
    note = _text(note, "note", MAX_NOTE)
    approval = hive.store.approval(check_id(approval_id, "approval"))
    if approval.status != ApprovalStatus.PENDING:
        raise Conflict(f"approval #{approval.id} is {approval.status.value}, not pending")
    return deploy.deny(hive, approval, note)


#: The longest one wait request waits, in seconds (a client waiting longer asks again).
MAX_WAIT = 3600.0
#: How often a waiter re-reads the store, in case it lost an event (a full queue).
_RECHECK = 5.0


def _wait_seconds(seconds: float) -> float:
    if not 0 <= seconds <= MAX_WAIT:  # also refuses NaN
        raise BadRequest(f"timeout must be between 0 and {MAX_WAIT:.0f} seconds, got {seconds}")
    return seconds


async def wait_approval(hive: Hive, approval_id: int, timeout: float = MAX_WAIT) -> Approval:
    """The approval once it reached a terminal state (approved, denied, failed), or as it is
    when ``timeout`` seconds passed or the daemon began to stop. Waits without a thread."""
    import anyio.to_thread

    wanted = check_id(approval_id, "approval")
    seconds = _wait_seconds(timeout)
    loop = asyncio.get_running_loop()
    sub = hive.bus.subscribe()  # before reading the store: no change slips in between
    try:
        approval = await anyio.to_thread.run_sync(hive.store.approval, wanted)
        deadline = loop.time() + seconds
        while not approval.status.terminal and not hive.stopping.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            env = await sub.get(min(remaining, _RECHECK))
            if env is None:
                approval = await anyio.to_thread.run_sync(hive.store.approval, wanted)
            elif (isinstance(env.event, events.ApprovalChanged)
                  and env.event.approval.id == wanted):
                approval = env.event.approval
        return approval
    finally:
        sub.close()


async def wait_agent(hive: Hive, name: str, timeout: float = MAX_WAIT) -> AgentView:
    """The agent once no lifecycle operation runs on it (a deploy, a rebuild, a start...), or
    as it is when ``timeout`` seconds passed or the daemon began to stop.

    :raises NotFound: there is no such agent (also when the operation waited for destroyed it).
    """
    spec = existing_agent(hive, name)
    seconds = _wait_seconds(timeout)
    loop = asyncio.get_running_loop()
    sub = hive.bus.subscribe()

    def busy() -> bool:
        # The row is remade just after the operation's end: wait for that too.
        row = hive.view.row(spec.name)
        return spec.name in hive.transients() or (row is not None and row.transient is not None)

    try:
        deadline = loop.time() + seconds
        while busy() and not hive.stopping.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await sub.get(min(remaining, _RECHECK))
        row = hive.view.row(spec.name)
        if row is None:
            raise NotFound(f"no agent named {spec.name!r}")
        return row
    finally:
        sub.close()


# --- lifecycle -------------------------------------------------------------------------------


def _lifecycle(hive: Hive, name: str, kind: Transient, wanted: str | None,
               work: Callable[[AgentSpec], None],
               observe: tuple[str, str] | None = None, woken: bool = False) -> AgentView:
    """Run ``work`` under the agent's lock; then tell the ``observe = (hook, reason)``
    observers, once the lock is released (an observer may start another operation). With
    ``woken``, the agent gets its wake-up for ``reason``, written with its wanted state."""
    spec = existing_agent(hive, name)
    with hive.begin(spec.name, kind):
        try:
            work(spec)
        except HiveError:
            raise
        except Exception as exc:
            raise OperationFailed(f"{kind.value} {spec.name}: {deploy.describe(exc)}") from exc
        text = wake.message(hive, spec, observe[1]) if woken and observe else None
        with outbox.record(hive) as out:
            if wanted:
                hive.store.set_wanted(spec.name, wanted)
            if text is not None:
                out.send(SYSTEM, spec.name, text)
        out.deliver()
    # The operation's end remade the row (and announced it).
    view = hive.view.row(spec.name)
    assert view is not None, f"{spec.name} is registered but has no row"
    if observe:
        hive.call_each(observe[0], hive=hive, agent=spec, reason=observe[1])
    return view


def start(hive: Hive, name: str) -> AgentView:
    return _lifecycle(hive, name, Transient.STARTING, "running",
                      lambda a: hive.hook.start(hive=hive, agent=a),
                      ("agent_started", "started by the operator"), woken=True)


def stop(hive: Hive, name: str) -> AgentView:
    return _lifecycle(hive, name, Transient.STOPPING, "stopped",
                      lambda a: hive.hook.stop(hive=hive, agent=a),
                      ("agent_stopped", "stopped by the operator"))


def restart(hive: Hive, name: str) -> AgentView:
    """The backend's ``restart`` when it has one, else every plugin's ``stop`` then ``start``."""
    def work(a: AgentSpec) -> None:
        if hive.hook.restart(hive=hive, agent=a) is None:
            hive.hook.stop(hive=hive, agent=a)
            hive.hook.start(hive=hive, agent=a)

    return _lifecycle(hive, name, Transient.RESTARTING, "running", work,
                      ("agent_started", "restarted by the operator"), woken=True)


def rebuild(hive: Hive, name: str, reason: str = "rebuilt by the operator") -> AgentView:
    """Rebuild the agent from its applied ``main`` (outside any approval). It clears the agent's
    ``needs rebuild`` mark when it succeeds; the manager hears ``rebuilt`` either way, and the
    agent, rebuilt, its wake-up for ``reason`` (what the ``agent_started`` observers hear too)."""
    return _lifecycle(hive, name, Transient.REBUILDING, "running",
                      lambda a: deploy.rebuild_agent(hive, a, reason=reason),
                      ("agent_started", reason))


def destroy(hive: Hive, name: str, purge: bool = False) -> None:
    """Remove the agent's container; its state stays as a tombstone unless ``purge``.

    Purging a tombstone removes its kept state. The manager cannot be destroyed. A crash part
    way is finished by the next start (see :mod:`hivekit.teardown`).
    """
    name = check_name(name)
    if name == hive.manager:
        raise Conflict(f"refusing to destroy the manager ({name!r}): it is declared by the "
                       "hive's config")
    spec = hive.agent(name)
    active = hive.store.has_agent(name)
    if not active and not (purge and spec.paths.root.exists()):
        if spec.paths.root.exists():
            raise Conflict(f"agent {name!r} is already destroyed (a tombstone); "
                           "use --purge to remove its kept state")
        raise NotFound(f"no agent named {name!r}")
    with hive.begin(name, Transient.DESTROYING):
        # Purging a tombstone calls the hooks too (its container is gone, which a backend
        # ignores): plugins with state of their own about the agent remove it then.
        try:
            teardown.destroy(hive, spec, purge=purge)
        except HiveError:
            raise
        except Exception as exc:
            raise OperationFailed(f"destroy {name}: {deploy.describe(exc)}") from exc
    if active:
        hive.call_each("agent_destroyed", hive=hive, agent=spec, purge=purge,
                       reason="purged by the operator" if purge else "destroyed by the operator")


# --- messages --------------------------------------------------------------------------------


def send(hive: Hive, to: str, body: str, sender: str = OPERATOR) -> Message:
    """Send ``body`` to agent ``to``'s inbox (as the operator unless ``sender`` says otherwise)."""
    from hivekit import broker

    return broker.send(hive, sender, to, body)


def broadcast(hive: Hive, body: str, sender: str = OPERATOR) -> BroadcastResult:
    """Send ``body`` to every agent (but ``sender``), with the broadcast hint (see
    :func:`hivekit.broker.broadcast`)."""
    from hivekit import broker

    return broker.broadcast(hive, sender, body)


def inbox(hive: Hive, name: str, limit: int = 100) -> list[Message]:
    """The agent's inbox, newest ``limit`` messages, oldest first."""
    name = check_name(name)
    _limit(limit)
    if (name != OPERATOR and not hive.store.has_agent(name)
            and not hive.paths.agent(name).root.exists()):
        raise NotFound(f"no agent named {name!r}")
    return hive.store.recent_inbox(name, limit)


def ack_inbox(hive: Hive, name: str, ids: list[int], everything: bool = False) -> int:
    """Mark messages of the operator's inbox read: ``ids``, or with ``everything`` all of them.

    Returns how many were newly acknowledged, and tells the pages (``messages_read``). Agents'
    inboxes are refused: an agent acknowledges its own messages (an ack by anyone else would
    hide them from it).
    """
    from hivekit import broker

    if check_name(name) != OPERATOR:
        raise BadRequest(f"only the operator's inbox is acknowledged here, not {name!r}'s: an "
                         "agent acknowledges its own messages through its socket")
    if everything:
        if ids:
            raise BadRequest("give ids or all, not both")
        ids = hive.store.ack_all(OPERATOR)
        count = len(ids)
    else:
        count = broker.ack(hive, OPERATOR, ids)
    if count:
        hive.bus.publish(events.MessagesRead(recipient=OPERATOR, ids=sorted(set(ids))))
    return count


# --- credentials -----------------------------------------------------------------------------


def _creds_changed(hive: Hive, name: str) -> None:
    """Badges ("needs login") follow the creds: remake the agent's row now (the pages hear of
    it as ``agent_changed``) rather than at the creds watcher's next look."""
    hive.refresh(name)


def creds_listing(hive: Hive, name: str) -> creds.Listing:
    return creds.listing(hive, name)


def set_cred(hive: Hive, name: str, key: str, value: str) -> creds.Listing:
    """Store a credential (see :mod:`hivekit.creds`); the value is never logged or returned."""
    result = creds.set_key(hive, name, key, value)
    _creds_changed(hive, result.agent)
    return result


def remove_cred(hive: Hive, name: str, key: str) -> creds.Listing:
    result = creds.remove_key(hive, name, key)
    _creds_changed(hive, result.agent)
    return result


# --- running things in an agent's sandbox, reading its output ----------------------------------

#: Bounds on an ``exec`` command line (it is untrusted input like any other).
MAX_EXEC_ARGS = 256
MAX_EXEC_BYTES = 64 * 1024


def plan_exec(hive: Hive, name: str, argv: list[str], tty: bool = False) -> ExecPlan:
    """How to run ``argv`` inside the agent's sandbox or container with its creds (the backend's
    ``agent_exec``); the caller runs the plan on this host."""
    spec = existing_agent(hive, name)
    if not argv or any("\0" in a for a in argv):
        raise BadRequest("argv must be a non-empty list of strings without NUL characters "
                         "(the command and its arguments)")
    if not argv[0]:
        raise BadRequest("argv[0] (the command) must not be empty")
    if len(argv) > MAX_EXEC_ARGS or sum(len(a.encode()) for a in argv) > MAX_EXEC_BYTES:
        raise BadRequest(f"the command line is too long (at most {MAX_EXEC_ARGS} arguments, "
                         f"{MAX_EXEC_BYTES} bytes)")
    plan = hive.hook.agent_exec(hive=hive, agent=spec, argv=list(argv), tty=bool(tty))
    if plan is None:
        raise BadRequest(f"the {hive.loaded.backend} backend cannot run commands inside its "
                         "agents (it implements no agent_exec hook)")
    return plan


#: The most lines ``logs`` returns before following.
MAX_LOG_LINES = 10_000


def agent_logs(hive: Hive, name: str, lines: int = 100, follow: bool = False) -> Any:
    """The agent's own output as an iterator of lines: its last ``lines``, then with ``follow``
    every new one (and ``None`` now and then while waiting) until it is closed.

    From the backend's ``agent_logs`` hook; a backend without one gets the live log's history
    (:attr:`Hive.history`) and, following, the live log itself.
    """
    spec = existing_agent(hive, name)
    if not 0 <= lines <= MAX_LOG_LINES:
        raise BadRequest(f"lines must be a number from 0 to {MAX_LOG_LINES}, got {lines!r}")
    source = hive.hook.agent_logs(hive=hive, agent=spec, lines=lines, follow=bool(follow))
    if source is None:
        return LiveLines(hive, spec.name, lines, follow)
    return iter(source)


class LiveLines:
    """Agent ``name``'s lines from the live log: the last ``lines`` of its history, then with
    ``follow`` each new one, yielding None about every second while none comes (so a reader
    can stop it). Subscribed as soon as it is made, so nothing published after that is missed;
    :meth:`close` it. Backends may follow with it too (:func:`agent_logs`)."""

    def __init__(self, hive: Hive, name: str, lines: int, follow: bool) -> None:
        self.hive, self.name = hive, name
        self._sub = hive.bus.subscribe_sync() if follow else None  # before the history
        kept = hive.history.recent(name, hive.history.per_agent)
        self._seen = kept[-1][1].seq if kept else 0
        logged = [env.event.line for _, env in kept if isinstance(env.event, events.LogLine)]
        self._backlog = logged[len(logged) - lines:] if lines > 0 else []

    def __iter__(self) -> Iterator[str | None]:
        return self

    def __next__(self) -> str | None:
        if self._backlog:
            return self._backlog.pop(0)
        while self._sub is not None:
            env = self._sub.get(timeout=1.0)
            if env is None:
                if self.hive.stopping.is_set():
                    break
                return None
            if (env.seq > self._seen and isinstance(env.event, events.LogLine)
                    and env.event.agent == self.name):
                return env.event.line
        self.close()
        raise StopIteration

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None


def log_history(hive: Hive, agent: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """``GET /api/logs``: the live log's recent entries as ``{seq, at, event}``, oldest first."""
    import json

    name = None if agent is None else check_name(agent)
    if not 1 <= limit <= 1000:
        raise BadRequest(f"limit must be a number from 1 to 1000, got {limit!r}")
    return [{"seq": env.seq, "at": at, "event": json.loads(env.json)}
            for at, env in hive.history.recent(name, limit)]
