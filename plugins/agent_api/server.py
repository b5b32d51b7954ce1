"""The agent API: HTTP + JSON on each agent's own Unix socket.

**Identity is the socket.** ``<runtime_dir>/agents/<n>/hive.sock`` (mode 0600, bound into the
agent's container as ``/run/hive/hive.sock``) speaks for agent ``<n>`` and no other: every
request on it is that agent's, so an agent cannot send as another, and only the manager's socket
may request spawns and applies or look at approvals.

One Litestar app serves every socket; a thin ASGI wrapper per socket stamps the agent's name into
the request scope. Each socket has its own uvicorn server, and all of them run on one asyncio
loop in one thread, so a long-polling ``recv`` occupies no thread, and an agent's socket can come
and go (spawn, destroy) without touching the others.

The domain work is done by :mod:`hivekit.broker`, :mod:`hivekit.questions` and
:mod:`hivekit.actions` on worker threads; this module only translates HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import uvicorn
from attrs import define, field, frozen
from litestar import Litestar, Request, Response, Router, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException

from hivekit import (
    OPERATOR,
    ApplyRequest,
    ApprovalStatus,
    Forbidden,
    Hive,
    HiveDep,
    SpawnRequest,
    actions,
    bind_unix,
    body,
    broker,
    check_input,
    converter,
    error_handler,
    path_id,
    query,
    questions,
    state,
)

log = logging.getLogger("hivekit.agent_api")

#: The ASGI scope keys the per-socket wrapper sets.
AGENT_KEY = "hivekit.agent"
STOPPED_KEY = "hivekit.stopped"
#: Seconds a stopping socket gives requests in flight (long-polls are woken at once).
GRACEFUL_SECONDS = 1


# --- request bodies --------------------------------------------------------------------------


@frozen
class SendBody:
    to: str
    body: str


@frozen
class BroadcastBody:
    body: str


@frozen
class AckBody:
    ids: list[int]


@frozen
class AskBody:
    question: str
    #: ``"operator"`` or a peer agent's name.
    to: str = OPERATOR
    options: list[str] = field(factory=list)
    multi: bool = False
    #: Seconds until the question expires unanswered; None for never.
    timeout: float | None = None


@frozen
class AnswerBody:
    id: int
    #: Free text, one option, or (multi-select) a list of options or a comma-separated string.
    answer: str | list[str]


@frozen
class CancelBody:
    id: int


@frozen
class RecvQuery:
    #: The cursor: only messages with a larger id.
    after: int = 0
    limit: int = broker.MAX_BATCH
    #: Seconds to wait for a message when there is none.
    wait: float = 0.0


@frozen
class ApprovalsQuery:
    status: ApprovalStatus | None = None
    all: bool = False


@frozen
class WhoAmI:
    name: str
    is_manager: bool
    #: The manager's name (who to ask for spawns and config changes).
    manager: str
    #: The agent's web port.
    port: int
    operator_pronouns: str


# --- plumbing --------------------------------------------------------------------------------


def _me(request: Request) -> str:
    return request.scope[AGENT_KEY]  # type: ignore[literal-required]


def _manager_only(hive: Hive, me: str, what: str) -> None:
    if me != hive.manager:
        raise Forbidden(f"only the manager ({hive.manager!r}) can {what}; send it a message "
                        "asking for it instead")


def _json(obj: Any, status: int = 200) -> Response:
    return Response(content=converter.unstructure(obj), status_code=status)


async def _run(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(lambda: func(*args, **kwargs), abandon_on_cancel=True)


# --- routes ----------------------------------------------------------------------------------


@get("/whoami")
async def whoami(hive: HiveDep, request: Request) -> Response:
    """Who this socket speaks for."""
    me = _me(request)
    return _json(WhoAmI(name=me, is_manager=me == hive.manager, manager=hive.manager,
                        port=hive.port(me), operator_pronouns=hive.config.hive.operator_pronouns))


@post("/send", status_code=201, opt={"body": SendBody})
async def send(hive: HiveDep, request: Request) -> Response:
    """Send ``body`` to agent ``to``; returns the stored message."""
    b = body(request)
    return _json(await _run(broker.send, hive, _me(request), b.to, b.body), 201)


@get("/recv", opt={"query": RecvQuery})
async def recv(hive: HiveDep, request: Request) -> Response:
    """Unacknowledged messages with an id above ``after``, oldest first, waiting up to ``wait``
    seconds for one; returns ``{messages, cursor}`` (pass ``cursor`` as ``after`` next time)."""
    stopped = request.scope.get(STOPPED_KEY)
    q = query(request)
    delivery = await broker.receive_async(hive, _me(request), after=q.after, limit=q.limit,
                                          wait=q.wait, stopped=stopped)
    return _json(delivery)


@post("/ack", status_code=200, opt={"body": AckBody})
async def ack(hive: HiveDep, request: Request) -> Response:
    """Retire handled messages: ``{"ids": [...]}``; returns how many were newly acknowledged."""
    return Response({"acked": await _run(broker.ack, hive, _me(request), body(request).ids)})


@post("/broadcast", status_code=200, opt={"body": BroadcastBody})
async def broadcast(hive: HiveDep, request: Request) -> Response:
    """Send ``body`` to every agent; returns ``{sent: {agent: id}, failed: {agent: reason}}``."""
    return _json(await _run(broker.broadcast, hive, _me(request), body(request).body))


@post("/ask", status_code=201, opt={"body": AskBody})
async def ask(hive: HiveDep, request: Request) -> Response:
    """Ask the operator or a peer; the answer arrives as a ``question_answered`` helper event."""
    b = body(request)
    return _json(await _run(questions.ask, hive, _me(request), b.question, to=b.to,
                            options=b.options, multi=b.multi, timeout=b.timeout), 201)


@post("/answer", status_code=200, opt={"body": AnswerBody})
async def answer(hive: HiveDep, request: Request) -> Response:
    """Answer a question a peer asked this agent; returns the answered question."""
    b = body(request)
    return _json(await _run(questions.answer, hive, b.id, b.answer, by=_me(request)))


@post("/cancel", status_code=200, opt={"body": CancelBody})
async def cancel(hive: HiveDep, request: Request) -> Response:
    """Withdraw a pending question this agent asked; returns it, cancelled."""
    return _json(await _run(questions.cancel, hive, body(request).id, by=_me(request)))


@get("/questions")
async def list_questions(hive: HiveDep, request: Request) -> Response:
    """The pending questions this agent asked or was asked."""
    return _json(await _run(questions.involving, hive, _me(request)))


@get("/agents")
async def agents(hive: HiveDep) -> Response:
    """Every agent of the hive: name, status, port, deployed commit..."""
    return _json(await _run(state.agents, hive))


@post("/requests/spawn", status_code=201, opt={"body": SpawnRequest})
async def request_spawn(hive: HiveDep, request: Request) -> Response:
    """Manager only: ask the operator to approve a new agent."""
    _manager_only(hive, _me(request), "request spawns")
    b = body(request)
    return _json(await _run(actions.request_spawn, hive, b.name, b.description, b.template),
                 201)


@post("/requests/apply", status_code=201, opt={"body": ApplyRequest})
async def request_apply(hive: HiveDep, request: Request) -> Response:
    """Manager only: ask the operator to deploy a commit of an agent's proposed repo."""
    _manager_only(hive, _me(request), "request config applies")
    b = body(request)
    return _json(await _run(actions.request_apply, hive, b.agent, b.commit, b.description),
                 201)


@get("/approvals", opt={"query": ApprovalsQuery})
async def list_approvals(hive: HiveDep, request: Request) -> Response:
    """Manager only: pending and running approvals (``all=true``: the recent history too)."""
    _manager_only(hive, _me(request), "list approvals")
    q = query(request)
    return _json(await _run(actions.list_approvals, hive, q.status, q.all,
                            200 if q.all else None))


@get("/approvals/{approval_id:str}")
async def show_approval(hive: HiveDep, request: Request) -> Response:
    """Manager only: one approval with its diff."""
    _manager_only(hive, _me(request), "look at approvals")
    return _json(await _run(actions.get_approval, hive, path_id(request, "approval_id")))


@get("/templates")
async def list_templates(hive: HiveDep, request: Request) -> Response:
    """Manager only: the templates ``/requests/spawn`` may name, ``{name: description}``."""
    _manager_only(hive, _me(request), "list templates")
    return Response(await _run(actions.templates, hive))


ROUTES = [whoami, send, recv, ack, broadcast, ask, answer, cancel, list_questions, agents,
          request_spawn, request_apply, list_approvals, show_approval, list_templates]

#: The operator's commands some of the hive's messages suggest, and what an agent does instead
#: (an agent has no `hivekit` CLI and no admin socket).
AGENT_HINTS = {
    "`hivekit approvals --all` lists them": "GET /approvals?all=true (the `approvals` tool) "
                                            "lists them",
    "`hivekit questions` lists them": "GET /questions (the `questions` tool) lists the pending "
                                      "ones",
}


def for_agent(message: str) -> str:
    """A hive's error message as an agent should read it: an operator's command it suggests
    becomes the agent's way to the same thing, or goes (with the clause that names it)."""
    for operator, agent in AGENT_HINTS.items():
        message = message.replace(operator, agent)
    if "`hivekit " in message:
        clauses = [c for c in message.split("; ") if "`hivekit " not in c]
        message = "; ".join(clauses) or "the hive refused the request"
    return message


def create_app(hive: Hive, max_body: int) -> Litestar:
    """The agent API app; serve it through :class:`AsAgent` (which says whose socket it is)."""

    def errors(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 413:
            return Response({"error": f"request body too large (the limit is {max_body} "
                                      "bytes)"}, status_code=413)
        response = error_handler(request, exc)
        if isinstance(response.content, dict) and isinstance(response.content.get("error"),
                                                             str):
            response.content["error"] = for_agent(response.content["error"])
        return response

    return Litestar(
        route_handlers=[Router("/", route_handlers=ROUTES)],
        dependencies={"hive": Provide(lambda: hive, use_cache=True, sync_to_thread=False)},
        exception_handlers={Exception: errors},
        before_request=check_input,
        request_max_body_size=max_body,
        debug=False,
        logging_config=None,
        openapi_config=None,
    )


class AsAgent:
    """ASGI wrapper: every request through it is agent ``name``'s."""

    def __init__(self, app: Any, name: str, stopped: Callable[[], bool]) -> None:
        self.app, self.name, self.stopped = app, name, stopped

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope[AGENT_KEY] = self.name
        scope[STOPPED_KEY] = self.stopped
        await self.app(scope, receive, send)


# --- serving the sockets ---------------------------------------------------------------------


@define
class _Served:
    server: uvicorn.Server
    done: Future[None]
    path: Path
    inode: int
    stopping: bool = False

    def current(self) -> bool:
        """Still serving, and the file at ``path`` is still the socket it bound."""
        if self.done.done() or self.stopping:
            return False
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False


class AgentSockets:
    """Every agent's socket: one uvicorn server each, all on one asyncio loop thread.

    :meth:`ensure` and :meth:`remove` may be called from any thread (hooks run on worker
    threads); :meth:`close` stops everything and returns within a few seconds.
    """

    def __init__(self, hive: Hive, max_body: int) -> None:
        self.hive = hive
        self.app = create_app(hive, max_body)
        self._lock = threading.Lock()
        self._served: dict[str, _Served] = {}
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._until_closed: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run_loop, name="agent-api", daemon=True)
        self._thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            # Not run_forever: anyio ties its worker threads to the loop's root task, the task
            # run_until_complete runs. Without one it takes each request's task instead and ends
            # the thread with it, so every store call started (and scanned all tasks for) a new
            # thread: a third of the socket loop's time in the broker bench.
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:  # a task (a bare future is no root task to anyio)
        await self._until_closed

    def names(self) -> list[str]:
        with self._lock:
            return sorted(n for n, s in self._served.items() if s.current())

    def ensure(self, name: str) -> Path:
        """Serve agent ``name``'s socket; idempotent (a socket already served is kept, a missing
        or replaced socket file is bound anew). Returns the socket's path."""
        path = self.hive.agent(name).paths.socket
        with self._lock:
            if self._closed:  # the daemon is stopping; the next start binds it again
                log.info("not serving %s's socket: the hive is stopping", name)
                return path
            served = self._served.pop(name, None)
            if served is not None and served.current():
                self._served[name] = served
                return path
            if served is not None:
                self._stop(name, served)
                self._wait(served)
            sock = bind_unix(path)
            inode = os.stat(path).st_ino
            holder: dict[str, _Served] = {}
            config = uvicorn.Config(
                AsAgent(self.app, name, lambda: holder["s"].stopping), lifespan="off",
                log_config=None, log_level="warning", access_log=False,
                timeout_graceful_shutdown=GRACEFUL_SECONDS)
            server = uvicorn.Server(config)
            done = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), self._loop)
            holder["s"] = self._served[name] = _Served(server, done, path, inode)
            done.add_done_callback(lambda f, n=name: self._ended(n, f))
        log.info("agent API for %s on %s", name, path)
        return path

    def _ended(self, name: str, done: Future[None]) -> None:
        if not done.cancelled() and (exc := done.exception()) is not None:
            log.error("the agent API socket of %s stopped: %s: %s", name, type(exc).__name__,
                      exc)

    def _stop(self, name: str, served: _Served) -> None:
        served.stopping = True
        served.server.should_exit = True
        self.hive.doorbell.ring(name)  # its long-polls see `stopping` and answer at once

    def _wait(self, served: _Served, timeout: float = GRACEFUL_SECONDS + 2) -> None:
        with contextlib.suppress(Exception):
            served.done.result(timeout)
        with contextlib.suppress(OSError):
            if os.stat(served.path).st_ino == served.inode:
                served.path.unlink()

    def remove(self, name: str) -> None:
        """Stop serving agent ``name``'s socket and remove it (no error if it wasn't served)."""
        with self._lock:
            served = self._served.pop(name, None)
            if served is not None:
                self._stop(name, served)
        if served is not None:
            self._wait(served)
        else:
            self.hive.agent(name).paths.socket.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop every socket and the loop (the daemon is stopping)."""
        with self._lock:
            self._closed = True
            served = dict(self._served)
            self._served.clear()
            for name, s in served.items():
                self._stop(name, s)
        for s in served.values():
            self._wait(s)
        def stop() -> None:
            if not self._until_closed.done():
                self._until_closed.set_result(None)

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=5)
