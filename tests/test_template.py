"""The ``claude`` template: a real agent program on the process backend. Its turn loop runs
against a stand-in ``claude`` that behaves as ``claude -p`` does (tests/standins/claude-code);
the real Claude Code package (installed from npm by ``scripts/setup test``) checks that the
hive's bridge is a connected MCP server in the agent's sandbox."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from test_process import needs_bwrap

#: Longer than the suite's 120 s: Claude Code (or its stand-in) and the MCP bridge are a Python
#: or Node process per call.
pytestmark = pytest.mark.timeout(300)

STANDIN = Path(__file__).parent / "standins" / "claude-code"
NPM_BIN = Path(sys.prefix) / "npm" / "node_modules" / ".bin"


def as_manager(hive, method: str, path: str, body=None) -> httpx.Response:
    """A call on the manager's socket, as its MCP tools make it (bound just after its start)."""
    sock = hive.runtime_dir / "agents" / "manager" / "hive.sock"
    hive.wait_for(sock.exists, what="the manager's socket")
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://hive",
                      timeout=30) as http:
        return http.request(method, path, json=body)


def claude_hive(make_process_hive, claude_dir: Path):
    """A process hive whose agents find ``claude`` in ``claude_dir`` (bound into their sandbox,
    as `[process] ro_binds` lets an operator do for a program outside the system's dirs)."""
    return make_process_hive(f'ro_binds = ["{claude_dir}"]\n',
                             env={"PATH": f"{claude_dir}:{os.environ['PATH']}"})


def spawn_claude(hive) -> dict:
    offered = as_manager(hive, "GET", "/templates").json()
    assert "claude" in offered
    resp = as_manager(hive, "POST", "/requests/spawn",
                      {"name": "coder", "template": "claude", "description": "writes code"})
    assert resp.status_code == 201, resp.text
    approval = resp.json()
    assert approval["template"] == "claude"
    result = hive.post(f"/api/approvals/{approval['id']}/approve")
    return hive.wait_resolved(result["id"])


def calls(hive) -> list[list[str]]:
    path = hive.state_dir / "agents" / "coder" / "creds" / "claude-standin.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["argv"] for line in path.read_text().splitlines()]


def agent_log(hive) -> str:
    path = hive.state_dir / "agents" / "coder" / "state" / "agent.log"
    return path.read_text() if path.exists() else ""


def replies(hive) -> list[str]:
    return [m["body"] for m in hive.get("/api/agents/operator/inbox") if m["sender"] == "coder"]


@needs_bwrap
def test_the_claude_template_answers_messages_turn_by_turn(make_process_hive):
    hive = claude_hive(make_process_hive, STANDIN)
    refused = as_manager(hive, "POST", "/requests/spawn", {"name": "coder", "template": "gpt"})
    assert refused.status_code == 400 and "no template named 'gpt' (templates: claude)" in \
        refused.text
    assert spawn_claude(hive)["status"] == "approved"
    seeded = (hive.state_dir / "applied" / "coder" / "agent.toml").read_text()
    assert 'args = ["turn-loop", "--", "--permission-mode", "acceptEdits"]' in seeded
    # The loop registered the hive's bridge with Claude Code (for an interactive claude too).
    hive.wait_for(lambda: ["mcp", "add", "--scope", "user", "hive", "--"] in [
        c[:6] for c in calls(hive)], what="the bridge's registration")

    # No credentials: the turn fails, says why, and its message is kept for later.
    message = hive.post("/api/messages", {"to": "coder", "body": "hello"})
    hive.wait_for(lambda: "Not logged in · Please run /login" in agent_log(hive),
                  what="the failed turn")
    assert not next(m for m in hive.get("/api/agents/coder/inbox")
                    if m["id"] == message["id"])["acked_at"]

    # With a key the next start handles it: the reply comes through the hive's MCP tools.
    out = hive.cli("creds", "coder", "set", "ANTHROPIC_API_KEY", input="sk-ant-test\n")
    assert out.returncode == 0, out.stderr
    assert hive.cli("restart", "coder").returncode == 0
    hive.wait_for(lambda: "claude: got hello" in replies(hive), what="coder's reply")
    hive.wait_for(lambda: next(m for m in hive.get("/api/agents/coder/inbox")
                               if m["id"] == message["id"])["acked_at"], what="the ack")
    hive.post("/api/messages", {"to": "coder", "body": "and again"})
    hive.wait_for(lambda: "claude: got and again" in replies(hive), what="the second reply")

    turns = [c for c in calls(hive) if c[:1] == ["-p"]]
    last = turns[-1]
    flag = {name: last[last.index(name) + 1] for name in (
        "--output-format", "--append-system-prompt", "--mcp-config", "--allowedTools",
        "--permission-mode", "--resume")}
    assert flag["--output-format"] == "json" and flag["--allowedTools"] == "mcp__hive"
    assert "--strict-mcp-config" in last and flag["--permission-mode"] == "acceptEdits"
    assert "and again" in last[1] and "from operator" in last[1]
    prompt = flag["--append-system-prompt"]  # the hive's prompt
    notes = hive.state_dir.resolve() / "agents" / "coder" / "state"
    assert "You are coder" in prompt and str(notes) in prompt and "she/her" in prompt
    assert "The manager is manager" in prompt
    assert json.loads(flag["--mcp-config"])["mcpServers"]["hive"]["args"][-1] == "mcp"
    # The conversation goes on: the turn resumes the last one's session.
    session = (notes / ".claude-session").read_text().strip()
    assert flag["--resume"] == session


@needs_bwrap
def test_claude_code_reports_the_hives_bridge_connected(make_process_hive):
    claude = NPM_BIN / "claude"
    assert claude.exists(), f"{claude} is missing: scripts/setup test installs Claude Code"
    hive = claude_hive(make_process_hive, NPM_BIN)
    assert spawn_claude(hive)["status"] == "approved"
    hive.wait_for(lambda: "registered the hive's MCP bridge with Claude Code" in agent_log(hive),
                  timeout=120, what="the turn loop to register the bridge")
    # In coder's sandbox, as the operator would look: `hivekit exec coder -- claude mcp list`.
    out = hive.cli("exec", "coder", "--", "claude", "mcp", "list", timeout=180)
    assert out.returncode == 0, out.stderr + out.stdout
    line = next(line for line in out.stdout.splitlines() if line.startswith("hive: "))
    assert "mcp - ✔ Connected" in line, out.stdout
