"""The HTTP API: one Litestar app over :mod:`hivekit.actions`, served on the admin socket and
reused by every other server (the dashboard's). Handlers only translate: JSON in, an action called
on a worker thread, JSON out; a :class:`~hivekit.errors.HiveError` becomes ``{"error": message}``
with its status.

**Every input is structured strictly before a handler runs** (:func:`check_input`, the apps'
``before_request``), by :mod:`hivekit.convert`, and refused with a 400 naming the field:

* a route declares its JSON body class as ``opt={"body": Cls}`` and its query parameters as
  ``opt={"query": Cls}`` (attrs classes); the handler reads them with :func:`body` and
  :func:`query`. A route without a body class takes none (an empty body or ``{}``), one without
  a query class takes no query parameters; an unknown key or parameter, a parameter given twice,
  a value of the wrong type is refused;
* a path parameter named ``*_id`` is an id: ASCII digits, 1 to 2^63-1 (read it with
  :func:`path_id`); an id that names nothing is a 404 from the domain;
* a body is UTF-8 JSON without NaN or duplicate keys, nested at most
  :data:`~hivekit.convert.MAX_DEPTH` levels, at most the app's body size (413 beyond).

Plugins' routes (``register_routes``) follow the same convention and get the same checks.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from attrs import field, frozen
from litestar import Litestar, MediaType, Request, Response, Router, delete, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.response import Stream

from hivekit import actions, convert, questions, state
from hivekit.convert import converter
from hivekit.errors import BadRequest, HiveError, PluginError
from hivekit.events import Envelope
from hivekit.hive import OPERATOR, Hive
from hivekit.records import AgentLog, ApprovalStatus

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


# --- request bodies and query parameters -----------------------------------------------------


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
    ids: list[int] = field(factory=list)
    #: Acknowledge every message of the operator's inbox.
    all: bool = False


@frozen
class BroadcastRequest:
    body: str


@frozen
class AnswerRequest:
    #: Free text; for an option question one option, and for a multi-select question a list of
    #: options or one string of them separated by commas.
    answer: str | list[str]


@frozen
class LogsQuery:
    #: How many recent lines to start with.
    lines: int = 100
    #: Keep the answer open with every new line.
    follow: bool = False


@frozen
class LiveLogQuery:
    #: One agent's lines (default: every agent's).
    agent: str | None = None
    limit: int = 200


@frozen
class ApprovalsQuery:
    #: Only approvals in this state (newest first with ``limit``).
    status: ApprovalStatus | None = None
    #: Every approval, not only the pending and running ones.
    all: bool = False
    limit: int | None = None


@frozen
class InboxQuery:
    limit: int = 100


@frozen
class WaitQuery:
    #: Seconds to wait at most (up to an hour); then the answer is the thing as it is.
    timeout: float = 3600.0


@frozen
class QuestionsQuery:
    all: bool = False
    #: ``operator``, an agent's name, or ``any``.
    target: str = OPERATOR


# --- the checks every request goes through ---------------------------------------------------

_STATE_KEY = "hivekit_input"


async def check_input(request: Request) -> None:
    """Structure the request's path ids, query and body by its route's declarations (see the
    module's docstring), before the handler runs; :class:`BadRequest` for anything else."""
    opt = request.route_handler.opt
    found: dict[str, Any] = {}
    for name, value in request.path_params.items():
        if name.endswith("_id"):
            found[name] = convert.parse_id(str(value), name)
    query_cls = opt.get("query")
    params = {k: request.query_params.getall(k) for k in request.query_params}
    if query_cls is not None:
        found["query"] = convert.structure_query(params, query_cls)
    elif params:
        raise BadRequest(f"{request.url.path} takes no query parameters (got "
                         f"{', '.join(sorted(params))})")
    if request.method not in ("GET", "HEAD"):
        raw = await request.body()
        body_cls = opt.get("body")
        data = convert.loads(raw) if raw.strip() else {}
        if body_cls is not None:
            if not isinstance(data, dict):
                raise BadRequest(f"request body must be a JSON object, got "
                                 f"{convert.describe(data)}")
            found["body"] = convert.structure(data, body_cls)
        elif data != {}:
            got = (", ".join(sorted(data)) + ": unknown keys" if isinstance(data, dict)
                   else convert.describe(data))
            raise BadRequest(f"{request.method} {request.url.path} takes no request body "
                             f"(got {got}; send none, or {{}})")
    request.state[_STATE_KEY] = found


def body(request: Request) -> Any:
    """The request's body, structured into its route's ``opt["body"]`` class."""
    return request.state[_STATE_KEY]["body"]


def query(request: Request) -> Any:
    """The request's query parameters, structured into its route's ``opt["query"]`` class."""
    return request.state[_STATE_KEY]["query"]


def path_id(request: Request, name: str) -> int:
    """The id in path parameter ``name`` (``approval_id``), checked to be in range."""
    return request.state[_STATE_KEY][name]


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
    """The whole picture: ``seq`` (read first), agents, pending approvals, questions...

    Encoded once per ``seq`` (:mod:`hivekit.state`): while no event was published, every
    client gets the same bytes, without a hop to a worker thread."""
    body = state.snapshots(hive).cached()
    if body is None:
        body = await _run(hive, state.encoded_snapshot)
    return Response(content=body, media_type=MediaType.JSON)


@get("/api/agents")
async def list_agents(hive: HiveDep) -> Response:
    """Every agent's row (kept in memory: no plugin runs once the view is seeded)."""
    if not hive.view.seeded:
        await _run(hive, lambda h: h.view.seed())
    return Response(content=hive.view.rows_json(), media_type=MediaType.JSON)


@get("/api/approvals", opt={"query": ApprovalsQuery})
async def list_approvals(hive: HiveDep, request: Request) -> Response:
    q = query(request)
    return _json(await _run(hive, actions.list_approvals, q.status, q.all, q.limit))


@get("/api/approvals/{approval_id:str}")
async def show_approval(hive: HiveDep, request: Request) -> Response:
    return _json(await _run(hive, actions.get_approval, path_id(request, "approval_id")))


@get("/api/approvals/{approval_id:str}/wait", opt={"query": WaitQuery})
async def wait_approval(hive: HiveDep, request: Request) -> Response:
    """The approval once it is approved, denied or failed (or as it is after ``timeout``)."""
    return _json(await actions.wait_approval(hive, path_id(request, "approval_id"),
                                             query(request).timeout))


@get("/api/agents/{name:str}/wait", opt={"query": WaitQuery})
async def wait_agent(hive: HiveDep, request: Request, name: PathStr) -> Response:
    """The agent once no operation runs on it (or as it is after ``timeout``)."""
    return _json(await actions.wait_agent(hive, name, query(request).timeout))


@post("/api/approvals/{approval_id:str}/approve", status_code=200)
async def approve(hive: HiveDep, request: Request) -> Response:
    return _json(await _run(hive, actions.approve, path_id(request, "approval_id")))


@post("/api/approvals/{approval_id:str}/deny", status_code=200, opt={"body": DenyRequest})
async def deny(hive: HiveDep, request: Request) -> Response:
    return _json(await _run(hive, actions.deny, path_id(request, "approval_id"),
                            body(request).note))


@post("/api/requests/spawn", status_code=201, opt={"body": SpawnRequest})
async def request_spawn(hive: HiveDep, request: Request) -> Response:
    b = body(request)
    return _json(await _run(hive, actions.request_spawn, b.name, b.description, b.template),
                 201)


@post("/api/requests/apply", status_code=201, opt={"body": ApplyRequest})
async def request_apply(hive: HiveDep, request: Request) -> Response:
    b = body(request)
    return _json(await _run(hive, actions.request_apply, b.agent, b.commit, b.description),
                 201)


def _lifecycle_route(verb: str, action: Any) -> Any:
    @post(f"/api/agents/{{name:str}}/{verb}", status_code=200, name=f"agent_{verb}")
    async def handler(hive: HiveDep, name: PathStr) -> Response:
        return _json(await _run(hive, action, name))

    handler.fn.__doc__ = f"{verb.capitalize()} agent ``name``; returns its view."
    return handler


LIFECYCLE_ROUTES = [_lifecycle_route(verb, action) for verb, action in (
    ("start", actions.start), ("stop", actions.stop), ("restart", actions.restart),
    ("rebuild", actions.rebuild))]


@post("/api/agents/{name:str}/destroy", status_code=200, opt={"body": DestroyRequest})
async def destroy(hive: HiveDep, request: Request, name: PathStr) -> Response:
    purge = body(request).purge
    await _run(hive, actions.destroy, name, purge)
    return Response({"destroyed": name, "purge": purge})


@get("/api/templates")
async def list_templates(hive: HiveDep) -> Response:
    """The templates a spawn may name: ``{name: description}``."""
    return Response(await _run(hive, actions.templates))


@get("/api/agents/{name:str}/creds")
async def list_creds(hive: HiveDep, name: PathStr) -> Response:
    """The agent's credential keys and login files, by name (never a value)."""
    return _json(await _run(hive, actions.creds_listing, name))


@post("/api/agents/{name:str}/creds/{key:str}", status_code=200, opt={"body": CredRequest})
async def set_cred(hive: HiveDep, request: Request, name: PathStr, key: PathStr) -> Response:
    """Store credential ``key`` (body ``{"value"}``); returns the names the agent now has."""
    return _json(await _run(hive, actions.set_cred, name, key, body(request).value))


@delete("/api/agents/{name:str}/creds/{key:str}", status_code=200)
async def remove_cred(hive: HiveDep, name: PathStr, key: PathStr) -> Response:
    return _json(await _run(hive, actions.remove_cred, name, key))


@post("/api/agents/{name:str}/exec", status_code=200, opt={"body": ExecRequest})
async def plan_exec(hive: HiveDep, request: Request, name: PathStr) -> Response:
    """How to run ``argv`` in the agent's sandbox: the plan (``{argv, env, cwd}``) the caller
    runs itself, on this host (the daemon runs nothing)."""
    b = body(request)
    return _json(await _run(hive, actions.plan_exec, name, b.argv, b.tty))


@get("/api/agents/{name:str}/logs", opt={"query": LogsQuery})
async def agent_logs(hive: HiveDep, request: Request, name: PathStr) -> Response | Stream:
    """The agent's own output: ``{agent, lines}`` (its last ``lines``), or with ``follow`` a
    ``text/plain`` stream of them and then every new line, one per line, until closed."""
    q = query(request)
    source = await _run(hive, actions.agent_logs, name, q.lines, q.follow)
    if not q.follow:
        got = await _run(hive, lambda _h: [line for line in source if line is not None])
        return _json(AgentLog(agent=name, lines=got))
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


@get("/api/logs", opt={"query": LiveLogQuery})
async def live_log(hive: HiveDep, request: Request) -> Response:
    """The live log's recent history (newest ``limit``, oldest first) of one agent or all:
    ``[{seq, at, event}]``, ``event`` as on the event stream, so a page that opens late shows
    the lines before the events that follow (applying only those with a larger seq)."""
    q = query(request)
    return Response(await _run(hive, actions.log_history, q.agent, q.limit))


@get("/api/agents/{name:str}/inbox", opt={"query": InboxQuery})
async def inbox(hive: HiveDep, request: Request, name: PathStr) -> Response:
    return _json(await _run(hive, actions.inbox, name, query(request).limit))


@post("/api/agents/{name:str}/inbox/ack", status_code=200, opt={"body": AckRequest})
async def ack_inbox(hive: HiveDep, request: Request, name: PathStr) -> Response:
    """Mark messages of the operator's inbox read (``{"ids": [...]}`` or ``{"all": true}``):
    returns ``{"acked": n}``. Only the operator's: agents acknowledge their own."""
    b = body(request)
    return Response({"acked": await _run(hive, actions.ack_inbox, name, b.ids, b.all)})


@post("/api/messages", status_code=201, opt={"body": MessageRequest})
async def send_message(hive: HiveDep, request: Request) -> Response:
    b = body(request)
    return _json(await _run(hive, actions.send, b.to, b.body), 201)


@post("/api/broadcast", status_code=200, opt={"body": BroadcastRequest})
async def broadcast(hive: HiveDep, request: Request) -> Response:
    """The operator's message to every agent, with the broadcast hint: ``{sent: {agent: id},
    failed: {agent: reason}}``."""
    return _json(await _run(hive, actions.broadcast, body(request).body))


@get("/api/questions", opt={"query": QuestionsQuery})
async def list_questions(hive: HiveDep, request: Request) -> Response:
    """Questions asked of the operator, oldest first: pending ones (``all=true``: every one).
    ``target=NAME`` lists those asked of agent NAME instead, ``target=any`` everyone's."""
    q = query(request)
    who = None if q.target == "any" else q.target
    return _json(await _run(hive, questions.list_questions, include_resolved=q.all, target=who))


@post("/api/questions/{question_id:str}/answer", status_code=200, opt={"body": AnswerRequest})
async def answer_question(hive: HiveDep, request: Request) -> Response:
    """Answer a question as the operator; returns the answered question."""
    return _json(await _run(hive, questions.answer, path_id(request, "question_id"),
                            body(request).answer, by=OPERATOR))


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
    if last is not None and not (last.isascii() and last.isdigit() and len(last) <= 19):
        last = None  # not a seq this daemon gave out: start afresh (a resync is not needed)

    async def frames() -> AsyncIterator[bytes]:
        try:
            seen = hive.bus.seq
            backlog = None
            head = []
            if last:
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
    data = env.json
    if data is None:  # not encodable (logged once by Envelope.json): skip that event only
        return b""
    return _sse(type(env.event).TYPE, data, env.seq)


ROUTES = [get_state, list_agents, list_approvals, show_approval, wait_approval, wait_agent,
          approve, deny, request_spawn, request_apply, *LIFECYCLE_ROUTES, destroy, inbox,
          ack_inbox, send_message, broadcast, list_questions, answer_question, stream_events,
          list_templates, list_creds, set_cred, remove_cred, plan_exec, agent_logs, live_log]


def create_app(hive: Hive, extra: list[Any] | None = None) -> Litestar:
    """The API app for ``hive``, with every route plugins add through ``register_routes``.

    :raises PluginError: a plugin's route takes a method and path the core or another plugin
        serves already (naming both), or its ``register_routes`` failed.
    """
    handlers = list(ROUTES)
    owners = {key: "core" for key in _route_keys(ROUTES)}
    current = ["core"]
    added: list[tuple[str, Any]] = []

    def register(obj: Any) -> None:
        added.append((current[0], obj))

    for plugin, call in hive.each("register_routes", hive=hive, register=register):
        current[0] = plugin
        try:
            call()
        except Exception as exc:
            raise PluginError(f"plugin {plugin!r} failed in register_routes: "
                              f"{type(exc).__name__}: {exc}") from exc
    for plugin, obj in added:
        for key in _route_keys([obj]):
            if key in owners:
                method, path = key
                raise PluginError(
                    f"plugin {plugin!r} registers {method} {path}, already served by "
                    + (f"plugin {owners[key]!r}" if owners[key] != "core" else "the core")
                    + "; a route can have one owner: disable one of them")
            owners[key] = plugin
        handlers.append(obj)
    handlers += extra or []
    return Litestar(
        route_handlers=[Router("/", route_handlers=handlers)],
        dependencies={"hive": Provide(lambda: hive, use_cache=True, sync_to_thread=False)},
        exception_handlers={Exception: error_handler},
        before_request=check_input,
        request_max_body_size=MAX_BODY,
        debug=False,
        logging_config=None,
        # The routes are documented in the README; a generated schema would not know the
        # bodies and queries the routes declare in `opt`.
        openapi_config=None,
    )


def _route_keys(objs: list[Any]) -> set[tuple[str, str]]:
    """``(method, path)`` of every route of these handlers, controllers or routers, with path
    parameters' names and types dropped (``/api/agents/{}/inbox``): what a request would hit."""
    keys = set()
    for route in Router("/", route_handlers=list(objs)).routes:
        path = _PARAM.sub("{}", route.path)
        for method in getattr(route, "methods", {"WEBSOCKET"}):
            if method != "OPTIONS":  # added to every path by Litestar itself
                keys.add((method, path))
    return keys


_PARAM = re.compile(r"\{[^}]*\}")
