"""The CLI for running real agents (issue 16), on the fake backend: ``--json`` on every command
that prints data, completion, the purge confirmation, the operator's inbox, what ``request
apply`` records, and the core's ``exec``/``logs``/live-log routes. One daemon for most checks."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import click
import pytest
from test_cli_boundary import _group

#: Longer than the suite's 120 s: the module's shared daemon starts within its first test; every
#: CLI call is a process.
pytestmark = pytest.mark.timeout(240)

#: Commands that print no data (so take no --json), and why.
NO_DATA = {
    "serve": "runs the daemon",
    "mcp": "speaks MCP on stdio",
    "harness": "runs the reference agent",
    "turn-loop": "runs the Claude Code agent",
    "exec": "becomes the command it runs",
    "config": "a group",
    "request": "a group",
    "creds": "a group",
    "meta": "a group",
}


def commands() -> list[tuple[str, click.Command]]:
    """Every command of the CLI with every bundled plugin's commands, by its full name."""
    group = _group()  # the one group the CLI boundary suite walks: meta_flake's and forge's too
    found = []

    def walk(prefix: str, cmd: click.Command) -> None:
        found.append((prefix, cmd))
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(f"{prefix} {name}".strip(), sub)

    for name, cmd in group.commands.items():
        walk(name, cmd)
    return found


@pytest.mark.parametrize(("name", "command"), commands(), ids=lambda v: v if isinstance(
    v, str) else "")
def test_every_command_that_prints_data_takes_json(name, command):
    options = {opt for p in command.params for opt in getattr(p, "opts", [])}
    if name.split()[-1] in NO_DATA or name in NO_DATA:
        return
    assert "--json" in options, f"`hivekit {name}` prints data but has no --json"


def test_config_check_json(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[hive]\nbackend = "fake"\nstate_dir = "s"\n')
    out = subprocess.run([sys.executable, "-m", "hivekit", "config", "check", str(good),
                          "--json"], capture_output=True, text=True)
    got = json.loads(out.stdout)
    assert out.returncode == 0 and got["ok"] and got["backend"] == "fake"
    assert "dashboard" in got["plugins"] and got["problems"] == []
    bad = tmp_path / "bad.toml"
    bad.write_text('[hive]\nbackend = "fake"\nmanger = "x"\n')
    out = subprocess.run([sys.executable, "-m", "hivekit", "config", "check", str(bad),
                          "--json"], capture_output=True, text=True)
    got = json.loads(out.stdout)
    assert out.returncode == 1 and not got["ok"]
    assert any("manger: unknown key" in p for p in got["problems"])


def complete(hive, line: str) -> list[str]:
    """What bash completion offers for ``line`` (as ``eval "$(_HIVEKIT_COMPLETE=bash_source
    hivekit)"`` would ask), as values."""
    words = line.split(" ")
    env = {**hive.env, "_HIVEKIT_COMPLETE": "bash_complete", "COMP_WORDS": line,
           "COMP_CWORD": str(len(words) - 1)}
    out = subprocess.run([sys.executable, "-m", "hivekit"], cwd=hive.root, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [row.split(",", 1)[1] for row in out.stdout.splitlines() if "," in row]


@pytest.fixture(scope="module")
def shared():
    """One fake-backend hive for this module's checks, with agents coder and tester."""
    from conftest import module_hive

    with module_hive() as hive:
        hive.spawn("coder")
        hive.spawn("tester")
        yield hive


def test_completion_offers_what_the_running_hive_knows(shared):
    hive = shared
    source = subprocess.run([sys.executable, "-m", "hivekit"], cwd=hive.root,
                            env={**hive.env, "_HIVEKIT_COMPLETE": "bash_source"},
                            capture_output=True, text=True).stdout
    assert "_HIVEKIT_COMPLETE=bash_complete" in source and "complete " in source
    assert complete(hive, "hivekit restart ") == ["coder", "manager", "tester"]
    assert complete(hive, "hivekit logs co") == ["coder"]
    assert complete(hive, "hivekit inbox o") == ["operator"]
    pending = hive.post("/api/requests/spawn", {"name": "helper"})
    try:
        assert complete(hive, "hivekit approve ") == [str(pending["id"])]
    finally:
        hive.post(f"/api/approvals/{pending['id']}/deny", {"note": "only for completion"})
    assert "restart" in complete(hive, "hivekit res")  # commands, by click itself


def test_request_apply_records_the_sha_beside_what_was_typed(shared):
    hive = shared
    sha = hive.commit("coder", {"agent.conf": "x = 1\n"})
    out = hive.cli("request", "apply", "coder", "HEAD", "--json")
    applied = json.loads(out.stdout)
    assert (applied["commit"], applied["sha"], applied["ref"]) == (sha, sha, "HEAD")
    assert f"commit: {sha} (requested as HEAD)" in hive.cli("show", str(applied["id"])).stdout
    assert hive.cli("approve", str(applied["id"])).returncode == 0
    events = [json.loads(m["body"]) for m in hive.get("/api/agents/manager/inbox", limit=200)
              if m["sender"] == "system"]
    resolved = next(e for e in events if e["type"] == "approval_resolved"
                    and e["id"] == applied["id"])
    assert (resolved["commit"], resolved["ref"]) == (sha, "HEAD")  # never HEAD as "the commit"
    # A template no plugin offers is refused, naming those offered.
    out = hive.cli("request", "spawn", "newbie", "--template", "claude")
    assert out.returncode == 1 and "no template named 'claude' (templates: none)" in out.stderr
    assert json.loads(hive.cli("templates", "--json").stdout) == {}


def test_the_operators_inbox_is_marked_read_from_the_cli(shared):
    hive = shared
    for body in ("done with #12", "need a review"):
        hive.post("/api/messages", {"to": "coder", "body": "ping"})  # traffic to others
        agent_send(hive, "coder", "operator", body)
    listed = hive.cli("inbox", "operator").stdout
    assert "* #" in listed and "hivekit ack" in listed
    first = next(m for m in hive.get("/api/agents/operator/inbox") if not m["acked_at"])
    assert json.loads(hive.cli("ack", str(first["id"]), "--json").stdout) == {"acked": 1}
    assert hive.cli("ack", str(first["id"])).stdout.strip() == "marked 0 message(s) read"
    assert "message(s) read" in hive.cli("ack", "--all").stdout
    assert all(m["acked_at"] for m in hive.get("/api/agents/operator/inbox"))
    assert hive.cli("ack").returncode == 2
    with pytest.raises(Exception, match="only the operator's inbox"):
        hive.post("/api/agents/coder/inbox/ack", {"all": True})


def test_exec_and_logs_without_a_backend_of_containers(shared):
    hive = shared
    # exec on the fake backend: the command runs with the agent's identity, its exit code ours.
    out = hive.cli("exec", "coder", "--", "sh", "-c", 'echo "$HIVE_LABEL $PWD"; exit 3')
    notes = hive.state_dir / "agents" / "coder" / "state"
    assert out.returncode == 3 and out.stdout.split() == ["coder", str(notes.resolve())]
    assert hive.cli("exec", "ghost", "--", "true").returncode == 1
    # logs without a backend hook: the live log's lines of the agent, kept by the core.
    out = hive.cli("logs", "coder", "-n", "50")
    assert out.returncode == 0 and "fake: built coder at" in out.stdout
    history = hive.get("/api/logs", agent="coder")
    assert history and all(e["seq"] > 0 and e["at"] > 0 for e in history)
    types = {e["event"]["type"] for e in history}
    assert {"log", "approval_changed"} <= types  # its spawn: the build, the outcome
    assert [e["seq"] for e in history] == sorted(e["seq"] for e in history)


def agent_send(hive, sender: str, to: str, body: str) -> None:
    import httpx

    path = hive.runtime_dir / "agents" / sender / "hive.sock"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://hive",
                      timeout=10) as agent_api:
        assert agent_api.post("/send", json={"to": to, "body": body}).status_code == 201


def on_a_terminal(hive, args: list[str], answer: str) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal, typing ``answer`` at its prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI, with the pty as its terminal
        os.chdir(hive.root)
        os.execve(sys.executable, [sys.executable, "-m", "hivekit", *args], hive.env)
    seen = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child ended
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(fd, answer.encode() + b"\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_purge_asks_on_a_terminal(hive):
    hive.spawn("coder")
    root = hive.state_dir / "agents" / "coder"
    code, text = on_a_terminal(hive, ["destroy", "coder", "--purge"], "n")
    assert "Purge coder?" in text and "no undo" in text
    assert code == 1 and "not purged" in text and root.is_dir()
    assert "coder" in [a["name"] for a in hive.get("/api/state")["agents"]]
    code, text = on_a_terminal(hive, ["destroy", "coder", "--purge"], "y")
    assert code == 0 and "destroyed and purged" in text
    assert not root.exists()


def test_a_plugins_template_seeds_a_new_agent(make_hive):
    hive = make_hive('[hive]\nbackend = "fake"\nenable = ["example"]\n')
    offered = json.loads(hive.cli("templates", "--json").stdout)
    assert offered == {"greeter": "an agent that greets (the example plugin's template)"}
    out = hive.cli("request", "spawn", "coder", "--template", "greeter", "--json")
    assert out.returncode == 0, out.stderr
    approval = json.loads(out.stdout)
    assert approval["template"] == "greeter"
    assert "template: greeter" in hive.cli("show", str(approval["id"])).stdout
    assert hive.cli("approve", str(approval["id"])).returncode == 0
    config = hive.state_dir / "agents" / "coder" / "config"
    assert (config / "greeting.txt").read_text() == "hello from coder\n"
    assert (config / "agent.conf").exists()  # the backend's own seed too
    plain = json.loads(hive.cli("request", "spawn", "tester", "--json").stdout)
    assert hive.cli("approve", str(plain["id"])).returncode == 0
    assert not (hive.state_dir / "agents" / "tester" / "config" / "greeting.txt").exists()
    # A tombstone keeps its config: a template for it is refused.
    hive.post("/api/agents/tester/destroy", {"purge": False})
    refused = hive.cli("request", "spawn", "tester", "--template", "greeter")
    assert refused.returncode == 1 and "is a tombstone" in refused.stderr
