"""The reference harness against a real hive: it answers messages, acks them, serves its page."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_harness_replies_acks_and_serves_its_page(hive):
    hive.spawn("coder")
    hive.spawn("peer")
    port = free_port()
    sock = hive.runtime_dir / "agents" / "coder" / "hive.sock"
    notes = hive.state_dir / "agents" / "coder" / "state"
    (notes / "plan.md").write_text("ship it\n")
    proc = subprocess.Popen([sys.executable, "-m", "hivekit", "harness", "--socket", str(sock),
                             "--port", str(port), "--notes", str(notes)],
                            env=hive.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        hive.cli("send", "coder", "hello <there>")
        replies = hive.wait_for(
            lambda: [m for m in hive.get("/api/agents/operator/inbox") if m["sender"] == "coder"],
            what="the harness's reply to the operator")
        assert replies[0]["body"] == "re: coder got your message: hello <there>"
        # The message was acknowledged once handled.
        inbox = hive.wait_for(lambda: [m for m in hive.get("/api/agents/coder/inbox")
                                       if m["sender"] == "operator" and m["acked_at"]],
                              what="the ack")
        assert inbox
        # A peer's message gets a reply too; the peer's own harness would not echo it back.
        peer = httpx.Client(transport=httpx.HTTPTransport(
            uds=str(hive.runtime_dir / "agents" / "peer" / "hive.sock")), base_url="http://hive")
        peer.post("/send", json={"to": "coder", "body": "ping"}).raise_for_status()
        got = hive.wait_for(lambda: [m for m in hive.get("/api/agents/peer/inbox")
                                     if m["sender"] == "coder"], what="the reply to the peer")
        assert got[0]["body"].startswith("re: ")
        page = httpx.get(f"http://127.0.0.1:{port}/").text
        assert "<h1>coder</h1>" in page and "hello &lt;there&gt;" in page and "plan.md" in page
        status = httpx.get(f"http://127.0.0.1:{port}/api/status").json()
        assert status["name"] == "coder" and status["notes"] == {"plan.md": "ship it\n"}
        assert [m["body"] for m in status["handled"]][:2] == ["hello <there>", "ping"]
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


def test_operator_inbox_and_reserved_names(hive):
    for name in ("operator", "system"):
        result = hive.cli("request", "spawn", name)
        assert result.returncode == 1 and "reserved" in result.stderr
    assert hive.get("/api/agents/operator/inbox") == []
