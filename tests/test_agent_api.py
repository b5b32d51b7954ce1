"""The agent API end to end: the manager's and two agents' sockets of a real ``hivekit serve``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hivekit.testing import HiveProcess


class Agent:
    """One connection to an agent's socket (a new :class:`Agent` is a reconnect)."""

    def __init__(self, hive: HiveProcess, name: str) -> None:
        self.name = name
        self.path = socket_path(hive, name)
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.path)),
                                 base_url="http://hive", timeout=httpx.Timeout(10.0, read=None))
        self.cursor = 0

    def call(self, method: str, path: str, body: Any = None, expect: int | None = None,
             **params: Any) -> Any:
        resp = self.http.request(method, path, json=body, params=params)
        if expect is not None:
            assert resp.status_code == expect, resp.text
        elif resp.status_code >= 400:
            raise AssertionError(f"{method} {path}: {resp.status_code} {resp.text}")
        return resp.json()

    def send(self, to: str, body: str) -> dict:
        return self.call("POST", "/send", {"to": to, "body": body})

    def recv(self, wait: float = 0, **params: Any) -> list[dict]:
        """Messages after this connection's cursor (the cursor moves past them)."""
        got = self.call("GET", "/recv", after=self.cursor, wait=wait, **params)
        self.cursor = got["cursor"]
        return got["messages"]

    def events(self, kind: str) -> list[dict]:
        """Helper events of type ``kind`` among the unacknowledged messages (cursor untouched)."""
        got = self.call("GET", "/recv")["messages"]
        return [e for m in got if m["sender"] == "system"
                and (e := json.loads(m["body"]))["type"] == kind]

    def wait_event(self, hive: HiveProcess, kind: str, timeout: float = 20) -> dict:
        return hive.wait_for(lambda: (self.events(kind) or [None])[-1], timeout,
                             f"a {kind} event for {self.name}")

    def ack_all(self) -> None:
        ids = [m["id"] for m in self.call("GET", "/recv")["messages"]]
        self.call("POST", "/ack", {"ids": ids})


def socket_path(hive: HiveProcess, name: str) -> Path:
    return hive.runtime_dir / "agents" / name / "hive.sock"


def _with_two_agents(hive: HiveProcess) -> HiveProcess:
    hive.spawn("alpha")
    hive.spawn("beta")
    return hive


def _empty_inboxes(hive: HiveProcess) -> HiveProcess:
    for name in ("manager", "alpha", "beta"):
        Agent(hive, name).ack_all()  # wake-ups, helper events, earlier tests' messages
    return hive


@pytest.fixture(scope="module")
def shared_hive() -> Iterator[HiveProcess]:
    """One running hive (manager, alpha, beta) for the tests that neither stop nor destroy."""
    root = Path(tempfile.mkdtemp(prefix="hk", dir="/tmp"))
    proc = HiveProcess(root / "h")
    try:
        proc.start()
        proc.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                                  for a in proc.get("/api/state")["agents"]),
                      what="the manager to come up")
        yield _with_two_agents(proc)
    finally:
        try:
            proc.stop()
        except Exception:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def hive3(shared_hive: HiveProcess) -> HiveProcess:
    """The shared hive, every inbox emptied."""
    return _empty_inboxes(shared_hive)


@pytest.fixture
def own_hive3(hive: HiveProcess) -> HiveProcess:
    """A hive of its own (manager, alpha, beta), for tests that stop it or destroy agents."""
    return _empty_inboxes(_with_two_agents(hive))


def test_messages_round_trip_in_order(hive3: HiveProcess) -> None:
    alpha, beta = Agent(hive3, "alpha"), Agent(hive3, "beta")
    assert alpha.call("GET", "/whoami")["name"] == "alpha"
    assert alpha.call("GET", "/whoami")["is_manager"] is False
    sent = [alpha.send("beta", f"message {i}") for i in range(5)]
    got = beta.recv()
    assert [m["body"] for m in got] == [f"message {i}" for i in range(5)]
    assert [m["id"] for m in got] == [m["id"] for m in sent]
    assert {m["sender"] for m in got} == {"alpha"}  # the socket says who sends
    beta.send("alpha", "got them")
    assert [(m["sender"], m["body"]) for m in alpha.recv()] == [("beta", "got them")]
    # The operator sees it too (and its dashboard got a `message` event per message).
    inbox = hive3.get("/api/agents/beta/inbox")
    assert [m["body"] for m in inbox][-5:] == [f"message {i}" for i in range(5)]


def test_unacknowledged_message_comes_back_after_a_reconnect(hive3: HiveProcess) -> None:
    alpha, beta = Agent(hive3, "alpha"), Agent(hive3, "beta")
    alpha.send("beta", "important")
    (first,) = beta.recv()
    assert beta.recv() == []  # this connection was handed it already
    beta.http.close()
    again = Agent(hive3, "beta")  # a harness that crashed and reconnected
    (second,) = again.recv()
    assert (second["id"], second["body"]) == (first["id"], "important")
    assert again.call("POST", "/ack", {"ids": [first["id"]]}) == {"acked": 1}
    assert Agent(hive3, "beta").recv() == []  # acknowledged: retired for good


def test_long_poll_wakes_when_a_message_arrives(hive3: HiveProcess) -> None:
    alpha, beta = Agent(hive3, "alpha"), Agent(hive3, "beta")
    got: list[list[dict]] = []
    waiter = threading.Thread(target=lambda: got.append(beta.recv(wait=120)))
    waiter.start()
    alpha.send("beta", "ping")
    waiter.join(60)
    assert not waiter.is_alive(), "recv kept waiting after a message arrived"
    assert [m["body"] for m in got[0]] == ["ping"]


#: hive-c0re's broadcast hint (coordinator.rs), the default of [hive] broadcast_hint.
HINT = "\n\n⚠️ _hint: this was a broadcast and may not need any action from you_"


def test_broadcast_reaches_every_other_agent_and_the_operators_every_agent(
        hive3: HiveProcess) -> None:
    result = Agent(hive3, "alpha").call("POST", "/broadcast", {"body": "release at noon"})
    assert sorted(result["sent"]) == ["beta", "manager"]  # the manager too, never the sender
    assert result["failed"] == {}
    for name in ("manager", "beta"):
        (m,) = Agent(hive3, name).recv()
        assert (m["sender"], m["body"]) == ("alpha", "release at noon" + HINT)
    assert Agent(hive3, "alpha").recv() == []
    out = hive3.cli("broadcast", "maintenance at six")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("sent to 3 agent(s): ")
    for name in ("manager", "alpha", "beta"):
        got = [m for m in Agent(hive3, name).recv() if m["sender"] == "operator"]
        assert [m["body"] for m in got] == ["maintenance at six" + HINT]
    assert hive3.cli("broadcast", "").returncode == 1  # an empty body changes nothing


def test_peer_question_is_answered_and_the_asker_told(hive3: HiveProcess) -> None:
    alpha, beta = Agent(hive3, "alpha"), Agent(hive3, "beta")
    q = alpha.call("POST", "/ask", {"question": "tabs or spaces?", "to": "beta",
                                    "options": ["tabs", "spaces"]}, expect=201)
    asked = beta.wait_event(hive3, "question_asked")
    assert (asked["id"], asked["asker"], asked["options"]) == (q["id"], "alpha",
                                                              ["tabs", "spaces"])
    assert [x["id"] for x in beta.call("GET", "/questions")] == [q["id"]]
    # Peer questions are not the operator's (nor the dashboard's).
    assert hive3.get("/api/questions") == []
    # Only the target answers, and only with an option.
    err = Agent(hive3, "manager").call("POST", "/answer", {"id": q["id"], "answer": "tabs"},
                                       expect=403)
    assert "asked of 'beta'" in err["error"]
    err = beta.call("POST", "/answer", {"id": q["id"], "answer": "both"}, expect=400)
    assert "not one of the options: tabs, spaces" in err["error"]
    answered = beta.call("POST", "/answer", {"id": q["id"], "answer": "spaces"})
    assert (answered["status"], answered["answer"]) == ("answered", "spaces")
    event = alpha.wait_event(hive3, "question_answered")
    assert (event["id"], event["status"], event["answer"], event["answered_by"]) == (
        q["id"], "answered", "spaces", "beta")
    beta.call("POST", "/answer", {"id": q["id"], "answer": "tabs"}, expect=409)


def test_operator_question_on_the_cli_and_the_api(hive3: HiveProcess) -> None:
    alpha = Agent(hive3, "alpha")
    q = alpha.call("POST", "/ask", {"question": "which regions?", "options": ["eu", "us", "ap"],
                                    "multi": True}, expect=201)
    listed = hive3.get("/api/questions")
    assert [(x["id"], x["asker"], x["target"]) for x in listed] == [(q["id"], "alpha",
                                                                     "operator")]
    assert hive3.get("/api/state")["questions"][0]["id"] == q["id"]
    shown = hive3.cli("questions")
    assert shown.returncode == 0 and "which regions?" in shown.stdout
    assert json.loads(hive3.cli("questions", "--json").stdout)[0]["id"] == q["id"]
    bad = hive3.cli("answer", str(q["id"]), "eu, mars")
    assert bad.returncode == 1
    assert "'mars' is not one of the options: eu, us, ap" in bad.stderr
    assert "Traceback" not in bad.stderr
    done = hive3.cli("answer", str(q["id"]), "ap, EU")
    assert done.returncode == 0, done.stderr
    event = alpha.wait_event(hive3, "question_answered")
    assert (event["answer"], event["selected"], event["answered_by"]) == (
        "eu, ap", ["eu", "ap"], "operator")
    assert hive3.get("/api/questions") == []
    assert hive3.get("/api/questions", all="true")[0]["status"] == "answered"
    again = hive3.post  # answering twice is refused with the state it is in
    with pytest.raises(Exception, match="is answered, not pending"):
        again(f"/api/questions/{q['id']}/answer", {"answer": "us"})
    # The asker may cancel its own question; the dashboard's list drops it.
    q2 = alpha.call("POST", "/ask", {"question": "lunch?"}, expect=201)
    Agent(hive3, "beta").call("POST", "/cancel", {"id": q2["id"]}, expect=403)
    assert alpha.call("POST", "/cancel", {"id": q2["id"]})["status"] == "cancelled"
    assert hive3.get("/api/questions") == []


def test_question_with_a_deadline_expires(hive3: HiveProcess) -> None:
    alpha = Agent(hive3, "alpha")
    q = alpha.call("POST", "/ask", {"question": "quick?", "timeout": 1}, expect=201)
    event = alpha.wait_event(hive3, "question_answered")
    assert (event["id"], event["status"], event["answer"]) == (q["id"], "expired", None)
    assert hive3.get("/api/questions", all="true")[-1]["status"] == "expired"


def test_question_deadline_passed_while_the_daemon_was_down(own_hive3: HiveProcess) -> None:
    hive3 = own_hive3
    alpha = Agent(hive3, "alpha")
    q = alpha.call("POST", "/ask", {"question": "after the crash?", "to": "beta",
                                    "timeout": 3}, expect=201)
    hive3.kill()
    time.sleep(max(0.0, q["deadline"] - time.time()) + 0.5)
    restarted = time.time()
    hive3.start()
    event = Agent(hive3, "alpha").wait_event(hive3, "question_answered")
    assert (event["id"], event["status"]) == (q["id"], "expired")
    expired = hive3.get("/api/questions", all="true", target="beta")[-1]
    assert expired["resolved_at"] >= restarted  # expired by the new daemon, not before


def test_only_the_managers_socket_requests_spawns(hive3: HiveProcess) -> None:
    alpha, manager = Agent(hive3, "alpha"), Agent(hive3, "manager")
    err = alpha.call("POST", "/requests/spawn", {"name": "gamma"}, expect=403)
    assert "only the manager" in err["error"]
    alpha.call("GET", "/approvals", expect=403)
    alpha.call("POST", "/requests/apply", {"agent": "alpha", "commit": "HEAD"}, expect=403)
    assert hive3.get("/api/approvals") == []
    approval = manager.call("POST", "/requests/spawn",
                            {"name": "gamma", "description": "a third pair of hands"},
                            expect=201)
    pending = hive3.get("/api/approvals")
    assert [(a["id"], a["kind"], a["agent"], a["status"]) for a in pending] == [
        (approval["id"], "spawn", "gamma", "pending")]
    assert [a["id"] for a in manager.call("GET", "/approvals")] == [approval["id"]]
    assert manager.call("GET", f"/approvals/{approval['id']}")["approval"]["agent"] == "gamma"
    # An apply request from the manager's socket fetches the proposal like the admin API.
    sha = hive3.commit("alpha", {"agent.conf": "x = 2\n"})
    apply = manager.call("POST", "/requests/apply", {"agent": "alpha", "commit": sha},
                         expect=201)
    assert (apply["kind"], apply["sha"]) == ("apply", sha)


def test_bad_requests_are_refused_with_the_reason(hive3: HiveProcess) -> None:
    alpha = Agent(hive3, "alpha")
    resp = alpha.http.post("/send", content=b'{"to": "beta", ')
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]
    err = alpha.call("POST", "/send", {"to": "beta"}, expect=400)
    assert "body: missing: a string is required" in err["error"]
    err = alpha.call("POST", "/send", {"to": "beta", "body": "x", "from": "beta"}, expect=400)
    assert "from: unknown key" in err["error"]  # no sending as another agent
    err = alpha.call("POST", "/send", {"to": "ghost", "body": "boo"}, expect=404)
    assert "no agent named 'ghost'" in err["error"]
    resp = alpha.http.post("/send", content=b"x" * (300 * 1024))
    assert resp.status_code == 413 and "too large" in resp.json()["error"]
    err = alpha.call("GET", "/recv", expect=400, limit="lots")
    assert 'limit: expected an integer, got "lots"' in err["error"]
    err = alpha.call("POST", "/ack", {"ids": "all"}, expect=400)
    assert 'ids: expected a list of integers, got the string "all"' in err["error"]
    assert Agent(hive3, "beta").recv() == []  # nothing got through


def test_sockets_follow_the_agents(own_hive3: HiveProcess) -> None:
    hive3 = own_hive3
    for name in ("manager", "alpha", "beta"):
        mode = os.stat(socket_path(hive3, name)).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert stat.S_IMODE(os.stat(socket_path(hive3, name).parent).st_mode) & 0o700 == 0o700
    hive3.post("/api/agents/beta/destroy", {"purge": False})
    assert not socket_path(hive3, "beta").exists()
    # Re-created at start for every registered agent, replacing what a dead daemon left.
    hive3.kill()
    assert socket_path(hive3, "alpha").exists()  # stale: nobody listens
    hive3.start()
    assert Agent(hive3, "alpha").call("GET", "/whoami")["name"] == "alpha"
    assert not socket_path(hive3, "beta").exists()
    # A SIGTERM stops the daemon cleanly while a long-poll is waiting (it is answered at once:
    # see test_agent_sockets.py), and the sockets go with it.
    def poll() -> None:
        with contextlib.suppress(httpx.HTTPError):
            Agent(hive3, "alpha").recv(wait=300)

    threading.Thread(target=poll, daemon=True).start()
    assert hive3.stop() == 0
    assert not socket_path(hive3, "alpha").exists()
    assert not socket_path(hive3, "manager").exists()
