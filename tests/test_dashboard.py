"""The dashboard plugin over HTTP, against a real ``hivekit serve``: the token, the cookie, CSRF,
ports in use, remote binding, the event stream on TCP. (The page itself: test_dashboard_browser.)
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator

import httpx
import pytest

from hivekit.testing import HiveProcess


def dashboard_url(hive: HiveProcess) -> str:
    info = hive.get("/api/state")["dashboard"]
    assert info["url"], info
    return info["url"]


def token_of(hive: HiveProcess) -> str:
    return (hive.state_dir / "dashboard-token").read_text().strip()


def logged_in(hive: HiveProcess) -> tuple[httpx.Client, str]:
    """A client holding the session cookie, and the CSRF token the server handed out."""
    client = httpx.Client(base_url=dashboard_url(hive), timeout=20)
    resp = client.get("/", params={"token": token_of(hive)})
    assert resp.status_code == 200
    return client, resp.headers["x-hivekit-csrf"]


def taken_port() -> socket.socket:
    """A listening socket on a free loopback port: that port is then "already in use"."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def test_token_file_is_private_and_kept_across_restarts(hive):
    path = hive.state_dir / "dashboard-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = token_of(hive)
    assert len(token) >= 32
    assert f"?token={token}" in hive.log()  # the ready URL, printed at start
    hive.restart()
    assert token_of(hive) == token


def test_every_route_refuses_a_request_without_the_token(hive):
    url = dashboard_url(hive)
    with httpx.Client(base_url=url) as anon:
        for path in ("/", "/static/app.js", "/api/state", "/api/events", "/no/such/page"):
            resp = anon.get(path)
            assert resp.status_code == 401, path
        assert "hivekit dashboard" in anon.get("/").text
        assert "access token" in anon.get("/api/state").json()["error"]
        assert anon.get("/", params={"token": "wrong"}).status_code == 401
        assert anon.get("/", params={"token": "é"}).status_code == 401
        port = httpx.URL(url).port
        odd = {"Authorization": "Bearer é".encode("latin-1"),
               "Cookie": f"hivekit_session_{port}=é".encode()}
        assert anon.get("/api/state", headers=odd).status_code == 401
        assert anon.post("/api/requests/spawn", json={"name": "coder"}).status_code == 401
    assert hive.get("/api/approvals") == []


def test_the_token_is_exchanged_for_a_strict_httponly_cookie(hive):
    client, _csrf = logged_in(hive)
    cookie = client.get("/", params={"token": token_of(hive)}).headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert token_of(hive) not in cookie  # the cookie holds a value derived from it
    resp = client.get("/api/state")
    assert resp.status_code == 200
    assert resp.json()["agents"][0]["name"] == "manager"
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")


def test_posts_need_the_csrf_token_and_this_origin(hive):
    client, csrf = logged_in(hive)
    refused = client.post("/api/requests/spawn", json={"name": "coder"})
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]
    wrong = client.post("/api/requests/spawn", json={"name": "coder"},
                        headers={"X-Hivekit-CSRF": "0" * 64})
    assert wrong.status_code == 403
    foreign = client.post("/api/requests/spawn", json={"name": "coder"},
                          headers={"X-Hivekit-CSRF": csrf, "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert hive.get("/api/approvals") == []
    ok = client.post("/api/requests/spawn", json={"name": "coder"},
                     headers={"X-Hivekit-CSRF": csrf, "Origin": dashboard_url(hive).rstrip("/")})
    assert ok.status_code == 201, ok.text
    assert [a["agent"] for a in hive.get("/api/approvals")] == ["coder"]


def test_a_script_may_use_the_token_as_a_bearer(hive):
    url = dashboard_url(hive)
    auth = {"Authorization": f"Bearer {token_of(hive)}"}
    resp = httpx.post(url + "api/requests/spawn", json={"name": "coder"}, headers=auth)
    assert resp.status_code == 201
    bad = httpx.post(url + "api/requests/spawn", json={"name": "other"},
                     headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


def test_cli_prints_the_ready_url(hive):
    result = hive.cli("dashboard")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url == f"{dashboard_url(hive)}?token={token_of(hive)}"
    assert httpx.get(url).status_code == 200


def test_port_in_use_fails_a_configured_dashboard_clearly(make_hive):
    with taken_port() as busy:
        port = busy.getsockname()[1]
        proc = make_hive(f'[hive]\nbackend = "fake"\n\n[dashboard]\nport = {port}\n', start=False)
        proc.start(wait=False)
        assert proc.proc.wait(30) == 1
    log = proc.log()
    assert f"127.0.0.1:{port}" in log and "already in use" in log
    assert "[dashboard] port" in log and '[hive] disable = ["dashboard"]' in log
    assert "Traceback" not in log


def test_port_in_use_leaves_an_unconfigured_hive_working(make_hive):
    # No [dashboard] table: the default port comes from [hive] dashboard_port.
    with taken_port() as busy:
        port = busy.getsockname()[1]
        proc = make_hive(f'[hive]\nbackend = "fake"\ndashboard_port = {port}\n')
        state = proc.get("/api/state")
    assert state["dashboard"]["url"] is None
    assert "already in use" in state["dashboard"]["error"]
    assert "runs without its dashboard" in proc.log()
    assert proc.post("/api/requests/spawn", {"name": "coder"})["status"] == "pending"
    result = proc.cli("dashboard")
    assert result.returncode == 1
    assert "not serving" in result.stderr and "already in use" in result.stderr


def test_a_non_loopback_address_needs_allow_remote(make_hive):
    proc = make_hive('[hive]\nbackend = "fake"\n\n[dashboard]\nhost = "0.0.0.0"\nport = 0\n',
                     start=False)
    result = proc.cli("config", "check")
    assert result.returncode == 1
    assert "[dashboard]" in result.stderr and "allow_remote = true" in result.stderr


def test_allow_remote_binds_and_says_so(make_hive):
    proc = make_hive('[hive]\nbackend = "fake"\n\n[dashboard]\nhost = "0.0.0.0"\nport = 0\n'
                     "allow_remote = true\n")
    url = dashboard_url(proc)
    assert "beyond this machine" in proc.log()
    assert httpx.get(url).status_code == 401  # the token guards it all the same
    assert httpx.get(url, params={"token": token_of(proc)}).status_code == 200


def _frames(lines: Iterator[str], until: str) -> list[tuple[str | None, str, dict]]:
    """SSE frames (id, event, data) up to and including the first of type ``until``."""
    frames, fields = [], {}
    for line in lines:
        if line == "":
            if "event" in fields:
                frames.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
                if fields["event"] == until:
                    return frames
            fields = {}
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return frames


def test_event_stream_on_tcp_honours_last_event_id(hive):
    client, csrf = logged_in(hive)
    seq = hive.get("/api/state")["seq"]
    client.post("/api/requests/spawn", json={"name": "coder"}, headers={"X-Hivekit-CSRF": csrf})
    with client.stream("GET", "/api/events", headers={"Last-Event-ID": str(seq)}) as resp:
        assert resp.status_code == 200
        frames = _frames(resp.iter_lines(), "approval_added")
    assert frames[0][1] == "hello" and frames[0][2]["boot"]
    assert frames[-1][0] == str(seq + 1)
    assert frames[-1][2]["approval"]["agent"] == "coder"
    # A seq from another daemon's life (larger than any yet) asks for a resync.
    with client.stream("GET", "/api/events", headers={"Last-Event-ID": "999999"}) as resp:
        frames = _frames(resp.iter_lines(), "hello")
    assert [f[1] for f in frames] == ["resync", "hello"]


def test_an_open_event_stream_never_holds_a_stop(hive):
    client, _ = logged_in(hive)
    with client.stream("GET", "/api/events") as resp:
        lines = resp.iter_lines()
        assert _frames(lines, "hello")
        assert hive.stop() == 0
        assert list(lines) == []  # the stream ended cleanly with the daemon


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2", "::1"])
def test_loopback_hosts_need_no_permission(host):
    from hivekit_plugins.dashboard import DashboardConfig

    assert DashboardConfig(host=host).host == host
    with pytest.raises(ValueError, match="allow_remote"):
        DashboardConfig(host="example.org")


def test_a_token_file_given_by_the_operator_is_used_and_never_written(make_hive, short_tmp):
    given = short_tmp / "credentials" / "dashboard-token"
    given.parent.mkdir()
    given.write_text("operator-chosen-token-0123456789abcdef\n")
    os.chmod(given, 0o400)
    hive = make_hive(f'[hive]\nbackend = "fake"\n\n[dashboard]\nport = 0\n'
                     f'token_file = "{given}"\n')
    url = dashboard_url(hive)
    assert httpx.get(url, params={"token": "operator-chosen-token-0123456789abcdef"},
                     timeout=20).status_code == 200
    assert httpx.get(url, params={"token": "something-else"}, timeout=20).status_code == 401
    assert not (hive.state_dir / "dashboard-token").exists()
    assert given.read_text() == "operator-chosen-token-0123456789abcdef\n"
    out = hive.cli("dashboard")
    assert out.returncode == 0 and out.stdout.strip().endswith(
        "?token=operator-chosen-token-0123456789abcdef"), out.stderr
    hive.stop()
    given.chmod(0o600)
    given.write_text("")
    hive.start(wait=False)
    assert hive.proc.wait(60) == 1
    assert f"[dashboard] token_file {given} holds no token" in hive.log()


def test_a_relative_token_file_is_refused_by_config_check(short_tmp):
    hive = HiveProcess(short_tmp / "h", '[hive]\nbackend = "fake"\n\n[dashboard]\n'
                                        'token_file = "token"\n')
    out = hive.cli("config", "check")
    assert out.returncode == 1 and "token_file: must be an absolute path" in out.stderr
