"""The HTTP API: one Litestar app over :mod:`hivekit.actions`, served on the admin socket and
reused by every other server (the dashboard's). Handlers only translate: JSON in (structured by
cattrs, extra keys refused), an action called on a worker thread, JSON out; a
:class:`~hivekit.errors.HiveError` becomes ``{"error": message}`` with its status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import attrs
import cattrs
from attrs import frozen
from litestar import Litestar, Request, Response, Router, delete, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.response import Stream

from hivekit import actions, questions, state
from hivekit.convert import converter, problems
from hivekit.errors import BadRequest, HiveError
from hivekit.events import Envelope
from hivekit.hive import OPERATOR, Hive

log = logging.getLogger("hivekit.api")

try:  # Litestar >= 2.23 wants parameters and dependencies marked; older ones lack the markers.
    from litestar.di import NamedDependency
    from litestar.params import FromPath, FromQuery
except ImportError:  # pragma: no cover - older Litestar (e.g. nixpkgs'): plain annotations

    class _Plain:
        def __class_getitem__(cls, item: Any) -> Any:
            return item

    NamedDependency = FromPath = FromQuery = _Plain  # type: ignore[misc,assignment]

#: Handlers take the hive as ``hive: HiveDep`` (the app's ``hive`` dependency).
HiveDep = NamedDependency[Hive]
#: A ``str`` path parameter: ``approval_id: PathStr``.
PathStr = FromPath[str]

#: Largest request body accepted (messages are capped lower by the actions).
MAX_BODY = 1024 * 1024


# --- request bodies --------------------------------------------------------------------------


@frozen
class SpawnRequest:
    name: str
    description: str = ""
    #: A template's name (``GET /api/templates``); None: the backend's default seed.
    template: str | None = None


@frozen
class ApplyRequest:
    agent: str
    commit: str
    description: str = ""


@frozen
class DenyRequest:
    note: str = ""


@frozen
class DestroyRequest:
    purge: bool = False


@frozen
class MessageRequest:
    to: str
    body: str


@frozen
class CredRequest:
    #: The secret (never echoed back, logged or printed).
    value: str


@frozen
class ExecRequest:
    #: The command to run inside the agent's sandbox or container, and its arguments.
    argv: list[str]
    #: Whether the caller has a terminal (an interactive login needs one).
    tty: bool = False


@frozen
class AckRequest:
    #: Message ids of the operator's inbox; empty with ``all``.
    ids: list[int] = attrs.field(factory=list)
    #: Acknowledge every message of the operator's inbox.
    all: bool = False


@frozen
class AnswerRequest:
    #: Free text; for an option question one option, and for a multi-select question a list of
    #: options or one string of them separated by commas.
    answer: Any


async def parse(request: Request, cls: type) -> Any:
    """The request's JSON body structured into ``cls``; a 400 saying what is wrong otherwise."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise HiveErrorResponse(413, f"request body too large (limit {MAX_BODY} bytes)")
    if not raw.strip():
        raw = b"{}"
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        raise BadRequest("; ".join(problems(exc, "body"))) from None


class HiveErrorResponse(HiveError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(obj: Any, status: int = 200) -> Response:
    return Response(content=converter.unstructure(obj), status_code=status)


def error_handler(_request: Request, exc: Exception) -> Response:
    if isinstance(exc, HiveError):
        return Response(content={"error": exc.message}, status_code=exc.status)
    if isinstance(exc, HTTPException):
        return Response(content={"error": exc.detail}, status_code=exc.status_code)
    log.exception("internal error")
    return Response(content={"error": f"internal error: {type(exc).__name__}: {exc}"},
                    status_code=500)


async def _run(hive: Hive, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a synchronous action on a worker thread (the core is synchronous)."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(lambda: func(hive, *args, **kwargs),
                                          abandon_on_cancel=True)


# --- routes ----------------------------------------------------------------------------------


@get("/api/state")
async def get_state(hive: HiveDep) -> Response:
    """The whole picture: ``seq`` (read first), agents, pending approvals, questions..."""
    return Response(await _run(hive, state.snapshot))


@get("/api/agents")
async def list_agents(hive: HiveDep) -> Response:
    return _json(await _run(hive, state.agents))


@get("/api/approvals")
async def list_approvals(hive: HiveDep, status: FromQuery[str | None] = None,
                         all: FromQuery[bool] = False,
                         limit: FromQuery[int | None] = None) -> Response:
    return _json(await _run(hive, actions.list_approvals, status, all, limit))


@get("/api/approvals/{approval_id:str}")
async def show_approval(hive: HiveDep, approval_id: PathStr) -> Response:
    return _json(await _run(hive, actions.get_approval, approval_id))


@post("/api/approvals/{approval_id:str}/approve", status_code=200)
async def approve(hive: HiveDep, approval_id: PathStr) -> Response:
    return _json(await _run(hive, actions.approve, approval_id))


@post("/api/approvals/{approval_id:str}/deny", status_code=200)
async def deny(hive: HiveDep, request: Request, approval_id: PathStr) -> Response:
    body = await parse(request, DenyRequest)
    return _json(await _run(hive, actions.deny, approval_id, body.note))


@post("/api/requests/spawn", status_code=201)
async def request_spawn(hive: HiveDep, request: Request) -> Response:
    body = await parse(request, SpawnRequest)
    return _json(await _run(hive, actions.request_spawn, body.name, body.description,
                            body.template), 201)


@post("/api/requests/apply", status_code=201)
async def request_apply(hive: HiveDep, request: Request) -> Response:
    body = await parse(request, ApplyRequest)
    return _json(await _run(hive, actions.request_apply, body.agent, body.commit,
                            body.description), 201)


_LIFECYCLE = {"start": actions.start, "stop": actions.stop, "restart": actions.restart,
              "rebuild": actions.rebuild}


@post("/api/agents/{name:str}/{verb:str}", status_code=200)
async def agent_action(hive: HiveDep, request: Request, name: PathStr,
                       verb: PathStr) -> Response:
    if verb == "destroy":
        body = await parse(request, DestroyRequest)
        await _run(hive, actions.destroy, name, body.purge)
        return Response({"destroyed": name, "purge": body.purge})
    if verb not in _LIFECYCLE:
        raise HiveErrorResponse(404, f"no action {verb!r}; one of: start, stop, restart, "
                                     "rebuild, destroy")
    return _json(await _run(hive, _LIFECYCLE[verb], name))


@get("/api/templates")
async def list_templates(hive: HiveDep) -> Response:
    """The templates a spawn may name: ``{name: description}``."""
    return Response(await _run(hive, actions.templates))


@get("/api/agents/{name:str}/creds")
async def list_creds(hive: HiveDep, name: PathStr) -> Response:
    """The agent's credential keys and login files, by name (never a value)."""
    return _json(await _run(hive, actions.creds_listing, name))


@post("/api/agents/{name:str}/creds/{key:str}", status_code=200)
async def set_cred(hive: HiveDep, request: Request, name: PathStr, key: PathStr) -> Response:
    """Store credential ``key`` (body ``{"value"}``); returns the names the agent now has."""
    body = await parse(request, CredRequest)
    return _json(await _run(hive, actions.set_cred, name, key, body.value))


@delete("/api/agents/{name:str}/creds/{key:str}", status_code=200)
async def remove_cred(hive: HiveDep, name: PathStr, key: PathStr) -> Response:
    return _json(await _run(hive, actions.remove_cred, name, key))


@post("/api/agents/{name:str}/exec", status_code=200)
async def plan_exec(hive: HiveDep, request: Request, name: PathStr) -> Response:
    """How to run ``argv`` in the agent's sandbox: the plan (``{argv, env, cwd}``) the caller
    runs itself, on this host (the daemon runs nothing)."""
    body = await parse(request, ExecRequest)
    return _json(await _run(hive, actions.plan_exec, name, body.argv, body.tty))


@get("/api/agents/{name:str}/logs")
async def agent_logs(hive: HiveDep, name: PathStr, lines: FromQuery[int] = 100,
                     follow: FromQuery[bool] = False) -> Response | Stream:
    """The agent's own output: ``{agent, lines}`` (its last ``lines``), or with ``follow`` a
    ``text/plain`` stream of them and then every new line, one per line, until closed."""
    source = await _run(hive, actions.agent_logs, name, lines, follow)
    if not follow:
        got = await _run(hive, lambda _h: [line for line in source if line is not None])
        return Response({"agent": name, "lines": got})
    return Stream(_lines(source), media_type="text/plain; charset=utf-8",
                  headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _lines(source: Any) -> AsyncIterator[bytes]:
    """Drain a log iterator on worker threads; closing it when the reader goes away."""
    import anyio.to_thread

    done = object()
    try:
        while True:
            line = await anyio.to_thread.run_sync(lambda: next(source, done),
                                                  abandon_on_cancel=False)
            if line is done:
                return
            if line is not None:  # None: the source is waiting (a chance to stop it)
                yield (line + "\n").encode(errors="replace")
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            await anyio.to_thread.run_sync(close)


@get("/api/logs")
async def live_log(hive: HiveDep, agent: FromQuery[str | None] = None,
                   limit: FromQuery[int] = 200) -> Response:
    """The live log's recent history (newest ``limit``, oldest first) of one agent or all:
    ``[{seq, at, event}]``, ``event`` as on the event stream, so a page that opens late shows
    the lines before the events that follow (applying only those with a larger seq)."""
    return Response(await _run(hive, actions.log_history, agent, limit))


@get("/api/agents/{name:str}/inbox")
async def inbox(hive: HiveDep, name: PathStr, limit: FromQuery[int] = 100) -> Response:
    return _json(await _run(hive, actions.inbox, name, limit))


@post("/api/agents/{name:str}/inbox/ack", status_code=200)
async def ack_inbox(hive: HiveDep, request: Request, name: PathStr) -> Response:
    """Mark messages of the operator's inbox read (``{"ids": [...]}`` or ``{"all": true}``):
    returns ``{"acked": n}``. Only the operator's: agents acknowledge their own."""
    body = await parse(request, AckRequest)
    return Response({"acked": await _run(hive, actions.ack_inbox, name, body.ids, body.all)})


@post("/api/messages", status_code=201)
async def send_message(hive: HiveDep, request: Request) -> Response:
    body = await parse(request, MessageRequest)
    return _json(await _run(hive, actions.send, body.to, body.body), 201)


@get("/api/questions")
async def list_questions(hive: HiveDep, all: FromQuery[bool] = False,
                         target: FromQuery[str] = "operator") -> Response:
    """Questions asked of the operator, oldest first: pending ones (``all=true``: every one).
    ``target=NAME`` lists those asked of agent NAME instead, ``target=any`` everyone's."""
    who = None if target == "any" else target
    return _json(await _run(hive, questions.list_questions, include_resolved=all, target=who))


@post("/api/questions/{question_id:str}/answer", status_code=200)
async def answer_question(hive: HiveDep, request: Request, question_id: PathStr) -> Response:
    """Answer a question as the operator; returns the answered question."""
    body = await parse(request, AnswerRequest)
    return _json(await _run(hive, questions.answer, question_id, body.answer, by=OPERATOR))


#: The headers of an event stream (those Litestar's ServerSentEvent sets).
SSE_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}


@get("/api/events")
async def stream_events(hive: HiveDep, request: Request) -> Stream:
    """Server-sent events: ``id`` = seq, ``event`` = type, ``data`` = the event's JSON.

    The first frame is ``hello`` with the current seq and the bus's ``boot`` (a new daemon has
    another). A client reconnecting with ``Last-Event-ID`` first gets what it missed, or a
    ``resync`` frame when those events are no longer kept (then it reloads ``/api/state``).

    Frames are encoded here rather than by Litestar's ``ServerSentEvent``: an event's JSON is
    made once for every subscriber (:attr:`Envelope.json`), and what is queued for a subscriber
    goes out in one write, so a burst to many subscribers costs a write per subscriber per burst
    rather than per event (measured in bench/README.md).
    """
    sub = hive.bus.subscribe()
    last = request.headers.get("last-event-id")

    async def frames() -> AsyncIterator[bytes]:
        try:
            seen = hive.bus.seq
            backlog = None
            head = []
            if last and last.isdigit():
                backlog = hive.bus.since(int(last))
                if backlog is None:
                    head.append(_sse("resync", json.dumps({"seq": seen})))
            head.append(_sse("hello", json.dumps({"seq": seen, "boot": hive.bus.boot})))
            sent = int(last) if backlog is not None and last else 0
            for env in backlog or []:
                sent = env.seq
                head.append(_frame(env))
            yield b"".join(head)
            async for batch in sub.batches():
                chunk = b"".join(_frame(env) for env in batch if env.seq > sent)
                if chunk:
                    yield chunk
        finally:
            sub.close()

    return Stream(frames(), media_type="text/event-stream", headers=SSE_HEADERS)


def _sse(event: str, data: str, seq: int | None = None) -> bytes:
    # JSON from json.dumps has no raw line breaks, so data is always one line.
    head = f"id: {seq}\r\n" if seq is not None else ""
    return f"{head}event: {event}\r\ndata: {data}\r\n\r\n".encode()


def _frame(env: Envelope) -> bytes:
    return _sse(type(env.event).TYPE, env.json, env.seq)


ROUTES = [get_state, list_agents, list_approvals, show_approval, approve, deny, request_spawn,
          request_apply, agent_action, inbox, ack_inbox, send_message, list_questions,
          answer_question, stream_events, list_templates, list_creds, set_cred, remove_cred,
          plan_exec, agent_logs, live_log]


def create_app(hive: Hive, extra: list[Any] | None = None) -> Litestar:
    """The API app for ``hive``, with every route plugins add through ``register_routes``."""
    handlers: list[Any] = list(ROUTES)
    hive.hook.register_routes(hive=hive, register=handlers.append)
    handlers += extra or []
    return Litestar(
        route_handlers=[Router("/", route_handlers=handlers)],
        dependencies={"hive": Provide(lambda: hive, use_cache=True, sync_to_thread=False)},
        exception_handlers={Exception: error_handler},
        request_max_body_size=MAX_BODY,
        debug=False,
        logging_config=None,
    )
