"""``hivekit mcp`` driven by real MCP clients against a real ``hivekit serve``: the MCP SDK's own
stdio client (every tool's conventions, results and errors), and the MCP Inspector's CLI
(installed from npm by ``scripts/setup test``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from hivekit import __version__
from hivekit.testing import HiveProcess

COMMON_TOOLS = {"whoami", "send", "recv", "ack", "broadcast", "ask", "answer", "cancel_question",
                "questions", "agents"}
MANAGER_TOOLS = {"templates", "request_spawn", "request_apply", "approvals", "approval"}
#: The npm tools scripts/setup installs for the tests.
NPM_BIN = Path(sys.prefix) / "npm" / "node_modules" / ".bin"


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def bridge(hive: HiveProcess, agent: str) -> list[str]:
    return [sys.executable, "-m", "hivekit", "mcp", "--socket",
            str(hive.runtime_dir / "agents" / agent / "hive.sock")]


async def _session(hive: HiveProcess, agent: str, work: Any) -> Any:
    command, *args = bridge(hive, agent)
    params = StdioServerParameters(command=command, args=args, env=dict(os.environ),
                                   cwd=str(hive.root))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        return await work(session, init)


def test_every_tool_follows_mcp_conventions(hive: HiveProcess) -> None:
    async def look(session: ClientSession, init: Any) -> Any:
        return init, (await session.list_tools()).tools

    init, tools = asyncio.run(_session(hive, "manager", look))
    assert init.serverInfo.name == "hive" and init.serverInfo.version == __version__
    assert {t.name for t in tools} == COMMON_TOOLS | MANAGER_TOOLS
    for tool in tools:
        assert tool.title and tool.description, tool.name
        hints = tool.annotations
        assert hints is not None and hints.title == tool.title, tool.name
        for hint in ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"):
            assert isinstance(getattr(hints, hint), bool), (tool.name, hint)
        assert not (hints.readOnlyHint and hints.destructiveHint), tool.name
        for name, schema in tool.inputSchema.get("properties", {}).items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"
        assert tool.outputSchema is not None, f"{tool.name} returns no structured result"
    by_name = {t.name: t for t in tools}
    wait = by_name["recv"].inputSchema["properties"]["wait_seconds"]
    assert (wait["minimum"], wait["maximum"]) == (0, 300)  # the bound is in the schema
    assert by_name["agents"].annotations.readOnlyHint
    assert by_name["ack"].annotations.destructiveHint and by_name["ack"].annotations.idempotentHint


def test_the_bridge_sends_receives_and_explains_errors_to_the_agent(hive: HiveProcess) -> None:
    hive.spawn("alpha")

    async def as_alpha(session: ClientSession, _init: Any) -> dict[str, Any]:
        return {
            "tools": {t.name for t in (await session.list_tools()).tools},
            "whoami": await session.call_tool("whoami", {}),
            "sent": await session.call_tool("send", {"to": "manager", "body": "hello via mcp"}),
            "ghost": await session.call_tool("send", {"to": "ghost", "body": "boo"}),
            "too_long": await session.call_tool("recv", {"wait_seconds": 999}),
            "missing": await session.call_tool("send", {"to": "manager"}),
            "spawn": await session.call_tool("request_spawn", {"name": "gamma"}),
        }

    got = asyncio.run(_session(hive, "alpha", as_alpha))
    assert got["tools"] == COMMON_TOOLS  # an agent is not offered the manager's tools
    assert got["whoami"].structuredContent["name"] == "alpha"
    sent = got["sent"].structuredContent
    assert not got["sent"].isError and sent["to"] == "manager" and isinstance(sent["id"], int)
    assert got["ghost"].isError and "no agent named 'ghost'" in _text(got["ghost"])
    for bad, says in (("too_long", "wait_seconds: Input should be less than or equal to 300"),
                      ("missing", "body: Field required")):
        text = _text(got[bad])
        assert got[bad].isError and says in text, text
        assert "pydantic" not in text and "http" not in text, text  # no dump, no URL
    assert got["spawn"].isError  # no such tool here
    arrived = [m for m in hive.get("/api/agents/manager/inbox") if m["sender"] == "alpha"]
    assert [(m["id"], m["body"]) for m in arrived] == [(sent["id"], "hello via mcp")]

    async def as_manager(session: ClientSession, _init: Any) -> dict[str, Any]:
        spawn = await session.call_tool("request_spawn",
                                        {"name": "gamma", "description": "more hands"})
        hive.post(f"/api/approvals/{spawn.structuredContent['id']}/deny", {"note": "not now"})
        first = (await session.call_tool("recv", {"wait_seconds": 10})).structuredContent
        again = (await session.call_tool("recv", {})).structuredContent
        acked = await session.call_tool("ack", {"ids": [m["id"] for m in first["messages"]]})
        return {"spawn": spawn.structuredContent, "first": first["messages"],
                "again": again["messages"], "acked": acked.structuredContent,
                "unknown": await session.call_tool("approval", {"approval_id": 999}),
                "templates": (await session.call_tool("templates", {})).structuredContent}

    got = asyncio.run(_session(hive, "manager", as_manager))
    assert (got["spawn"]["kind"], got["spawn"]["agent"], got["spawn"]["status"]) == (
        "spawn", "gamma", "pending")
    assert [m["body"] for m in got["first"] if m["from"] == "alpha"] == ["hello via mcp"]
    events = [m["event"] for m in got["first"] if m["from"] == "system" and "event" in m]
    # A hive event is an object, not JSON inside a string.
    denied = next(e for e in events if e["type"] == "approval_resolved" and e["id"] == got[
        "spawn"]["id"])
    assert (denied["agent"], denied["status"], denied["note"]) == ("gamma", "denied", "not now")
    # Not acknowledged yet: offered again, marked so (a recv the client gave up on hides none).
    assert [m["id"] for m in got["again"]] == [m["id"] for m in got["first"]]
    assert all(m["again"] for m in got["again"]) and not any("again" in m for m in got["first"])
    assert got["acked"] == {"acked": len(got["first"])}
    unknown = _text(got["unknown"])
    assert got["unknown"].isError and "no approval #999" in unknown
    assert "hivekit " not in unknown and "`approvals` tool" in unknown  # the agent's way
    assert got["templates"] == {"templates": {}}


def inspector(hive: HiveProcess, agent: str, *args: str) -> Any:
    program = NPM_BIN / "mcp-inspector"
    assert program.exists(), f"{program} is missing: scripts/setup test installs it"
    # A generous connect timeout: the bridge is a Python process that may start slowly on a
    # loaded machine (the Inspector's default is 15 s).
    out = subprocess.run([str(program), "--cli", "--connect-timeout", "120000",
                          *bridge(hive, agent), *args], cwd=hive.root,
                         capture_output=True, text=True, timeout=180,
                         env={**os.environ, "HOME": str(hive.root)})
    assert out.returncode == 0, out.stderr + out.stdout
    return json.loads(out.stdout)


def test_the_mcp_inspector_lists_and_calls_the_tools(hive: HiveProcess) -> None:
    listed = inspector(hive, "manager", "--method", "tools/list")
    names = {t["name"] for t in listed["tools"]}
    assert names == COMMON_TOOLS | MANAGER_TOOLS
    sent = inspector(hive, "manager", "--method", "tools/call", "--tool-name", "send",
                     "--tool-arg", "to=operator", "--tool-arg", "body=hello from the inspector")
    assert sent["structuredContent"]["to"] == "operator" and not sent.get("isError")
    inbox = hive.get("/api/agents/operator/inbox")
    assert [(m["id"], m["body"]) for m in inbox] == [(sent["structuredContent"]["id"],
                                                      "hello from the inspector")]


def test_a_recv_the_client_gave_up_on_hides_nothing(hive: HiveProcess) -> None:
    """The MCP client cancels one recv and times out on another after the socket answered them:
    the next recv still hands out the message."""
    from datetime import timedelta

    import anyio
    from mcp.shared.exceptions import McpError
    from mcp.types import CancelledNotification, CancelledNotificationParams, ClientNotification

    hive.spawn("alpha")

    async def as_alpha(session: ClientSession, _init: Any) -> list[Any]:
        seen = []
        # 1. Cancelled: a long-polling recv, given up on while a message arrives.
        async with anyio.create_task_group() as tg:
            async def polling() -> None:
                # The server answers a cancelled request with an error (MCP's cancellation).
                with anyio.CancelScope() as scope, contextlib.suppress(McpError):
                    tasks["scope"] = scope
                    await session.call_tool("recv", {"wait_seconds": 30})

            tasks: dict[str, Any] = {}
            tg.start_soon(polling)
            await anyio.to_thread.run_sync(
                lambda: hive.post("/api/messages", {"to": "alpha", "body": "first"}))
            # As an MCP client gives up: it tells the server (notifications/cancelled, for
            # request 1: the recv; 0 was initialize) and stops waiting itself.
            await session.send_notification(ClientNotification(CancelledNotification(
                params=CancelledNotificationParams(requestId=1, reason="gave up"))))
            tasks["scope"].cancel()
        await session.call_tool("whoami", {})  # the cancelled call has been dealt with
        seen.append((await session.call_tool("recv", {})).structuredContent["messages"])
        # 2. Timed out: the answer comes after the client stopped waiting for it.
        await anyio.to_thread.run_sync(
            lambda: hive.post("/api/messages", {"to": "alpha", "body": "second"}))
        with contextlib.suppress(McpError):
            await session.call_tool("recv", {}, read_timeout_seconds=timedelta(microseconds=1))
        await session.call_tool("whoami", {})
        seen.append((await session.call_tool("recv", {})).structuredContent["messages"])
        return seen

    after_cancel, after_timeout = asyncio.run(_session(hive, "alpha", as_alpha))
    assert [m["body"] for m in after_cancel] == ["first"]
    assert [m["body"] for m in after_timeout] == ["first", "second"]
    assert after_timeout[0]["again"]


def test_mcp_tools_refuse_arguments_of_the_wrong_type(hive: HiveProcess) -> None:
    # The bridge is a boundary too: "false" is no boolean, "123" no list of ids, 5 no name.
    async def as_manager(session: ClientSession, _init: Any) -> dict[str, Any]:
        calls = {"multi": ("ask", {"question": "q", "options": ["a", "b"], "multi": "false"}),
                 "ids": ("ack", {"ids": "123"}),
                 "to": ("send", {"to": 5, "body": "x"}),
                 "limit": ("recv", {"limit": "20"}),
                 "timeout_seconds": ("ask", {"question": "q", "timeout_seconds": True})}
        return {field: await session.call_tool(tool, args)
                for field, (tool, args) in calls.items()}

    got = asyncio.run(_session(hive, "manager", as_manager))
    for field, result in got.items():
        assert result.isError and field in _text(result), (field, _text(result))
    assert hive.get("/api/questions", all=True, target="any") == []
