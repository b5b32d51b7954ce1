"""``hivekit mcp`` driven by the MCP SDK's own stdio client, against a real ``hivekit serve``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from hivekit.testing import HiveProcess

COMMON_TOOLS = {"whoami", "send", "recv", "ack", "broadcast", "ask", "answer", "cancel_question",
                "questions", "agents"}
MANAGER_TOOLS = {"request_spawn", "request_apply", "approvals", "approval"}


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def _session(hive: HiveProcess, agent: str, work: Any) -> Any:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "hivekit", "mcp", "--socket",
              str(hive.runtime_dir / "agents" / agent / "hive.sock")],
        env=dict(os.environ), cwd=str(hive.root))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await work(session)


def test_mcp_bridge_lists_the_tools_and_sends_a_message_that_arrives(hive: HiveProcess) -> None:
    hive.spawn("alpha")

    async def as_alpha(session: ClientSession) -> dict[str, Any]:
        tools = await session.list_tools()
        for tool in tools.tools:
            assert tool.description, f"tool {tool.name} has no description"
        return {
            "tools": {t.name for t in tools.tools},
            "whoami": _text(await session.call_tool("whoami", {})),
            "sent": await session.call_tool("send", {"to": "manager", "body": "hello via mcp"}),
            "ghost": await session.call_tool("send", {"to": "ghost", "body": "boo"}),
            "spawn": await session.call_tool("request_spawn", {"name": "gamma"}),
        }

    got = asyncio.run(_session(hive, "alpha", as_alpha))
    assert got["tools"] >= COMMON_TOOLS
    assert not got["tools"] & MANAGER_TOOLS  # an agent is not offered the manager's tools
    assert json.loads(got["whoami"])["name"] == "alpha"
    assert not got["sent"].isError and "sent message #" in _text(got["sent"])
    assert got["ghost"].isError and "no agent named 'ghost'" in _text(got["ghost"])
    assert got["spawn"].isError  # no such tool here
    arrived = [m for m in hive.get("/api/agents/manager/inbox") if m["sender"] == "alpha"]
    assert [m["body"] for m in arrived] == ["hello via mcp"]

    async def as_manager(session: ClientSession) -> dict[str, Any]:
        first = json.loads(_text(await session.call_tool("recv", {})))["messages"]
        again = json.loads(_text(await session.call_tool("recv", {})))["messages"]
        mine = [m["id"] for m in first if m["from"] == "alpha"]
        acked = _text(await session.call_tool("ack", {"ids": [m["id"] for m in first]}))
        spawn = json.loads(_text(await session.call_tool(
            "request_spawn", {"name": "gamma", "description": "more hands"})))
        return {"tools": {t.name for t in (await session.list_tools()).tools}, "first": first,
                "again": again, "mine": mine, "acked": acked, "spawn": spawn}

    got = asyncio.run(_session(hive, "manager", as_manager))
    assert got["tools"] >= MANAGER_TOOLS
    assert [m["body"] for m in got["first"] if m["from"] == "alpha"] == ["hello via mcp"]
    # Not acknowledged yet: offered again, marked so (a recv the client gave up on hides none).
    assert [m["id"] for m in got["again"]] == [m["id"] for m in got["first"]]
    assert all(m["again"] for m in got["again"]) and not any("again" in m for m in got["first"])
    assert f"acknowledged {len(got['first'])} message(s)" == got["acked"]
    assert (got["spawn"]["kind"], got["spawn"]["agent"], got["spawn"]["status"]) == (
        "spawn", "gamma", "pending")
    assert [a["agent"] for a in hive.get("/api/approvals")] == ["gamma"]


def test_a_recv_the_client_gave_up_on_hides_nothing(hive: HiveProcess) -> None:
    """The MCP client cancels one recv and times out on another after the socket answered them:
    the next recv still hands out the message."""
    from datetime import timedelta

    import anyio
    from mcp.shared.exceptions import McpError
    from mcp.types import CancelledNotification, CancelledNotificationParams, ClientNotification

    hive.spawn("alpha")

    async def as_alpha(session: ClientSession) -> list[Any]:
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
        seen.append(json.loads(_text(await session.call_tool("recv", {})))["messages"])
        # 2. Timed out: the answer comes after the client stopped waiting for it.
        await anyio.to_thread.run_sync(
            lambda: hive.post("/api/messages", {"to": "alpha", "body": "second"}))
        with contextlib.suppress(McpError):
            await session.call_tool("recv", {}, read_timeout_seconds=timedelta(microseconds=1))
        await session.call_tool("whoami", {})
        seen.append(json.loads(_text(await session.call_tool("recv", {})))["messages"])
        return seen

    after_cancel, after_timeout = asyncio.run(_session(hive, "alpha", as_alpha))
    assert [m["body"] for m in after_cancel] == ["first"]
    assert [m["body"] for m in after_timeout] == ["first", "second"]
    assert after_timeout[0]["again"]


def test_mcp_tools_refuse_arguments_of_the_wrong_type(hive: HiveProcess) -> None:
    # The bridge is a boundary too: "false" is no boolean, "123" no list of ids, 5 no name.
    async def as_manager(session: ClientSession) -> dict[str, Any]:
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
