"""The agent API: HTTP + JSON on each agent's own Unix socket.

**Identity is the socket.** ``<runtime_dir>/agents/<n>/hive.sock`` (mode 0600, bound into the
agent's container as ``/run/hive/hive.sock``) speaks for agent ``<n>`` and no other: every
request on it is that agent's, so an agent cannot send as another, and only the manager's socket
may request spawns and applies or look at approvals.

One Litestar app serves every socket; a thin ASGI wrapper per socket stamps the agent's name into
the request scope. One uvicorn server on one asyncio loop in one thread listens on every socket
(:class:`AgentSockets`), so a long-polling ``recv`` occupies no thread, an idle hive's work does
not grow with its agents, and an agent's socket can come and go (spawn, destroy) without
touching the others.

The domain work is done by :mod:`hivekit.broker`, :mod:`hivekit.questions` and
:mod:`hivekit.actions` on worker threads; this module only translates HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable
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
    QuietServer,
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


@define(eq=False)
class _Listener:
    """One agent's socket, listened on by the one server."""

    name: str
    path: Path
    inode: int
    config: uvicorn.Config
    server: asyncio.Server | None = None
    #: The connections it accepted (uvicorn's protocols; they leave when they close).
    connections: weakref.WeakSet[Any] = field(factory=weakref.WeakSet)
    stopping: bool = False

    def current(self) -> bool:
        """Still listening, and the file at ``path`` is still the socket it bound."""
        if self.stopping:
            return False
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False


class AgentSockets:
    """Every agent's socket, all served by **one** uvicorn server on one asyncio loop thread.

    The server runs with no socket of its own: each agent's socket is added to it with
    ``loop.create_server`` and uvicorn's protocol, made with a config whose app says whose
    socket it is (:class:`AsAgent`); its main loop, date header and connection bookkeeping are
    shared, so the idle work (one tick every 0.1 s) does not grow with the number of agents.
    A socket comes (spawn, start) and goes (destroy) without touching the others.

    :meth:`ensure` and :meth:`remove` may be called from any thread (hooks run on worker
    threads); :meth:`close` stops everything and returns within a few seconds.
    """

    def __init__(self, hive: Hive, max_body: int) -> None:
        self.hive = hive
        self.app = create_app(hive, max_body)
        self._lock = threading.Lock()
        self._served: dict[str, _Listener] = {}
        self._closed = False
        self._server: QuietServer = QuietServer(self._config(self.app))
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="agent-api", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the agent API server did not start")

    @staticmethod
    def _config(app: Any) -> uvicorn.Config:
        return uvicorn.Config(app, lifespan="off", log_config=None, log_level="warning",
                              access_log=False, proxy_headers=False,
                              timeout_graceful_shutdown=GRACEFUL_SECONDS)

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

    async def _main(self) -> None:  # the root task (a bare future is no root task to anyio)
        serving = asyncio.ensure_future(self._server.serve(sockets=[]))
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.01)
        self._ready.set()
        await serving

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
                self._stop(served)
            sock = bind_unix(path)
            holder: list[_Listener] = []
            config = self._config(AsAgent(self.app, name, lambda: holder[0].stopping))
            config.load()
            listener = _Listener(name, path, os.stat(path).st_ino, config)
            holder.append(listener)
            try:
                listener.server = self._call(self._listen(listener, sock))
            except BaseException:
                sock.close()
                with contextlib.suppress(OSError):
                    path.unlink()
                raise
            self._served[name] = listener
        log.info("agent API for %s on %s", name, path)
        return path

    def _call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _listen(self, listener: _Listener, sock: Any) -> asyncio.Server:
        config, state = listener.config, self._server.server_state

        def protocol() -> asyncio.Protocol:
            made = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state={})
            listener.connections.add(made)
            return made

        server = await asyncio.get_running_loop().create_server(protocol, sock=sock,
                                                                backlog=128)
        self._server.servers.append(server)  # closed by uvicorn's shutdown too
        return server

    async def _drain(self, listeners: list[_Listener]) -> None:
        """Stop accepting on ``listeners``, let their requests finish (long-polls are woken),
        close what is left after the grace period."""
        state = self._server.server_state
        loop = asyncio.get_running_loop()
        for listener in listeners:
            if listener.server is not None:
                listener.server.close()
                with contextlib.suppress(ValueError):
                    self._server.servers.remove(listener.server)
            for conn in list(listener.connections):
                if conn in state.connections:
                    conn.shutdown()
        deadline = loop.time() + GRACEFUL_SECONDS
        while loop.time() < deadline and any(
                conn in state.connections for lst in listeners for conn in lst.connections):
            await asyncio.sleep(0.02)
        for listener in listeners:
            for conn in list(listener.connections):
                if conn in state.connections and conn.transport is not None:
                    conn.transport.close()

    def _stop(self, *listeners: _Listener) -> None:
        """Stop serving ``listeners`` and remove their socket files (any thread but the loop's)."""
        for listener in listeners:
            listener.stopping = True
            self.hive.doorbell.ring(listener.name)  # its long-polls see `stopping` at once
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._drain(list(listeners)), GRACEFUL_SECONDS + 2)
        for listener in listeners:
            with contextlib.suppress(OSError):
                if os.stat(listener.path).st_ino == listener.inode:
                    listener.path.unlink()

    def remove(self, name: str) -> None:
        """Stop serving agent ``name``'s socket and remove it (no error if it wasn't served)."""
        with self._lock:
            served = self._served.pop(name, None)
        if served is not None:
            self._stop(served)
        else:
            self.hive.agent(name).paths.socket.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop every socket and the server (the daemon is stopping)."""
        with self._lock:
            self._closed = True
            served = list(self._served.values())
            self._served.clear()
        self._stop(*served)
        self._server.should_exit = True  # its main loop ends at once
        self._thread.join(timeout=GRACEFUL_SECONDS + 5)
