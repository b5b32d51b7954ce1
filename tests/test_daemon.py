"""The daemon as a process: start, the admin socket, refusal of a second one, clean stops."""

from __future__ import annotations

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
