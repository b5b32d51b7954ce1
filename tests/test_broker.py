"""The broker and questions in-process: a real store (SQLite) and hive, no daemon."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hivekit import broker, config, plugins, questions
from hivekit.errors import BadRequest, Conflict, Forbidden, NotFound
from hivekit.hive import OPERATOR, SYSTEM, Hive


@pytest.fixture
def local(short_tmp: Path) -> Iterator[Hive]:
    """An in-process hive on the fake backend with agents manager, alpha and beta registered."""
    path = short_tmp / "hivekit.toml"
    path.write_text('[hive]\nbackend = "fake"\nstate_dir = "state"\nruntime_dir = "run"\n')
    cfg = config.read(path)
    cfg.state_dir.mkdir()
    hive = Hive(cfg, plugins.load(cfg))
    hive.ensure_dirs()
    for name in ("manager", "alpha", "beta"):
        hive.store.add_agent(name)
    yield hive
    hive.stopping.set()
    hive.doorbell.close()


def bodies(delivery: broker.Delivery) -> list[str]:
    return [m.body for m in delivery.messages]


def helper_events(hive: Hive, agent: str) -> list[dict]:
    return [json.loads(m.body) for m in hive.store.inbox(agent) if m.sender == SYSTEM]


# --- messages ---------------------------------------------------------------------------------


def test_receive_hands_out_in_order_once_per_cursor_until_acked(local: Hive) -> None:
    for i in range(3):
        broker.send(local, "alpha", "beta", f"m{i}")
    first = broker.receive(local, "beta")
    assert bodies(first) == ["m0", "m1", "m2"]
    assert all(m.sender == "alpha" for m in first.messages)
    assert first.cursor == first.messages[-1].id
    # The same connection (its cursor) is not handed them again...
    assert broker.receive(local, "beta", after=first.cursor).messages == []
    # ...a new one (cursor 0) is, until they are acknowledged.
    assert bodies(broker.receive(local, "beta")) == ["m0", "m1", "m2"]
    assert broker.ack(local, "beta", [first.messages[0].id, first.messages[1].id]) == 2
    assert broker.ack(local, "beta", [first.messages[0].id]) == 0  # twice is harmless
    assert bodies(broker.receive(local, "beta")) == ["m2"]
    # An agent cannot ack another's messages.
    assert broker.ack(local, "alpha", [first.messages[2].id]) == 0
    assert bodies(broker.receive(local, "beta")) == ["m2"]


def test_receive_limit_and_cursor_page_through(local: Hive) -> None:
    for i in range(5):
        broker.send(local, "alpha", "beta", f"m{i}")
    page = broker.receive(local, "beta", limit=2)
    assert bodies(page) == ["m0", "m1"]
    assert bodies(broker.receive(local, "beta", after=page.cursor, limit=10)) == [
        "m2", "m3", "m4"]


def test_long_poll_wakes_when_a_message_arrives(local: Hive) -> None:
    got: list[broker.Delivery] = []
    waiter = threading.Thread(target=lambda: got.append(
        broker.receive(local, "beta", wait=120)))
    waiter.start()
    broker.send(local, "alpha", "beta", "wake up")
    waiter.join(60)
    assert not waiter.is_alive(), "the receive kept waiting after a message arrived"
    assert bodies(got[0]) == ["wake up"]


def test_async_long_poll_wakes_and_ends_when_stopped(local: Hive) -> None:
    async def main() -> tuple[broker.Delivery, broker.Delivery]:
        woken = asyncio.create_task(broker.receive_async(local, "beta", wait=120))
        await asyncio.sleep(0.2)  # let it start waiting (if not, it finds the message at once)
        await asyncio.to_thread(broker.send, local, "alpha", "beta", "hello")
        first = await asyncio.wait_for(woken, 60)
        stop = {"now": False}
        stopped = asyncio.create_task(broker.receive_async(
            local, "beta", after=first.cursor, wait=120, stopped=lambda: stop["now"]))
        await asyncio.sleep(0.2)
        stop["now"] = True
        local.doorbell.ring("beta")
        return first, await asyncio.wait_for(stopped, 60)

    first, second = asyncio.run(main())
    assert bodies(first) == ["hello"]
    assert second.messages == [] and second.cursor == first.cursor


def test_closed_doorbell_ends_waits(local: Hive) -> None:
    local.doorbell.close()
    assert broker.receive(local, "beta", wait=120).messages == []


def test_send_refuses_unknown_agents_and_bad_bodies(local: Hive) -> None:
    with pytest.raises(NotFound, match=r"no agent named 'ghost'.*agents: alpha, beta, manager"):
        broker.send(local, "alpha", "ghost", "hi")
    with pytest.raises(BadRequest, match="invalid agent name"):
        broker.send(local, "alpha", "../x", "hi")
    with pytest.raises(BadRequest, match="non-empty"):
        broker.send(local, "alpha", "beta", "  ")
    with pytest.raises(BadRequest, match="too long"):
        broker.send(local, "alpha", "beta", "x" * (broker.MAX_BODY + 1))
    assert local.store.inbox("beta") == []


def test_receive_and_ack_check_their_values(local: Hive) -> None:
    # Types are the boundary's (the converter refuses "x" for after, "1" or true for an id);
    # the domain checks the values every surface shares.
    with pytest.raises(BadRequest, match="limit must be between"):
        broker.receive(local, "beta", limit=0)
    with pytest.raises(BadRequest, match="wait must be"):
        broker.receive(local, "beta", wait=float("nan"))
    with pytest.raises(BadRequest, match="ids must be message ids"):
        broker.ack(local, "beta", [0])
    with pytest.raises(BadRequest, match="ids must be message ids"):
        broker.ack(local, "beta", [2**64])  # beyond SQLite's integers: no internal error
    with pytest.raises(BadRequest, match="after must be"):
        broker.receive(local, "beta", after=2**64)
    with pytest.raises(BadRequest, match="question id must be a positive integer"):
        questions.answer(local, 2**64, "x", by=OPERATOR)


#: hive-c0re's hint, which its agents' prompts know (coordinator.rs broadcast_send).
REFERENCE_HINT = "\n\n⚠️ _hint: this was a broadcast and may not need any action from you_"


def test_broadcast_reaches_every_agent_but_the_sender_with_the_references_hint(
        local: Hive) -> None:
    result = broker.broadcast(local, "alpha", "standup in 5")
    assert sorted(result.sent) == ["beta", "manager"]  # the manager too; never the sender
    assert result.failed == {}
    assert local.store.inbox("alpha") == []
    for name in ("beta", "manager"):
        (message,) = local.store.inbox(name)
        assert message.sender == "alpha"
        assert message.body == "standup in 5" + REFERENCE_HINT
        assert message.id == result.sent[name]
    from_manager = broker.broadcast(local, "manager", "new agent coming")
    assert sorted(from_manager.sent) == ["alpha", "beta"]
    from_operator = broker.broadcast(local, "operator", "the host reboots at six")
    assert sorted(from_operator.sent) == ["alpha", "beta", "manager"]
    with pytest.raises(BadRequest):
        broker.broadcast(local, "alpha", "")


# --- questions --------------------------------------------------------------------------------


def test_peer_question_answered_tells_both_sides(local: Hive) -> None:
    q = questions.ask(local, "alpha", "which db?", to="beta", options=["sqlite", "postgres"])
    (asked,) = helper_events(local, "beta")
    assert asked == {"type": "question_asked", "id": q.id, "asker": "alpha",
                     "question": "which db?", "options": ["sqlite", "postgres"],
                     "multi": False, "deadline": None}
    with pytest.raises(Forbidden, match="asked of 'beta', not of 'manager'"):
        questions.answer(local, q.id, "sqlite", by="manager")
    with pytest.raises(BadRequest, match="'mysql' is not one of the options: sqlite, postgres"):
        questions.answer(local, q.id, "mysql", by="beta")
    answered = questions.answer(local, q.id, "SQLite", by="beta")
    assert (answered.status, answered.answer, answered.answered_by) == (
        "answered", "sqlite", "beta")
    (event,) = helper_events(local, "alpha")
    assert event == {"type": "question_answered", "id": q.id, "question": "which db?",
                     "target": "beta", "status": "answered", "answer": "sqlite",
                     "answered_by": "beta", "selected": ["sqlite"]}
    with pytest.raises(Conflict, match="is answered, not pending"):
        questions.answer(local, q.id, "postgres", by="beta")


def test_multi_select_answers(local: Hive) -> None:
    q = questions.ask(local, "alpha", "colours?", options=["red", "green", "blue"], multi=True)
    with pytest.raises(Forbidden):
        questions.answer(local, q.id, "red", by="beta")  # asked of the operator
    with pytest.raises(BadRequest, match="'pink' is not one of the options"):
        questions.answer(local, q.id, "red, pink", by=OPERATOR)
    with pytest.raises(BadRequest, match="choose at least one"):
        questions.answer(local, q.id, " , ", by=OPERATOR)
    answered = questions.answer(local, q.id, "blue,RED", by=OPERATOR)
    assert answered.answer == "red, blue"  # the options' spelling and order
    (event,) = helper_events(local, "alpha")
    assert event["selected"] == ["red", "blue"] and event["answered_by"] == OPERATOR
    q2 = questions.ask(local, "alpha", "again?", options=["a", "b"], multi=True)
    assert questions.answer(local, q2.id, ["b"], by=OPERATOR).answer == "b"


def test_ask_validates(local: Hive) -> None:
    with pytest.raises(BadRequest, match="contains a comma"):
        questions.ask(local, "alpha", "q?", options=["a,b", "c"], multi=True)
    with pytest.raises(BadRequest, match="needs options"):
        questions.ask(local, "alpha", "q?", multi=True)
    with pytest.raises(BadRequest, match="cannot ask itself"):
        questions.ask(local, "alpha", "q?", to="alpha")
    with pytest.raises(NotFound, match="no agent named 'ghost'"):
        questions.ask(local, "alpha", "q?", to="ghost")
    with pytest.raises(BadRequest, match="timeout must be"):
        questions.ask(local, "alpha", "q?", timeout=0)
    with pytest.raises(BadRequest, match="differ"):
        questions.ask(local, "alpha", "q?", options=["A", "a"])
    with pytest.raises(BadRequest, match="non-empty"):
        questions.answer(local, questions.ask(local, "alpha", "free?").id, "", by=OPERATOR)
    # A single-choice option may contain a comma: the answer is taken whole.
    q = questions.ask(local, "alpha", "where?", options=["Paris, France", "Rome"])
    assert questions.answer(local, q.id, "paris, france", by=OPERATOR).answer == "Paris, France"


def test_cancel_and_expire(local: Hive) -> None:
    q = questions.ask(local, "alpha", "still there?", to="beta", timeout=3600)
    with pytest.raises(Forbidden, match="only the asker"):
        questions.cancel(local, q.id, by="beta")
    assert questions.cancel(local, q.id, by="alpha").status == "cancelled"
    q2 = questions.ask(local, "alpha", "deadline?", timeout=60)
    assert questions.expire_due(local) == []
    (expired,) = questions.expire_due(local, now=q2.deadline)
    assert (expired.id, expired.status) == (q2.id, "expired")
    statuses = [e["status"] for e in helper_events(local, "alpha")]
    assert statuses == ["cancelled", "expired"]


def test_destroying_an_agent_cancels_its_questions(local: Hive) -> None:
    mine = questions.ask(local, "beta", "for the operator")
    theirs = questions.ask(local, "alpha", "for beta", to="beta")
    questions.forget_agent(local, "beta")
    assert local.store.question(mine.id).status == "cancelled"
    assert local.store.question(theirs.id).status == "cancelled"
    (event,) = [e for e in helper_events(local, "alpha") if e["type"] == "question_answered"]
    assert (event["id"], event["status"], event["answered_by"]) == (theirs.id, "cancelled",
                                                                    SYSTEM)


# --- the agent sockets (plugin agent_api), in-process -------------------------------------------


def _wait_until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _client(path: Path) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://hive",
                        timeout=httpx.Timeout(10.0, read=None))


# Litestar 2.2x deprecates the inferred parameter style the API shares with hivekit.api (which
# keeps working with the oldest Litestar hivekit supports).
@pytest.mark.filterwarnings("ignore::litestar.exceptions.LitestarDeprecationWarning")
def test_agent_sockets_are_idempotent_and_answer_long_polls_when_they_stop(local: Hive) -> None:
    from hivekit_plugins.agent_api.server import AgentSockets

    sockets = AgentSockets(local, 64 * 1024)
    try:
        path = sockets.ensure("alpha")
        inode = os.stat(path).st_ino
        assert sockets.ensure("alpha") == path and os.stat(path).st_ino == inode  # kept
        path.unlink()  # someone removed it: the next ensure binds it anew
        sockets.ensure("alpha")
        assert _client(path).get("/whoami").json()["name"] == "alpha"

        answers: list[httpx.Response] = []
        poll = threading.Thread(target=lambda: answers.append(
            _client(path).get("/recv", params={"wait": 300})))
        poll.start()
        _wait_until(lambda: local.doorbell.listening("alpha") == 1, "the long-poll to wait")
        sockets.remove("alpha")  # the agent is destroyed: its long-poll is answered, empty
        poll.join(30)
        assert answers and answers[0].json() == {"messages": [], "cursor": 0}
        assert not path.exists()

        path = sockets.ensure("beta")
        poll = threading.Thread(target=lambda: answers.append(
            _client(path).get("/recv", params={"wait": 300})))
        poll.start()
        _wait_until(lambda: local.doorbell.listening("beta") == 1, "the long-poll to wait")
        local.doorbell.close()  # the daemon stops: what it does before the shutdown hooks
        poll.join(30)
        assert answers[1].json() == {"messages": [], "cursor": 0}
    finally:
        sockets.close()
    assert not path.exists()
