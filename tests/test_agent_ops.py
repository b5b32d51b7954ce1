"""Running real agents (issue 16) on the process backend: credentials, ``hivekit exec`` in the
agent's sandbox, ``hivekit logs``, and memory/CPU limits through cgroups (or the rlimits they
fall back to), against a real ``hivekit serve`` and real bubblewrap."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hivekit_plugins.process import cgroups
from test_process import needs_bwrap, program_pid, wait_page

from hivekit import HiveError
from hivekit.creds import check_key

#: Longer than the suite's 120 s: real agents under real bubblewrap; the module's daemon starts
#: within its first test.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def process_hive(make_process_hive):
    """``process_hive(process_toml)``: a process-backend hive (see test_process.py)."""
    return make_process_hive

SECRET = "sk-ant-test-0123456789-do-not-print"


def cli(hive, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return hive.cli(*args, input=input)


def ok(hive, *args: str, input: str | None = None) -> str:
    result = cli(hive, *args, input=input)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    assert SECRET not in result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def demo():
    """One process-backend hive for this module's checks of agent demo (the harness)."""
    from conftest import module_hive

    with module_hive(process="") as hive:
        hive.spawn("demo")
        wait_page(hive, hive.agent_port, "demo")
        yield hive


def creds_dir(hive) -> Path:
    return hive.state_dir / "agents" / "demo" / "creds"


def set_key(hive, key: str, value: str) -> str:
    return ok(hive, "creds", "demo", "set", key, input=value + "\n")


@needs_bwrap
def test_credentials_are_stored_never_shown_and_clear_the_badge(demo):
    hive = demo
    if not (creds_dir(hive) / "env" / "ANTHROPIC_API_KEY").exists():
        row = next(a for a in hive.get("/api/state")["agents"] if a["name"] == "demo")
        login = next(b for b in row["badges"] if b["label"] == "needs login")
        # The badge says what is missing and the command that fixes it.
        assert "hivekit creds demo set ANTHROPIC_API_KEY" in login["detail"]
        assert "hivekit exec demo -- claude login" in login["detail"]
    # set: the value from stdin, never echoed; the file 0600 in a 0700 dir.
    out = set_key(hive, "ANTHROPIC_API_KEY", SECRET)
    assert "ANTHROPIC_API_KEY set" in out and "hivekit restart demo" in out
    creds = creds_dir(hive)
    key = creds / "env" / "ANTHROPIC_API_KEY"
    assert key.read_text() == SECRET  # the newline a pipe adds is not part of it
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((creds / "env").stat().st_mode) == 0o700
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    from_file = hive.root / "token.txt"
    from_file.write_text("second-value\n")
    ok(hive, "creds", "demo", "set", "OTHER_TOKEN", "--from-file", str(from_file))
    listed = json.loads(ok(hive, "creds", "demo", "list", "--json"))
    assert {"ANTHROPIC_API_KEY", "OTHER_TOKEN"} <= set(listed["keys"])
    row = next(a for a in hive.get("/api/state")["agents"] if a["name"] == "demo")
    assert "needs login" not in [b["label"] for b in row["badges"]]
    # A bad key is refused before anything is read or written (every rule: test_creds_keys).
    before = sorted(os.listdir(creds / "env"))
    result = cli(hive, "creds", "demo", "set", "../x", input="v")
    assert result.returncode == 2 and "invalid credential key" in result.stderr
    with pytest.raises(HiveError, match="reserved"):
        hive.post("/api/agents/demo/creds/HIVE_LABEL", {"value": "v"})
    with pytest.raises(HiveError, match="no agent named 'ghost'"):
        hive.get("/api/agents/ghost/creds")
    assert sorted(os.listdir(creds / "env")) == before
    # rm
    out = ok(hive, "creds", "demo", "rm", "OTHER_TOKEN")
    assert "OTHER_TOKEN removed" in out and not (creds / "env" / "OTHER_TOKEN").exists()
    with pytest.raises(HiveError, match="demo has no credential 'OTHER_TOKEN'"):
        hive.client().request("DELETE", "/api/agents/demo/creds/OTHER_TOKEN")
    # Nothing printed or logged the value.
    assert SECRET not in hive.log()
    assert SECRET not in (hive.state_dir / "agents" / "demo" / "state" / "agent.log").read_text()
    assert SECRET not in json.dumps(hive.get("/api/state"))


@needs_bwrap
def test_exec_runs_in_the_agents_sandbox_with_its_creds(demo):
    hive = demo
    set_key(hive, "EXEC_TOKEN", "exec-secret")
    creds = creds_dir(hive)
    result = cli(hive, "exec", "demo", "--", "sh", "-c",
                 'echo "$(hostname) $HIVE_LABEL $HOME"; test "$EXEC_TOKEN" = exec-secret && '
                 'echo has-key; ls "$HIVE_CREDS/env"; test -e /root/.bashrc || echo no-root; '
                 'exit 7')
    assert result.returncode == 7, result.stderr  # its exit code is the command's
    lines = result.stdout.split()
    assert lines[:3] == ["h-demo", "demo", str(creds.resolve())]
    assert "has-key" in lines and "no-root" in lines and "EXEC_TOKEN" in lines
    assert "exec-secret" not in result.stdout
    # A login's files land in the creds dir (the agent's HOME) and stay there.
    ok(hive, "exec", "demo", "--", "sh", "-c", 'mkdir -p ~/.claude && echo "{}" > '
                                              '~/.claude/.credentials.json')
    assert (creds / ".claude" / ".credentials.json").exists()
    assert ".claude/.credentials.json" in json.loads(
        ok(hive, "creds", "demo", "list", "--json"))["files"]


@needs_bwrap
def test_the_agent_sees_its_keys_from_its_next_start_and_logs_follow_it(demo):
    hive = demo
    set_key(hive, "START_TOKEN", "at-start")
    follow = subprocess.Popen([sys.executable, "-m", "hivekit", "logs", "demo", "-f", "-n", "1"],
                              cwd=hive.root, env=hive.env, stdout=subprocess.PIPE)
    try:
        assert read_until(follow, lambda line: True)  # the one old line: it is following now
        ok(hive, "restart", "demo")
        seen = read_until(follow, lambda line: "harness: demo serving" in line)
        assert any("stopping pid" in line for line in seen)
        assert any("started pid" in line for line in seen)
    finally:
        follow.terminate()
        follow.wait(10)
    wait_page(hive, hive.agent_port, "demo")
    environ = Path(f"/proc/{program_pid(hive, 'demo')}/environ").read_text()  # from the host
    env = dict(e.split("=", 1) for e in environ.split("\0") if "=" in e)
    assert env["START_TOKEN"] == "at-start" and env["HIVE_LABEL"] == "demo"
    # logs: the agent's own output, the last N lines.
    out = ok(hive, "logs", "demo", "-n", "5")
    assert len(out.splitlines()) <= 5
    got = json.loads(ok(hive, "logs", "demo", "--json"))
    assert got["agent"] == "demo" and any("started pid" in line for line in got["lines"])
    assert any("harness: demo serving" in line for line in got["lines"])


def read_until(proc: subprocess.Popen, done, timeout: float = 30.0) -> list[str]:
    """Lines from ``proc``'s stdout until one satisfies ``done`` (or the timeout passes).
    Reads the pipe unbuffered: a buffered reader would hold lines that select cannot see."""
    import selectors
    import time

    fd = proc.stdout.fileno()
    pending = getattr(proc, "_pending", b"")
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                seen.append(raw.decode())
                if done(seen[-1]):
                    proc._pending = pending
                    return seen
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
    raise AssertionError(f"no such line within {timeout}s; got {seen}")


@needs_bwrap
@pytest.mark.parametrize("mode", ["auto", "off"])
def test_memory_limits_let_runtimes_reserve_and_still_cap_the_agent(make_process_hive, mode):
    # The README's `memory = "2G"` once broke node: RLIMIT_AS counted the address space V8
    # reserves for WebAssembly. A cgroup counts memory used; its fallback, RLIMIT_DATA, only
    # writable memory.
    hive = make_process_hive(f'cgroup = "{mode}"\nmemory = "2G"\ncpus = 1.5\n\n'
                             '[process.agents.demo]\nmemory = "256M"\n')
    hive.spawn("demo")
    wasm = ok(hive, "exec", "manager", "--", "node", "-e",
              "new WebAssembly.Memory({initial: 1}); console.log('wasm ok')")
    assert "wasm ok" in wasm
    fits = ok(hive, "exec", "demo", "--", "python", "-c", "b = b'x' * (32 << 20); print(len(b))")
    assert fits.strip() == str(32 << 20)
    too_big = cli(hive, "exec", "demo", "--", "python", "-c", "b = b'x' * (600 << 20)")
    assert too_big.returncode != 0  # killed by the cgroup, or a MemoryError under RLIMIT_DATA
    tree, why = cgroups.probe(hive.state_dir)
    if mode == "auto" and tree is not None and tree.enforces("memory"):
        assert "agents' memory and CPU limits use cgroup" in hive.log()
        memory_dir = tree.parents["memory"] / f"{tree.prefix}-demo"
        limit = "memory.max" if tree.kind == "v2" else "memory.limit_in_bytes"
        assert int((memory_dir / limit).read_text()) == 256 << 20
        # The agent's own processes are in it, from the shim on.
        procs = (memory_dir / "cgroup.procs").read_text().split()
        assert str(program_pid(hive, "demo")) in procs
    else:
        # Said at start, naming what is not enforced.
        assert "memory is enforced only per process, as RLIMIT_DATA" in hive.log(), why
        assert "cpus is not enforced at all" in hive.log()
        limits = Path(f"/proc/{program_pid(hive, 'demo')}/limits").read_text()
        assert f"Max data size             {256 << 20}" in limits


@pytest.mark.parametrize(("key", "says"), [
    ("../x", "invalid credential key"), ("a/b", "invalid credential key"),
    ("", "invalid credential key"), ("1ABC", "invalid credential key"),
    ("A" * 129, "invalid credential key"), ("KEY\n", "invalid credential key"),
    ("HIVE_LABEL", "reserved"), ("LD_PRELOAD", "reserved"), ("PATH", "reserved"),
    ("HOME", "reserved"),
])
def test_creds_keys(key, says):
    with pytest.raises(HiveError, match=says):
        check_key(key)
    assert check_key("ANTHROPIC_API_KEY") == "ANTHROPIC_API_KEY"
