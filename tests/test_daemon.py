"""The daemon as a process: start, the admin socket, refusal of a second one, clean stops."""

from __future__ import annotations

import grp
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import httpx


def test_admin_socket_is_0600_and_answers(hive):
    mode = stat.S_IMODE(os.stat(hive.socket).st_mode)
    assert mode == 0o600
    out = subprocess.run(["curl", "-sf", "--unix-socket", str(hive.socket),
                          "http://hive/api/state"], capture_output=True, text=True, check=True)
    state = json.loads(out.stdout)
    assert set(state) >= {"seq", "agents", "approvals", "questions", "transients",
                          "tombstones", "plugins"}
    assert [a["name"] for a in state["agents"]] == ["manager"]
    assert state["agents"][0]["port"] == 8000


def test_cli_json_commands_answer(hive):
    result = hive.cli("approvals", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    result = hive.cli("agents", "--json")
    assert json.loads(result.stdout)[0]["name"] == "manager"


def test_second_serve_on_the_same_state_dir_is_refused(hive):
    second = subprocess.run([sys.executable, "-m", "hivekit", "serve"], cwd=hive.root,
                            env=hive.env, capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert "another hivekit is already serving" in second.stderr
    assert str(hive.proc.pid) in second.stderr
    assert "Traceback" not in second.stderr
    # The first one is unharmed.
    assert hive.get("/api/state")["agents"]


def test_sigterm_stops_cleanly_with_an_event_stream_open(hive):
    events = []

    def listen() -> None:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(hive.socket)),
                          timeout=None) as client, client.stream(
                "GET", "http://hive/api/events") as resp:
            for line in resp.iter_lines():
                events.append(line)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    hive.wait_for(lambda: any(line.startswith("event: hello") for line in events),
                  what="the stream's hello")
    started = time.monotonic()
    code = hive.stop(signal.SIGTERM)
    elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 10, f"stop took {elapsed:.1f}s with a stream open"
    assert not hive.socket.exists()
    listener.join(5)
    assert not listener.is_alive()  # the stream ended with the daemon
    log = hive.log()
    assert "Traceback" not in log


def test_sigint_stops_cleanly(hive):
    assert hive.stop(signal.SIGINT) == 0
    assert not hive.socket.exists()


def test_restart_after_sigkill_is_not_blocked_by_a_stale_lock_or_socket(hive):
    hive.kill()
    assert hive.socket.exists()  # left behind by the dead daemon
    hive.start()
    assert hive.get("/api/state")["agents"]


def test_cli_without_a_daemon(short_tmp):
    (short_tmp / "hivekit.toml").write_text('[hive]\nbackend = "fake"\n')
    for args in (["agents"], ["approvals", "--json"], ["approve", "1"]):
        result = subprocess.run([sys.executable, "-m", "hivekit", *args], cwd=short_tmp,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        assert "no hive running at" in result.stderr
        assert "start one with `hivekit serve`" in result.stderr


def test_bad_usage_exits_2(short_tmp):
    result = subprocess.run([sys.executable, "-m", "hivekit", "approve"], cwd=short_tmp,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "Missing argument" in result.stderr


def test_socket_path_too_long_is_a_clear_error(short_tmp):
    deep = short_tmp / ("d" * 100)
    (short_tmp / "hivekit.toml").write_text(
        f'[hive]\nbackend = "fake"\nstate_dir = "s"\nruntime_dir = "{deep}"\n')
    result = subprocess.run([sys.executable, "-m", "hivekit", "serve"], cwd=short_tmp,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "too long" in result.stderr and "runtime_dir" in result.stderr


def test_help_lists_every_contract_command():
    result = subprocess.run([sys.executable, "-m", "hivekit", "--help"], capture_output=True,
                            text=True, timeout=30)
    for command in ("serve", "plugins", "config", "agents", "approvals", "show", "approve",
                    "deny", "request", "start", "stop", "restart", "rebuild", "destroy", "send",
                    "inbox"):
        assert f"  {command} " in result.stdout, command


def _other_group() -> grp.struct_group:
    """A group this process may give files to, other than its own primary group."""
    mine = set(os.getgroups()) if os.geteuid() != 0 else {g.gr_gid for g in grp.getgrall()}
    return next(g for g in grp.getgrall() if g.gr_gid in mine and g.gr_gid != os.getgid())


def test_an_operator_group_may_use_the_admin_socket_and_nothing_else(make_hive, short_tmp):
    group = _other_group()
    run = short_tmp / "run"  # outside the state dir, which stays the daemon's alone
    hive = make_hive(f'[hive]\nbackend = "fake"\nruntime_dir = "{run}"\n'
                     f'operator_group = "{group.gr_name}"\n')
    hive.wait_for(lambda: hive.get("/api/agents"), what="the manager")
    sock = os.stat(hive.socket)
    assert (stat.S_IMODE(sock.st_mode), sock.st_gid) == (0o660, group.gr_gid)
    rundir = os.stat(run)
    assert (stat.S_IMODE(rundir.st_mode), rundir.st_gid) == (0o750, group.gr_gid)
    agent_sock = run / "agents" / "manager" / "hive.sock"
    hive.wait_for(agent_sock.exists, what="the manager's socket")
    agent = os.stat(agent_sock)  # an agent's: still its own
    assert (stat.S_IMODE(agent.st_mode), agent.st_gid == group.gr_gid) == (0o600, False)
    if os.geteuid() != 0:
        return  # the rest runs a client as another user
    os.chmod(short_tmp, 0o711)
    # A member of the group who is nobody else: the admin API answers it...
    ask = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
           "s.sendall(b'GET /api/agents HTTP/1.0\\r\\nHost: hive\\r\\n\\r\\n'); "
           "print(s.recv(65536).decode().split()[1])")
    member = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                             f"--groups={group.gr_gid}", "/usr/bin/python3", "-c", ask,
                             str(hive.socket)], capture_output=True, text=True, timeout=30)
    assert (member.returncode, member.stdout.strip()) == (0, "200"), member.stderr
    # ...someone outside it is refused.
    other = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "/usr/bin/python3", "-c", ask, str(hive.socket)],
                           capture_output=True, text=True, timeout=30)
    assert other.returncode != 0 and "Permission denied" in other.stderr


def test_a_missing_operator_group_stops_the_start_saying_so(short_tmp):
    (short_tmp / "hivekit.toml").write_text(
        '[hive]\nbackend = "fake"\nstate_dir = "s"\noperator_group = "no-such-group"\n')
    result = subprocess.run([sys.executable, "-m", "hivekit", "serve"], cwd=short_tmp,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "[hive] operator_group 'no-such-group': there is no such group" in result.stderr
    assert not (short_tmp / "s" / "run" / "admin.sock").exists()
    bad = subprocess.run([sys.executable, "-m", "hivekit", "config", "check"], cwd=short_tmp,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 0  # a well-formed name: checked for existence only when serving
    (short_tmp / "hivekit.toml").write_text('[hive]\noperator_group = "Ops Team"\n')
    bad = subprocess.run([sys.executable, "-m", "hivekit", "config", "check"], cwd=short_tmp,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "operator_group: 'Ops Team' is not a group name" in bad.stderr
