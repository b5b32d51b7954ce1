"""The store: one connection per thread, transitions exactly once, schema versioning."""

from __future__ import annotations

import threading

import apsw
import pytest

from hivekit.errors import Conflict, HiveError, NotFound
from hivekit.records import ApprovalKind, ApprovalStatus
from hivekit.store import SCHEMA_VERSION, Store


def test_schema_version_and_wal(tmp_path):
    store = Store(tmp_path / "hive.db")
    conn = store.conn
    assert conn.execute("PRAGMA user_version").fetchall()[0][0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchall()[0][0] == "wal"
    # Reopening an up-to-date database changes nothing.
    Store(tmp_path / "hive.db")


def test_a_v1_database_is_upgraded_in_place(tmp_path):
    from hivekit.store import _SCHEMA_V1

    path = tmp_path / "hive.db"
    conn = apsw.Connection(str(path))
    with conn:
        conn.execute(_SCHEMA_V1)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO agents(name, wanted, created_at) VALUES ('coder', 'stopped', 1)")
        conn.execute("INSERT INTO approvals(kind, agent, status, created_at) "
                     "VALUES ('spawn', 'coder', 'approved', 1)")
        conn.execute("INSERT INTO messages(sender, recipient, body, created_at) "
                     "VALUES ('system', 'manager', 'hi', 1)")
    conn.close()
    store = Store(path)
    assert store.conn.execute("PRAGMA user_version").fetchall()[0][0] == SCHEMA_VERSION == 3
    # What v1 held is kept...
    assert store.wanted() == {"coder": "stopped"}
    assert store.approval(1).status == ApprovalStatus.APPROVED
    assert [m.body for m in store.inbox("manager")] == ["hi"]
    # ...and v2's parts work on it.
    assert store.rebuild_marks() == {}
    store.set_rebuild("coder", "needed", "why")
    assert store.rebuild_mark("coder") == ("needed", "why")
    entry = store.add_outbox("{}")
    assert store.undelivered() == [(entry, "{}")]
    store.delivered([entry])
    assert store.undelivered() == []
    store.doom("coder", purge=True)
    assert store.doomed() == {"coder": True} and store.agent_names() == []


def test_a_transition_and_its_messages_commit_together(tmp_path):
    from hivekit.store import Store as S

    store = S(tmp_path / "hive.db")
    a = store.add_approval(ApprovalKind.SPAWN, "coder")
    store.claim(a.id)
    with pytest.raises(RuntimeError), store.transaction():
        store.resolve(a.id, ApprovalStatus.APPROVED, expect=ApprovalStatus.RUNNING)
        store.add_message("system", "manager", "approved")
        store.add_outbox("{}")
        raise RuntimeError("the daemon dies here")
    # Nothing of it happened: the status, the message and the entry went together.
    assert store.approval(a.id).status == ApprovalStatus.RUNNING
    assert store.inbox("manager") == [] and store.undelivered() == []


def test_newer_database_is_refused(tmp_path):
    conn = apsw.Connection(str(tmp_path / "hive.db"))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(HiveError, match="newer than this hivekit"):
        Store(tmp_path / "hive.db")


def test_each_thread_gets_its_own_connection(tmp_path):
    store = Store(tmp_path / "hive.db")
    seen = []
    t = threading.Thread(target=lambda: seen.append(store.conn))
    t.start()
    t.join()
    assert seen[0] is not store.conn


def test_concurrent_writers_lose_nothing(tmp_path):
    store = Store(tmp_path / "hive.db")
    errors = []

    def writer(n: int) -> None:
        try:
            for i in range(50):
                store.add_message(f"a{n}", "manager", f"{n}-{i}")
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    inbox = store.inbox("manager")
    assert len(inbox) == 400
    # Each writer's messages keep their order.
    for n in range(8):
        mine = [m.body for m in inbox if m.sender == f"a{n}"]
        assert mine == [f"{n}-{i}" for i in range(50)]


def test_claim_happens_exactly_once_under_contention(tmp_path):
    store = Store(tmp_path / "hive.db")
    approval = store.add_approval(ApprovalKind.SPAWN, "coder")
    wins, losses = [], []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        try:
            wins.append(store.claim(approval.id))
        except Conflict as exc:
            losses.append(str(exc))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    assert all("is running, not pending" in m for m in losses)


def test_resolve_requires_the_expected_status(tmp_path):
    store = Store(tmp_path / "hive.db")
    a = store.add_approval(ApprovalKind.APPLY, "coder", ref="HEAD", sha="ab" * 20)
    denied = store.resolve(a.id, ApprovalStatus.DENIED, expect=ApprovalStatus.PENDING, note="no")
    assert denied.status == ApprovalStatus.DENIED and denied.resolved_at is not None
    with pytest.raises(Conflict, match="is denied, not pending"):
        store.resolve(a.id, ApprovalStatus.APPROVED, expect=ApprovalStatus.PENDING)


def test_ids_are_never_reused(tmp_path):
    # proposal/<id> tags outlive their rows: an id must never come back.
    store = Store(tmp_path / "hive.db")
    first = store.add_approval(ApprovalKind.SPAWN, "a")
    store.delete_approval(first.id)
    assert store.add_approval(ApprovalKind.SPAWN, "b").id == first.id + 1


def test_unknown_approval(tmp_path):
    with pytest.raises(NotFound, match="no approval #42"):
        Store(tmp_path / "hive.db").approval(42)


def test_ack_only_retires_the_recipients_messages(tmp_path):
    store = Store(tmp_path / "hive.db")
    m = store.add_message("operator", "coder", "hi")
    assert store.ack("other", [m.id]) == 0
    assert store.ack("coder", [m.id]) == 1
    assert store.ack("coder", [m.id]) == 0
    assert store.inbox("coder", unacked_only=True) == []


def test_an_approval_keeps_what_was_named_beside_the_resolved_sha(tmp_path):
    store = Store(tmp_path / "hive.db")
    apply = store.add_approval(ApprovalKind.APPLY, "coder", ref="HEAD", sha="ab" * 20)
    spawn = store.add_approval(ApprovalKind.SPAWN, "a", template="claude")
    plain = store.add_approval(ApprovalKind.SPAWN, "b")
    # An apply's commit is always the sha; what was typed is its ref.
    assert (apply.commit, apply.ref, apply.template) == ("ab" * 20, "HEAD", None)
    assert (spawn.commit, spawn.ref, spawn.template) == (None, None, "claude")
    assert (plain.commit, plain.template) == (None, None)
    assert store.approval(apply.id) == apply and store.approval(spawn.id) == spawn


def test_a_version_1_database_is_upgraded_in_place_keeping_its_approvals(tmp_path):
    from hivekit.store import _SCHEMA_V1

    path = tmp_path / "hive.db"
    conn = apsw.Connection(str(path))
    with conn:  # what a hivekit of schema 1 left: an apply (its ref as typed) and a spawn
        conn.execute(_SCHEMA_V1)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO approvals(kind, agent, status, commit_ref, sha, created_at) "
                     "VALUES ('apply', 'coder', 'pending', 'HEAD', ?, 1.0)", ("ab" * 20,))
        conn.execute("INSERT INTO approvals(kind, agent, status, created_at) "
                     "VALUES ('spawn', 'b', 'pending', 2.0)")
    conn.close()
    store = Store(path)
    assert store.conn.execute("PRAGMA user_version").fetchall()[0][0] == SCHEMA_VERSION == 3
    apply, spawn = store.approvals()
    assert (apply.commit, apply.ref, apply.template) == ("ab" * 20, "HEAD", None)
    assert (spawn.kind, spawn.commit, spawn.template) == (ApprovalKind.SPAWN, None, None)
    # The new column is written from now on.
    assert store.add_approval(ApprovalKind.SPAWN, "c", template="claude").template == "claude"
