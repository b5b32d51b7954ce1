"""``hivekit mcp``: the agent's hive socket as MCP tools, served on stdin/stdout.

Built on the official ``mcp`` SDK's FastMCP (imported only when the command runs). Each tool is
one call to the socket; the socket decides who the caller is, so the bridge holds no identity or
secret of its own. The bridge keeps no ``recv`` cursor: an MCP client may give up on a call
(cancel it, time out) after the socket answered, and a result it never got must not move a
cursor past its messages. So every ``recv`` offers every message not yet acknowledged, oldest
first; one offered before is marked ``again``. Nothing reaches the agent only to be hidden.

The tools follow MCP's conventions, so that a model (and the client showing it) knows what each
does before calling it: a title and a description, every parameter described with its bounds
(``Annotated[..., Field(description=..., ge=..., le=...)]``: the input schema says
``maximum: 300`` where the prose says "at most 300"), the behaviour hints (``readOnlyHint``,
``destructiveHint``, ``idempotentHint``; none reaches beyond the hive: ``openWorldHint`` false),
structured results (objects with ids: ``send`` answers ``{"id", "to"}``), hive events as objects
(a ``system`` message's JSON is parsed into ``event``), hivekit's own version in ``serverInfo``,
and errors written for the agent: what was wrong with its call, never a pydantic dump with a URL
nor an operator's command it cannot run.

The manager's tools (requests and approvals) are offered only when the socket says it is the
manager's, or when the hive cannot be asked at start (then its answer to each call decides).
"""

# No `from __future__ import annotations` here: FastMCP reads the tools' signatures at run time.

import inspect
import json
from typing import Annotated, Any

import httpx
from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

INSTRUCTIONS = """\
You are an agent of a hive run by hivekit. These tools reach the hive through your own socket:
messages to and from other agents and the operator (send, recv, ack, broadcast), questions
(ask the operator or a peer; answer the questions peers ask you), and, if you are the manager,
requests for new agents and config changes that the operator approves or denies.
Messages from `system` are hive events: recv gives them as an `event` object (its "type" says
which). Acknowledge (ack) every message once you have handled it: until then every recv offers
it again (marked "again").
"""

#: An agent's name, as the hive checks it (hivekit.names).
NAME = r"^[a-z][a-z0-9-]{0,8}$"
#: The broker's and the approvals' bounds (hivekit.broker, hivekit.actions).
MAX_BODY = 64 * 1024
MAX_WAIT = 300
MAX_BATCH = 100
MAX_ACK = 1000
MAX_ID = 2**63 - 1
MAX_DESCRIPTION = 4000

# Strict types: an argument of the wrong type is refused naming it, never converted (pydantic's
# default would read "false" as false and "5" as 5), as the socket does. StrictFloat takes an
# int (3 seconds) but neither a bool nor a string.
AgentName = Annotated[StrictStr, Field(description="An agent's name: 1-9 characters, a lowercase "
                                                   "letter, then lowercase letters, digits or '-'.",
                                       pattern=NAME)]
MessageId = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
QuestionId = Annotated[StrictInt, Field(description="The question's id (from `ask`, or from the "
                                                    "`question_asked` event).", ge=1, le=MAX_ID)]


class SocketClient:
    """Async HTTP to the agent socket; API errors become exceptions carrying the hive's message."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.http = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=socket_path),
                                      base_url="http://hive",
                                      timeout=httpx.Timeout(10.0, read=None))

    async def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        from mcp.server.fastmcp.exceptions import ToolError

        params = {k: v for k, v in params.items() if v is not None}
        try:
            resp = await self.http.request(method, path, json=body, params=params)
        except (httpx.TransportError, OSError) as exc:
            raise ToolError(f"the hive is not reachable at {self.socket_path} ({exc}); it may "
                            "be restarting: try again in a moment") from None
        try:
            data = resp.json()
        except ValueError:
            data = {"error": resp.text}
        if resp.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            raise ToolError(message or f"the hive answered HTTP {resp.status_code}")
        return data


def whoami_sync(socket_path: str) -> dict[str, Any] | None:
    """The socket's ``/whoami``, or None when the hive cannot be asked."""
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=socket_path), base_url="http://hive",
                          timeout=5.0) as http:
            resp = http.get("/whoami")
        return resp.json() if resp.status_code == 200 else None
    except (httpx.HTTPError, OSError, ValueError):
        return None


def message(m: dict[str, Any]) -> dict[str, Any]:
    """A message as a tool result: a hive event (``system``'s JSON) as the object ``event``."""
    out = {"id": m["id"], "from": m["sender"], "sent_at": m["created_at"]}
    if m["sender"] == "system":
        try:
            event = json.loads(m["body"])
        except ValueError:
            event = None
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            return {**out, "event": event}
    return {**out, "body": m["body"]}


def explain(tool: str, exc: BaseException) -> str:
    """What went wrong with a call of ``tool``, for the agent that made it."""
    from pydantic import ValidationError

    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        problems = []
        for error in cause.errors(include_url=False):
            where = ".".join(str(p) for p in error["loc"] if p != tool + "Arguments") or "input"
            problems.append(f"{where}: {error['msg']}")
        return f"{tool}: invalid arguments: " + "; ".join(problems)
    text = str(cause) if cause is not None else str(exc)
    return f"{tool}: {text}"


def _annotations(title: str, *, read_only: bool = False, destructive: bool = False,
                 idempotent: bool = False) -> Any:
    from mcp.types import ToolAnnotations

    return ToolAnnotations(title=title, readOnlyHint=read_only, destructiveHint=destructive,
                           idempotentHint=idempotent, openWorldHint=False)


def build(socket_path: str, is_manager: bool | None) -> Any:
    """The FastMCP server for ``socket_path``; ``is_manager`` None means "unknown": offer all."""
    from mcp.server.fastmcp import FastMCP
    from mcp.server.fastmcp.exceptions import ToolError

    from hivekit import __version__

    class HiveMCP(FastMCP):
        async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
            try:
                return await super().call_tool(name, arguments)
            except ToolError as exc:
                raise ToolError(explain(name, exc)) from None

    client = SocketClient(socket_path)
    offered: set[int] = set()  # ids this bridge handed out before (marked "again")
    server = HiveMCP("hive", instructions=INSTRUCTIONS, log_level="WARNING")
    # serverInfo names hivekit's version, not the SDK's (FastMCP takes no version itself).
    server._mcp_server.version = __version__

    async def whoami() -> dict[str, Any]:
        """Who you are in the hive: your agent name, whether you are the manager, the manager's
        name, your web port and the operator's pronouns."""
        return await client.call("GET", "/whoami")

    async def send(
        to: Annotated[StrictStr, Field(description="The recipient: an agent's name, or "
                                                   "\"operator\" for the human running the "
                                                   "hive.", pattern=NAME)],
        body: Annotated[StrictStr, Field(description="The message text.", min_length=1,
                                         max_length=MAX_BODY)],
    ) -> dict[str, Any]:
        """Send a message to another agent's inbox, or to the operator's. Returns the message's
        id and recipient."""
        m = await client.call("POST", "/send", {"to": to, "body": body})
        return {"id": m["id"], "to": m["recipient"]}

    async def recv(
        wait_seconds: Annotated[StrictFloat, Field(description="With no message to hand out, "
                                                               "wait up to this many seconds "
                                                               "for one.",
                                                   ge=0, le=MAX_WAIT)] = 0,
        limit: Annotated[StrictInt, Field(description="The most messages to return.", ge=1,
                                          le=MAX_BATCH)] = 20,
    ) -> dict[str, Any]:
        """Receive the messages in your inbox, oldest first: each has an id, who it is from,
        when it was sent, and its `body` (or, for a hive event from `system`, an `event`
        object whose "type" says which).

        Returns at once with every message you have not acknowledged; if there is none, waits
        up to `wait_seconds` for one. Call `ack` with the ids you have handled: until then a
        message is offered again by every recv (marked "again": true), so a recv that was
        interrupted loses nothing.
        """
        got = await client.call("GET", "/recv", after=0, limit=limit, wait=wait_seconds)
        messages = []
        for m in got["messages"]:
            messages.append({**message(m), **({"again": True} if m["id"] in offered else {})})
            offered.add(m["id"])
        return {"messages": messages}

    async def ack(
        ids: Annotated[list[MessageId], Field(description="Ids of messages you have handled "
                                                          "(from `recv`).",
                                              min_length=1, max_length=MAX_ACK)],
    ) -> dict[str, Any]:
        """Acknowledge messages you have handled: they leave your inbox for good. Returns how
        many were newly acknowledged (acknowledging twice is harmless)."""
        got = await client.call("POST", "/ack", {"ids": ids})
        return {"acked": got["acked"]}

    async def broadcast(
        body: Annotated[StrictStr, Field(description="The message text.", min_length=1,
                                         max_length=MAX_BODY)],
    ) -> dict[str, Any]:
        """Send a message to every other agent of the hive (the manager included); each copy
        ends with a hint that it may need no action. Returns the message id per agent, and per
        agent any delivery that failed."""
        return await client.call("POST", "/broadcast", {"body": body})

    async def ask(
        question: Annotated[StrictStr, Field(description="The question.", min_length=1,
                                             max_length=MAX_BODY)],
        to: Annotated[StrictStr, Field(description="\"operator\" (the human running the hive), or "
                                                   "an agent's name.", pattern=NAME)] = "operator",
        options: Annotated[list[Annotated[StrictStr, Field(min_length=1, max_length=200)]] | None,
                                 Field(description="Choices to pick from; none for a free-text "
                                                   "answer.", max_length=20)] = None,
        multi: Annotated[StrictBool, Field(description="Allow several options (then options may "
                                                       "not contain commas).")] = False,
        timeout_seconds: Annotated[StrictFloat | None, Field(description="Let it expire unanswered "
                                                                         "after this many seconds.",
                                                             gt=0, le=30 * 86400)] = None,
    ) -> dict[str, Any]:
        """Ask the operator or another agent a question. Returns the question (its id) at
        once; the answer arrives later in your inbox as a `question_answered` event (status
        answered, expired or cancelled)."""
        return await client.call("POST", "/ask", {
            "question": question, "to": to, "options": options or [], "multi": multi,
            "timeout": timeout_seconds})

    async def answer(
        question_id: QuestionId,
        answer: Annotated[StrictStr, Field(description="Your answer: for a question with "
                                                       "options, one of them (several, "
                                                       "separated by commas, if it allows "
                                                       "several).", min_length=1,
                                           max_length=MAX_BODY)],
    ) -> dict[str, Any]:
        """Answer a question another agent asked you (a `question_asked` event in your inbox).
        Returns the answered question."""
        return await client.call("POST", "/answer", {"id": question_id, "answer": answer})

    async def cancel_question(question_id: QuestionId) -> dict[str, Any]:
        """Withdraw a question you asked that is still pending. Returns it, cancelled."""
        return await client.call("POST", "/cancel", {"id": question_id})

    async def questions() -> dict[str, Any]:
        """The pending questions you asked or were asked."""
        return {"questions": await client.call("GET", "/questions")}

    async def agents() -> dict[str, Any]:
        """Every agent of the hive with its status (running, stopped...) and web port."""
        return {"agents": await client.call("GET", "/agents")}

    async def templates() -> dict[str, Any]:
        """Manager only: the templates a new agent can be seeded with (name → what it is),
        for `request_spawn`'s `template`."""
        return {"templates": await client.call("GET", "/templates")}

    async def request_spawn(
        name: AgentName,
        description: Annotated[StrictStr, Field(description="Why this agent: shown to the "
                                                            "operator.",
                                                max_length=MAX_DESCRIPTION)] = "",
        template: Annotated[StrictStr | None, Field(description="Seed its config from this "
                                                                "template (see `templates`), "
                                                                "e.g. \"claude\" for Claude "
                                                                "Code; none for the default.",
                                                    min_length=1, max_length=64)] = None,
    ) -> dict[str, Any]:
        """Manager only: ask the operator to approve a new agent. Returns the pending approval;
        the outcome arrives as `approval_resolved` and `spawned` events."""
        return await client.call("POST", "/requests/spawn",
                                 {"name": name, "description": description,
                                  "template": template})

    async def request_apply(
        agent: AgentName,
        commit: Annotated[StrictStr, Field(description="A sha or ref you committed in the "
                                                       "agent's proposed config repo (resolved "
                                                       "to its full sha when requested).",
                                           min_length=1, max_length=256)],
        description: Annotated[StrictStr, Field(description="What the change does: shown to the "
                                                            "operator.",
                                                max_length=MAX_DESCRIPTION)] = "",
    ) -> dict[str, Any]:
        """Manager only: ask the operator to deploy a commit of an agent's proposed config repo.
        Returns the pending approval (`commit` is the full sha, `ref` what you gave); the
        outcome arrives as `approval_resolved` and `rebuilt` events."""
        return await client.call("POST", "/requests/apply",
                                 {"agent": agent, "commit": commit, "description": description})

    async def approvals(
        include_resolved: Annotated[StrictBool, Field(description="Also the recent history "
                                                                  "(approved, denied, "
                                                                  "failed).")] = False,
    ) -> dict[str, Any]:
        """Manager only: the pending and running approvals (with `include_resolved`, the
        recent history too)."""
        return {"approvals": await client.call("GET", "/approvals",
                                               all="true" if include_resolved else None)}

    async def approval(
        approval_id: Annotated[StrictInt, Field(description="The approval's id.", ge=1, le=MAX_ID)],
    ) -> dict[str, Any]:
        """Manager only: one approval with the diff it deploys."""
        return await client.call("GET", f"/approvals/{approval_id}")

    read_only = {"read_only": True, "idempotent": True}
    tools: list[tuple[Any, Any]] = [
        (whoami, _annotations("Who am I", **read_only)),
        (send, _annotations("Send a message")),
        # recv changes nothing of the hive (only ack does).
        (recv, _annotations("Receive messages", read_only=True)),
        (ack, _annotations("Acknowledge messages", destructive=True, idempotent=True)),
        (broadcast, _annotations("Broadcast a message")),
        (ask, _annotations("Ask a question")),
        (answer, _annotations("Answer a question")),
        (cancel_question, _annotations("Withdraw a question", destructive=True)),
        (questions, _annotations("Pending questions", **read_only)),
        (agents, _annotations("The hive's agents", **read_only)),
    ]
    if is_manager is not False:
        tools += [
            (templates, _annotations("Agent templates", **read_only)),
            (request_spawn, _annotations("Request a new agent")),
            (request_apply, _annotations("Request a config deploy")),
            (approvals, _annotations("Approvals", **read_only)),
            (approval, _annotations("One approval and its diff", **read_only)),
        ]
    for tool, annotations in tools:
        server.add_tool(tool, title=annotations.title, annotations=annotations,
                        description=inspect.cleandoc(tool.__doc__ or ""),
                        structured_output=True)
    return server


def serve(socket_path: str) -> None:
    """Run the MCP server on stdio until the client closes it."""
    me = whoami_sync(socket_path)
    server = build(socket_path, None if me is None else bool(me.get("is_manager")))
    server.run("stdio")
