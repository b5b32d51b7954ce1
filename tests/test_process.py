"""The process backend against a real ``hivekit serve``: agents are real processes, under real
bubblewrap where it runs (scripts/setup installs it for the tests)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Hive, free_ports, page, status, wait_page  # noqa: F401 - shared
from hivekit_plugins.process import sandbox

from hivekit.testing import HiveProcess

BWRAP_PROBLEM = sandbox.probe("bwrap")
needs_bwrap = pytest.mark.skipif(BWRAP_PROBLEM is not None,
                                 reason=f"bubblewrap cannot run here: {BWRAP_PROBLEM}")


def pidfile(hive: Hive, name: str) -> Path:
    return hive.runtime_dir / "process" / f"{name}.pid"


def outer_pid(hive: Hive, name: str) -> int | None:
    try:
        return int(pidfile(hive, name).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat_ = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            ppid = int(stat_[stat_.rfind(b")") + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def program_pid(hive: Hive, name: str) -> int:
    """The host pid of the agent's own program: the deepest process under what the hive
    started (under bubblewrap: bwrap → bwrap (pid 1 inside) → the program)."""
    pid = hive.wait_for(lambda: outer_pid(hive, name), what=f"{name}'s pid file")
    kids = _children()
    while kids.get(pid):
        pid = kids[pid][0]
    return pid


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return state[state.rfind(b")") + 2:state.rfind(b")") + 3] != b"Z"


def commit_toml(hive: Hive, name: str, text: str, message: str = "agent.toml") -> int:
    sha = hive.commit(name, {"agent.toml": text}, message)
    return hive.post("/api/requests/apply", {"agent": name, "commit": sha})["id"]


def shell_toml(script: str, **extra: str) -> str:
    lines = ['command = "sh"', f"args = [\"-c\", {json.dumps(script)}]"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


# --- spawning and the page -----------------------------------------------------------------


def test_spawned_agent_answers_on_its_port_with_its_identity(phive):
    phive.spawn("demo")
    info = wait_page(phive, phive.agent_port, "demo")
    assert info["port"] == phive.agent_port
    notes = phive.state_dir / "agents" / "demo" / "state"
    (notes / "notes.md").write_text("remember the milk\n")
    assert status(phive.agent_port)["notes"]["notes.md"] == "remember the milk\n"
    html = page(phive.agent_port, "/")
    assert "<h1>demo</h1>" in html and "remember the milk" in html
    assert "harness: demo serving" in (notes / "agent.log").read_text()
    agents = {a["name"]: a for a in phive.get("/api/state")["agents"]}
    assert agents["demo"]["status"] == "running"
    # The seed committed in its config is what runs.
    seeded = (phive.state_dir / "applied" / "demo" / "agent.toml").read_text()
    assert 'command = "hivekit"\nargs = ["harness"]' in seeded


def test_spawned_agent_replies_to_a_message_through_its_socket(phive):
    # The README's tour: request, approve, and the agent (the seeded reference harness, running
    # under the sandbox and talking through /run/hive/hive.sock) answers.
    out = phive.cli("request", "spawn", "demo", "--json")
    assert out.returncode == 0, out.stderr
    result = phive.cli("approve", str(json.loads(out.stdout)["id"]))
    assert result.returncode == 0, result.stderr
    wait_page(phive, phive.agent_port, "demo")
    assert phive.cli("send", "demo", "are you there?").returncode == 0
    reply = phive.wait_for(
        lambda: [m for m in phive.get("/api/agents/operator/inbox") if m["sender"] == "demo"],
        what="demo's reply")
    assert reply[0]["body"] == "re: demo got your message: are you there?"
    assert status(phive.agent_port)["handled"][0]["body"] == "are you there?"


def test_spawn_fails_when_the_port_is_taken_by_another_program(phive):
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", phive.agent_port))
    squatter.listen()
    try:
        approval = phive.post("/api/requests/spawn", {"name": "demo"})
        phive.post(f"/api/approvals/{approval['id']}/approve")
        result = phive.wait_resolved(approval["id"], timeout=40)
    finally:
        squatter.close()
    assert result["status"] == "failed"
    assert "before it listened on port" in result["note"]
    assert "Address already in use" in result["note"]
    assert "demo" not in [a["name"] for a in phive.get("/api/state")["agents"]]
    assert outer_pid(phive, "demo") is None


PROBE = """
import json, os, socket, subprocess, http.server
def writes(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return True
    except OSError:
        return False
notes = os.environ["HIVE_NOTES"]
report = {}
%s
with open(notes + "/report.json", "w") as f:
    json.dump(report, f)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["HIVE_PORT"])),
                                http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def run_probe(hive: Hive, name: str, body: str) -> dict:
    """Deploy a Python program to agent ``name`` that fills ``report`` and serves a page;
    returns the report it wrote (from inside its sandbox) into its notes."""
    toml = f'command = "python"\nargs = ["-c", {json.dumps(PROBE % body)}]\n'
    result = hive.post(f"/api/approvals/{commit_toml(hive, name, toml)}/approve")
    assert result["status"] == "approved", result["note"]
    notes = hive.state_dir / "agents" / name / "state"
    return json.loads((notes / "report.json").read_text())


@pytest.fixture
def operator_dir() -> Iterator[Path]:
    """A directory of the operator's, beside this checkout (whose packages the sandbox binds),
    holding a secret no agent may see."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=".hk-home-", dir=Path(__file__).resolve().parents[1]))
    (path / "secret.txt").write_text("the operator's\n")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@needs_bwrap
def test_the_sandbox_shows_the_system_read_only_and_hides_the_hive_and_the_operator(
        phive, operator_dir):
    phive.spawn("demo")
    wait_page(phive, phive.agent_port, "demo")
    state, run = phive.state_dir.resolve(), phive.runtime_dir.resolve()
    private = f"probe-{phive.root.parent.name}"
    checkout = Path(__file__).resolve().parents[1]
    report = run_probe(phive, "demo", f"""
report.update(
    hostname=socket.gethostname(),
    env={{k: v for k, v in os.environ.items() if k.startswith("HIVE_")}},
    home=os.environ["HOME"],
    cwd=os.getcwd(),
    etc=writes("/etc/hivekit-probe"),
    config=writes(os.environ["HIVE_CONFIG"] + "/probe"),
    shared=writes("/shared/from-demo"),
    tmp=writes("/tmp/{private}"),
    notes=writes(notes + "/probe-note"),
    creds=writes(os.environ["HIVE_CREDS"] + "/probe-cred"),
    sees_db=os.path.exists("{state}/hive.db"),
    sees_admin=os.path.exists("{run}/admin.sock"),
    sees_manager=os.path.exists("{state}/agents/manager"),
    socket_dir=os.path.isdir("/run/hive"),
    root=sorted(os.listdir("/root")) if os.path.isdir("/root") else [],
    home_dir=os.path.exists("/home"),
    operator=os.path.exists("{operator_dir}/secret.txt"),
    checkout=sorted(os.listdir("{checkout}")),
    shadow=os.path.exists("/etc/shadow"), passwd=os.path.exists("/etc/passwd"),
    usr=os.path.isdir("/usr/bin"), git=subprocess.run(["git", "--version"]).returncode == 0,
)""")
    notes = state / "agents" / "demo" / "state"
    assert report["hostname"] == "h-demo"
    assert report["env"] == {
        "HIVE_LABEL": "demo", "HIVE_PORT": str(phive.agent_port),
        "HIVE_SOCKET": "/run/hive/hive.sock", "HIVE_DASHBOARD_PORT": "7000",
        "HIVE_OPERATOR_PRONOUNS": "she/her", "HIVE_NOTES": str(notes),
        "HIVE_CREDS": str(state / "agents" / "demo" / "creds"), "HIVE_SHARED": "/shared",
        "HIVE_CONFIG": str(state / "applied" / "demo"),
    }
    assert report["home"] == report["env"]["HIVE_CREDS"]
    assert report["cwd"] == str(notes)
    # Writable: its notes, creds, /shared and its own /tmp. Read-only: the host, its config.
    assert (report["notes"], report["creds"], report["shared"], report["tmp"]) == (
        True, True, True, True)
    assert (report["etc"], report["config"]) == (False, False)
    assert (state / "shared" / "from-demo").exists()
    assert not Path("/tmp", private).exists()  # its /tmp is its own
    assert (notes / "probe-note").exists()
    # The hive's own files and the other agents are hidden; its socket dir is there.
    assert (report["sees_db"], report["sees_admin"], report["sees_manager"]) == (
        False, False, False)
    assert report["socket_dir"]
    # Only what an agent needs of the host: the system's programs, hivekit's own packages and
    # the interpreter (of /root, only the way to it when it lives there, as pyenv's does).
    interpreter = sorted({Path(c).relative_to("/root").parts[0] for c in sandbox.code_paths()
                          if c.startswith("/root/")})
    assert report["root"] == interpreter
    assert (report["home_dir"], report["operator"], report["shadow"]) == (False, False, False)
    # Of this checkout: hivekit's packages (and the venv, when it is in there), nothing else.
    assert report["checkout"] == sorted({Path(c).relative_to(checkout).parts[0]
                                         for c in sandbox.code_paths()
                                         if c.startswith(f"{checkout}/")})
    assert "hivekit" in report["checkout"] and "README.md" not in report["checkout"]
    assert report["passwd"] and report["usr"] and report["git"]


@needs_bwrap
def test_the_manager_commits_to_agents_configs_and_reads_what_was_deployed(phive):
    phive.spawn("demo")
    state = phive.state_dir.resolve()
    report = run_probe(phive, "manager", f"""
git = ["git", "-c", "user.name=manager", "-c", "user.email=manager@hive"]
proposed = os.environ["HIVE_AGENTS"] + "/demo/config"
def ok(*args):
    return subprocess.run([*git, "-C", proposed, *args], capture_output=True).returncode == 0
report.update(
    agents=os.environ["HIVE_AGENTS"], applied=os.environ["HIVE_APPLIED"],
    commit=ok("commit", "--allow-empty", "-m", "from the manager"),
    fetch=ok("fetch", "-q", "applied"),
    applied_writable=writes(os.environ["HIVE_APPLIED"] + "/demo/probe"),
    sees_db=os.path.exists("{state}/hive.db"),
)""")
    assert report["agents"] == str(state / "agents")
    assert report["applied"] == str(state / "applied")
    assert report["commit"] and report["fetch"]
    assert not report["applied_writable"] and not report["sees_db"]
    from hivekit.git import Repo

    log = Repo(state / "agents" / "demo" / "config")("log", "-1", "--format=%s")
    assert log.strip() == "from the manager"


# --- supervision --------------------------------------------------------------------------


def _listen_events(hive: Hive, lines: list[str]) -> threading.Thread:
    def listen() -> None:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(hive.socket)),
                          timeout=None) as client, client.stream(
                "GET", "http://hive/api/events") as resp:
            for line in resp.iter_lines():
                lines.append(line)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    hive.wait_for(lambda: any(line.startswith("event: hello") for line in lines),
                  what="the event stream")
    return thread


def test_a_killed_agent_is_restarted_and_the_bus_says_so(phive):
    phive.spawn("demo")
    wait_page(phive, phive.agent_port, "demo")
    victim = program_pid(phive, "demo")
    first = outer_pid(phive, "demo")
    events: list[str] = []
    _listen_events(phive, events)
    os.kill(victim, signal.SIGKILL)
    phive.wait_for(lambda: outer_pid(phive, "demo") not in (None, first),
                   what="the restarted agent's pid")
    wait_page(phive, phive.agent_port, "demo")
    assert not alive(victim)
    said = phive.wait_for(
        lambda: [e for e in events if "exited unexpectedly" in e and "restarting in" in e],
        what="the crash on the bus")
    assert '"agent":"demo"' in said[0]
    # The supervisor reported the crash through the status channel: the whole row, failing,
    # with the exit code and the last output lines; then running again.
    def rows(status: str) -> list[dict]:
        return [json.loads(e[6:])["agent"] for e in list(events)
                if e.startswith("data: ") and '"type":"agent_changed"' in e
                and '"name":"demo"' in e and f'"status":"{status}"' in e]

    failing = phive.wait_for(lambda: rows("failing"), what="the failing row on the bus")[0]
    assert failing["exit_code"] == 137 and "restarting in" in failing["detail"]
    assert any("harness: demo serving" in line for line in failing["output"])
    assert failing["port"] == phive.agent_port and failing["deployed_sha"]
    again = phive.wait_for(lambda: [r for r in rows("running") if r["detail"]],
                           what="the row running again on the bus")[0]
    assert again["detail"] == "running again after a crash (restart 1)"
    # The restarted agent's own output reaches the live log too.
    phive.wait_for(lambda: any("harness: demo serving" in e for e in events),
                   what="the agent's output on the bus")
    log = (phive.state_dir / "agents" / "demo" / "state" / "agent.log").read_text()
    assert "exited unexpectedly (exit code 137)" in log


def test_stop_and_start_and_destroy(phive):
    phive.spawn("demo")
    wait_page(phive, phive.agent_port, "demo")
    program = program_pid(phive, "demo")
    result = phive.cli("stop", "demo")
    assert result.returncode == 0, result.stderr
    assert not alive(program)
    assert status(phive.agent_port) is None
    agents = {a["name"]: a for a in phive.get("/api/state")["agents"]}
    assert agents["demo"]["status"] == "stopped"
    log = (phive.state_dir / "agents" / "demo" / "state" / "agent.log").read_text()
    assert "harness: demo stopped" in log  # it got SIGTERM and shut down cleanly
    result = phive.cli("start", "demo")
    assert result.returncode == 0, result.stderr
    wait_page(phive, phive.agent_port, "demo")
    program = program_pid(phive, "demo")
    phive.post("/api/agents/demo/destroy", {"purge": False})
    assert not alive(program)
    assert status(phive.agent_port) is None
    assert outer_pid(phive, "demo") is None


def test_an_agent_that_ignores_sigterm_is_killed_after_the_timeout(make_process_hive):
    hive = make_process_hive("stop_timeout = 1\n")
    hive.spawn("demo")
    toml = shell_toml("trap '' TERM; exec python -m http.server --bind 127.0.0.1 $HIVE_PORT")
    result = hive.post(f"/api/approvals/{commit_toml(hive, 'demo', toml)}/approve")
    assert result["status"] == "approved", result["note"]
    program = program_pid(hive, "demo")
    assert hive.cli("stop", "demo").returncode == 0
    assert not alive(program)
    log = (hive.state_dir / "agents" / "demo" / "state" / "agent.log").read_text()
    assert "did not stop within 1s: SIGKILL" in log


def test_daemon_restart_brings_running_agents_back_and_keeps_stopped_ones_stopped(
        make_process_hive):
    hive = make_process_hive()
    hive.spawn("demo")
    wait_page(hive, hive.agent_port, "demo")
    manager_program = program_pid(hive, "manager")
    demo_program = program_pid(hive, "demo")
    assert hive.stop() == 0
    # A clean stop stops the agents (SIGTERM, so they shut down cleanly)...
    assert not alive(manager_program) and not alive(demo_program)
    assert status(hive.agent_port) is None
    log = (hive.state_dir / "agents" / "demo" / "state" / "agent.log").read_text()
    assert "harness: demo stopped" in log
    # ... and the next start brings back every agent that was wanted running.
    hive.start()
    wait_page(hive, hive.manager_port, "manager")
    wait_page(hive, hive.agent_port, "demo")
    # An agent the operator stopped stays stopped across a restart.
    assert hive.cli("stop", "demo").returncode == 0
    hive.restart()
    wait_page(hive, hive.manager_port, "manager")
    agents = {a["name"]: a for a in hive.get("/api/state")["agents"]}
    assert agents["demo"]["status"] == "stopped"
    assert status(hive.agent_port) is None


def test_agents_of_a_killed_daemon_do_not_linger(make_process_hive):
    hive = make_process_hive()
    hive.spawn("demo")
    wait_page(hive, hive.agent_port, "demo")
    programs = [program_pid(hive, "manager"), program_pid(hive, "demo")]
    hive.kill()
    hive.wait_for(lambda: not any(alive(p) for p in programs),
                  what="the killed daemon's agents to die with it")
    hive.start()
    wait_page(hive, hive.agent_port, "demo")
    wait_page(hive, hive.manager_port, "manager")


# --- deploys --------------------------------------------------------------------------------


def test_an_approved_agent_toml_change_restarts_the_agent_with_the_new_command(phive):
    phive.spawn("demo")
    wait_page(phive, phive.agent_port, "demo")
    before = program_pid(phive, "demo")
    toml = shell_toml("exec python -m http.server --bind 127.0.0.1 $HIVE_PORT")
    approval = commit_toml(phive, "demo", toml)
    result = phive.cli("approve", str(approval))
    assert result.returncode == 0, result.stderr
    assert phive.approval(approval)["tag"] == f"deployed/{approval}"
    assert not alive(before)
    listing = page(phive.agent_port, "/")
    assert "Directory listing" in listing and "agent.log" in listing
    assert status(phive.agent_port) is None  # the harness is gone


def test_a_broken_agent_toml_fails_the_deploy_and_the_old_agent_keeps_running(phive):
    phive.spawn("demo")
    wait_page(phive, phive.agent_port, "demo")
    before = program_pid(phive, "demo")
    approval = commit_toml(phive, "demo", 'command = "python\n')
    result = phive.cli("approve", str(approval))
    assert result.returncode == 1
    assert "agent.toml: not valid TOML" in result.stderr
    failed = phive.approval(approval)
    assert failed["status"] == "failed" and failed["tag"] == f"failed/{approval}"
    assert "agent.toml: not valid TOML" in failed["note"]
    # Never stopped: the same process still answers.
    assert alive(before) and program_pid(phive, "demo") == before
    assert status(phive.agent_port)["name"] == "demo"
    applied = (phive.state_dir / "applied" / "demo" / "agent.toml").read_text()
    assert 'args = ["harness"]' in applied  # main went back


def test_unknown_keys_and_missing_commands_fail_the_deploy(phive):
    phive.spawn("demo")
    wait_page(phive, phive.agent_port, "demo")
    before = program_pid(phive, "demo")
    for toml, says in [('command = "python"\nrestart = "always"\n', "restart: unknown key"),
                       ('command = "no-such-program-x"\n',
                        "command 'no-such-program-x' was not found on the agent's PATH"),
                       ('command = "python"\n[env]\nHIVE_PORT = "1"\n',
                        "HIVE_PORT is set by hivekit")]:
        result = phive.post(f"/api/approvals/{commit_toml(phive, 'demo', toml)}/approve")
        assert result["status"] == "failed"
        assert says in result["note"]
    assert program_pid(phive, "demo") == before


def test_a_new_command_that_dies_fails_the_deploy_and_the_old_one_comes_back(phive):
    phive.spawn("demo")
    wait_page(phive, phive.agent_port, "demo")
    toml = shell_toml("echo 'cannot find my model'; exit 3")
    result = phive.post(f"/api/approvals/{commit_toml(phive, 'demo', toml)}/approve")
    assert result["status"] == "failed"
    assert "ended (exit code 3) before it listened" in result["note"]
    assert "cannot find my model" in result["note"]
    wait_page(phive, phive.agent_port, "demo")  # the harness runs again
    agents = {a["name"]: a for a in phive.get("/api/state")["agents"]}
    assert agents["demo"]["status"] == "running"


# --- limits and modes -----------------------------------------------------------------------


def _limits(pid: int) -> dict[str, str]:
    rows = Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    return {row[:26].strip(): row[26:47].strip() for row in rows}


def test_rlimits_apply_per_hive_and_per_agent(make_process_hive):
    # cgroup = "off": memory falls back to RLIMIT_DATA (per process), never RLIMIT_AS.
    hive = make_process_hive('cgroup = "off"\nmemory = "3G"\ncpu_seconds = 36000\n\n'
                             '[process.agents.demo]\nmemory = "1G"\nopen_files = 256\n')
    hive.spawn("demo")
    wait_page(hive, hive.agent_port, "demo")
    demo = _limits(program_pid(hive, "demo"))
    assert demo["Max data size"] == str(1 << 30)
    assert demo["Max address space"] == "unlimited"
    assert demo["Max open files"] == "256"
    assert demo["Max cpu time"] == "36000"
    manager = _limits(program_pid(hive, "manager"))
    assert manager["Max data size"] == str(3 << 30)
    assert manager["Max cpu time"] == "36000"


def test_plain_processes_when_the_sandbox_is_off(make_process_hive):
    hive = make_process_hive('sandbox = "none"\n')
    hive.spawn("demo")
    info = wait_page(hive, hive.agent_port, "demo")
    assert info["socket"] == str(hive.runtime_dir.resolve() / "agents" / "demo" / "hive.sock")
    assert info["pid"] == program_pid(hive, "demo")  # no pid namespace
    agents = {a["name"]: a for a in hive.get("/api/state")["agents"]}
    assert "no sandbox" in [b["label"] for b in agents["demo"]["badges"]]


#: What bubblewrap prints, and its exit code, where the kernel forbids the user namespaces it
#: needs (bubblewrap.c, on EPERM from clone): a stand-in, since it runs fine here.
BWRAP_REFUSAL = ("bwrap: No permissions to creating new namespace, likely because the kernel "
                 "does not allow non-privileged user namespaces. On e.g. debian this can be "
                 "enabled with 'sysctl kernel.unprivileged_userns_clone=1'.")


def _refusing_bwrap(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "bwrap"
    path.write_text(f"#!/bin/sh\necho {json.dumps(BWRAP_REFUSAL)} >&2\nexit 1\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_bwrap_that_cannot_run_falls_back_to_plain_processes_with_a_warning(
        make_process_hive, short_tmp):
    bwrap = _refusing_bwrap(short_tmp / "bin")
    hive = make_process_hive(f'bwrap = "{bwrap}"\n')
    assert "bubblewrap cannot run here" in hive.log()
    assert "No permissions to creating new namespace" in hive.log()
    hive.spawn("demo")
    info = wait_page(hive, hive.agent_port, "demo")
    assert info["socket"].startswith(str(hive.runtime_dir.resolve()))


def test_sandbox_bwrap_refuses_to_start_without_it(make_process_hive, short_tmp):
    bwrap = _refusing_bwrap(short_tmp / "bin")
    hive = make_process_hive(f'sandbox = "bwrap"\nbwrap = "{bwrap}"\n', start=False)
    result = hive.cli("serve", timeout=60)
    assert result.returncode == 1
    assert 'sandbox = "bwrap", but bubblewrap cannot run here' in result.stderr
    assert "No permissions to creating new namespace" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_process_settings_are_config_errors(short_tmp):
    cases = {
        'sandbox = "maybe"': "[process] sandbox: must be one of auto, bwrap, none",
        'memory = "lots"': "memory: 'lots' is not a size",
        "stop_timeout = 0": "[process] stop_timeout: must be positive",
        "surprise = 1": "surprise: unknown key",
        '[process.agents.Bad]\nmemory = "1G"': "invalid agent name 'Bad'",
    }
    for i, (table, says) in enumerate(cases.items()):
        config = f'[hive]\nbackend = "process"\n[process]\n{table}\n'
        hive = HiveProcess(short_tmp / f"c{i}", config)
        result = hive.cli("config", "check")
        assert result.returncode == 1, table
        assert says in result.stderr, (table, result.stderr)
        assert "Traceback" not in result.stderr


def test_the_embedded_default_backend_is_process(short_tmp):
    root = short_tmp / "d"
    root.mkdir()
    hive = HiveProcess(root)
    hive.config_path.unlink()  # no file at all: embedded defaults
    env = {k: v for k, v in hive.env.items() if k != "HIVEKIT_CONFIG"}
    result = subprocess.run([sys.executable, "-m", "hivekit", "config", "check"], cwd=root,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "backend process" in result.stdout


# --- the deploy's verify step: health after the build, rollback ------------------------------

#: A page answering 500 to everything, on the agent's port.
ERROR_PAGE = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(500)\n"
    "        self.end_headers()\n"
    "http.server.HTTPServer(('127.0.0.1', int(os.environ['HIVE_PORT'])), H).serve_forever()\n"
)


def test_an_agent_that_dies_after_its_build_is_rolled_back_to_the_previous_config(phive):
    """It comes up (no port to wait for), then exits 3: the verify step sees it end, the
    deploy fails with its last output, and the previous config (the harness) runs again."""
    phive.spawn("demo")
    wait_page(phive, phive.agent_port, "demo")
    toml = shell_toml("echo 'lost my model'; sleep 0.3; exit 3", wait_for_port="false")
    approval = commit_toml(phive, "demo", toml)
    result = phive.cli("approve", str(approval))
    assert result.returncode == 1
    a = phive.approval(approval)
    assert a["status"] == "failed"
    # Seen by the backend's check (the process ended) or the core's (the supervisor reported
    # the crash), whichever looked first.
    assert a["note"].startswith("deployed, then rolled back: ") and "exit code 3" in a["note"]
    assert "lost my model" in a["note"]
    assert "rolled back: demo was rebuilt from main" in a["note"]
    assert "deployed, then rolled back" in result.stderr
    wait_page(phive, phive.agent_port, "demo")  # the harness runs again
    applied = (phive.state_dir / "applied" / "demo" / "agent.toml").read_text()
    assert 'args = ["harness"]' in applied


def test_an_agent_healthy_within_the_deadline_deploys(phive):
    phive.spawn("demo")
    toml = ('command = "hivekit"\nargs = ["harness"]\n[health]\nhttp = "/api/status"\n'
            "settle = 0.5\ntimeout = 20\n")
    approval = commit_toml(phive, "demo", toml)
    result = phive.cli("approve", str(approval))
    assert result.returncode == 0, result.stderr
    assert "-- verify" in result.stderr
    assert phive.approval(approval)["tag"] == f"deployed/{approval}"


def test_an_http_probe_answering_500_fails_the_deploy(phive):
    phive.spawn("demo")
    wait_page(phive, phive.agent_port, "demo")
    toml = (f'command = "python"\nargs = ["-c", {json.dumps(ERROR_PAGE)}]\n'
            '[health]\nhttp = "/healthz"\ntimeout = 3\n')
    approval = commit_toml(phive, "demo", toml)
    result = phive.post(f"/api/approvals/{approval}/approve")
    assert result["status"] == "failed"
    assert "not healthy within 3s" in result["note"]
    assert f"GET /healthz on port {phive.agent_port} answered 500" in result["note"]
    wait_page(phive, phive.agent_port, "demo")  # the previous config runs again


def test_a_hanging_health_command_is_bounded_by_the_deadline(phive):
    phive.spawn("demo")
    toml = ('command = "hivekit"\nargs = ["harness"]\n[health]\n'
            'command = ["sleep", "600"]\ntimeout = 2\nsettle = 0.2\n')
    approval = commit_toml(phive, "demo", toml)
    started = time.monotonic()
    result = phive.post(f"/api/approvals/{approval}/approve")
    took = time.monotonic() - started
    assert result["status"] == "failed" and "not healthy within 2s" in result["note"]
    assert took < 40, took  # the deadline plus the rollback, not the command's 600 s
    wait_page(phive, phive.agent_port, "demo")


def test_bad_health_settings_fail_the_deploy(phive):
    phive.spawn("demo")
    for health, says in [('timeout = 0', "health.timeout must be a number of seconds above 0"),
                         ('http = "healthz"', "health.http must be a path"),
                         ('command = []', "health.command must be a non-empty list"),
                         ('timeout = "5"', "health.timeout")]:
        toml = f'command = "hivekit"\nargs = ["harness"]\n[health]\n{health}\n'
        result = phive.post(f"/api/approvals/{commit_toml(phive, 'demo', toml)}/approve")
        assert result["status"] == "failed" and says in result["note"], result["note"]
