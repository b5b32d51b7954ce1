"""``hivekit mcp``: the agent's hive socket as MCP tools, served on stdin/stdout.

Built on the official ``mcp`` SDK's FastMCP (imported only when the command runs). Each tool is
one call to the socket; the socket decides who the caller is, so the bridge holds no identity or
secret of its own. The bridge keeps no ``recv`` cursor: an MCP client may give up on a call
(cancel it, time out) after the socket answered, and a result it never got must not move a
cursor past its messages. So every ``recv`` offers every message not yet acknowledged, oldest
first; one offered before is marked ``again``. Nothing reaches the agent only to be hidden.

The manager's tools (requests and approvals) are offered only when the socket says it is the
manager's, or when the hive cannot be asked at start (then its answer to each call decides).
"""

# No `from __future__ import annotations` here: FastMCP reads the tools' signatures at run time.

from typing import Any

import httpx

INSTRUCTIONS = """\
You are an agent of a hive run by hivekit. These tools reach the hive through your own socket:
messages to and from other agents and the operator (send, recv, ack, broadcast), questions
(ask the operator or a peer; answer the questions peers ask you), and, if you are the manager,
requests for new agents and config changes that the operator approves or denies.
Messages from `system` are hive events as JSON (a "type" key says which). Acknowledge (ack)
every message once you have handled it: unacknowledged messages come back after a restart.
"""


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
            raise ToolError(f"the hive is not reachable at {self.socket_path} ({exc}); is "
                            "hivekit running, and is this your agent's socket?") from None
        try:
            data = resp.json()
        except ValueError:
            data = {"error": resp.text}
        if resp.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            raise ToolError(message or f"HTTP {resp.status_code}")
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


def _message(m: dict[str, Any]) -> dict[str, Any]:
    return {"id": m["id"], "from": m["sender"], "body": m["body"], "sent_at": m["created_at"]}


def build(socket_path: str, is_manager: bool | None) -> Any:
    """The FastMCP server for ``socket_path``; ``is_manager`` None means "unknown": offer all."""
    from mcp.server.fastmcp import FastMCP

    # Strict types: an argument of the wrong type is refused naming it, never converted
    # (pydantic's default would read "false" as false and "5" as 5), as the socket does.
    from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

    Seconds = StrictInt | StrictFloat

    client = SocketClient(socket_path)
    offered: set[int] = set()  # ids this bridge handed out before (marked "again")
    server = FastMCP("hive", instructions=INSTRUCTIONS, log_level="WARNING")

    async def whoami() -> dict[str, Any]:
        """Who you are in the hive: your agent name, whether you are the manager, the manager's
        name, your web port and the operator's pronouns."""
        return await client.call("GET", "/whoami")

    async def send(to: StrictStr, body: StrictStr) -> str:
        """Send a message to another agent's inbox (`to` is its name). Returns the message id."""
        m = await client.call("POST", "/send", {"to": to, "body": body})
        return f"sent message #{m['id']} to {to}"

    async def recv(wait_seconds: Seconds = 0, limit: StrictInt = 20) -> dict[str, Any]:
        """Receive the messages in your inbox, oldest first (each with id, from, body).

        Returns at once with every message you have not acknowledged; if there is none, waits
        up to `wait_seconds` (at most 300) for one. Call `ack` with the ids you have handled:
        until then a message is offered again by every recv (marked "again": true), so a recv
        that was interrupted loses nothing. Messages from `system` are JSON events with a
        "type" key.
        """
        got = await client.call("GET", "/recv", after=0, limit=limit, wait=wait_seconds)
        messages = []
        for m in got["messages"]:
            messages.append({**_message(m), **({"again": True} if m["id"] in offered else {})})
            offered.add(m["id"])
        return {"messages": messages}

    async def ack(ids: list[StrictInt]) -> str:
        """Acknowledge messages you have handled (their ids from `recv`): they leave your inbox
        for good. Acknowledging twice is harmless."""
        got = await client.call("POST", "/ack", {"ids": ids})
        return f"acknowledged {got['acked']} message(s)"

    async def broadcast(body: StrictStr) -> dict[str, Any]:
        """Send a message to every other agent in the hive (the manager included); each copy
        ends with a hint that it may need no action. Returns who got it and, per agent, any
        delivery that failed."""
        return await client.call("POST", "/broadcast", {"body": body})

    async def ask(question: StrictStr, to: StrictStr = "operator",
                  options: list[StrictStr] | None = None, multi: StrictBool = False,
                  timeout_seconds: Seconds | None = None) -> dict[str, Any]:
        """Ask the operator (`to` = "operator", the default) or another agent (its name) a
        question. Give `options` to ask for a choice (`multi` = true to allow several; such
        options may not contain commas), and `timeout_seconds` to let it expire unanswered.
        Returns the question (its id) at once; the answer arrives later in your inbox as a
        `question_answered` event (status answered, expired or cancelled)."""
        return await client.call("POST", "/ask", {
            "question": question, "to": to, "options": options or [], "multi": multi,
            "timeout": timeout_seconds})

    async def answer(question_id: StrictInt, answer: StrictStr) -> dict[str, Any]:
        """Answer a question another agent asked you (a `question_asked` event in your inbox).
        With options, answer with one of them; for multi-select, several separated by
        commas."""
        return await client.call("POST", "/answer", {"id": question_id, "answer": answer})

    async def cancel_question(question_id: StrictInt) -> dict[str, Any]:
        """Withdraw a question you asked that is still pending."""
        return await client.call("POST", "/cancel", {"id": question_id})

    async def questions() -> list[dict[str, Any]]:
        """The pending questions you asked or were asked."""
        return await client.call("GET", "/questions")

    async def agents() -> list[dict[str, Any]]:
        """Every agent of the hive with its status (running/stopped) and web port."""
        return await client.call("GET", "/agents")

    async def request_spawn(name: StrictStr, description: StrictStr = "") -> dict[str, Any]:
        """Manager only: ask the operator to approve a new agent `name` (1-9 characters:
        lowercase letter, then lowercase letters, digits or '-'). Returns the pending approval;
        the outcome arrives as `approval_resolved` and `spawned` events."""
        return await client.call("POST", "/requests/spawn",
                                 {"name": name, "description": description})

    async def request_apply(agent: StrictStr, commit: StrictStr,
                            description: StrictStr = "") -> dict[str, Any]:
        """Manager only: ask the operator to deploy `commit` (a sha or ref you committed in the
        agent's proposed config repo). Returns the pending approval; the outcome arrives as
        `approval_resolved` and `rebuilt` events."""
        return await client.call("POST", "/requests/apply",
                                 {"agent": agent, "commit": commit, "description": description})

    async def approvals(include_resolved: StrictBool = False) -> list[dict[str, Any]]:
        """Manager only: the pending and running approvals (with `include_resolved`, the
        recent history too)."""
        return await client.call("GET", "/approvals", all=include_resolved or None)

    async def approval(approval_id: StrictInt) -> dict[str, Any]:
        """Manager only: one approval with the diff it deploys."""
        return await client.call("GET", f"/approvals/{approval_id}")

    tools = [whoami, send, recv, ack, broadcast, ask, answer, cancel_question, questions, agents]
    if is_manager is not False:
        tools += [request_spawn, request_apply, approvals, approval]
    for tool in tools:
        server.add_tool(tool)
    return server


def serve(socket_path: str) -> None:
    """Run the MCP server on stdio until the client closes it."""
    me = whoami_sync(socket_path)
    server = build(socket_path, None if me is None else bool(me.get("is_manager")))
    server.run("stdio")
