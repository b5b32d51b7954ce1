"""The hive's database: approvals, agents, messages and questions in one SQLite file (apsw, WAL).

One connection per thread (a shared connection would serialise every caller); every write is one
``with conn:`` transaction; the schema is upgraded in place by a ``user_version`` chain, and a
database written by a newer hivekit is refused rather than misread.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw

from hivekit.convert import converter
from hivekit.errors import Conflict, HiveError, NotFound
from hivekit.paths import private_file
from hivekit.records import Approval, ApprovalKind, ApprovalStatus, Message, Question

SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 10_000
#: Delivered outbox entries are kept this long (for inspection), then pruned at startup.
OUTBOX_KEEP_SECONDS = 7 * 86400

_SCHEMA_V1 = """
CREATE TABLE approvals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: tags proposal/<id> persist
    kind        TEXT NOT NULL,
    agent       TEXT NOT NULL,
    status      TEXT NOT NULL,
    commit_ref  TEXT,
    sha         TEXT,
    prev_sha    TEXT,
    description TEXT NOT NULL DEFAULT '',
    note        TEXT,
    tag         TEXT,
    created_at  REAL NOT NULL,
    resolved_at REAL
);
CREATE INDEX approvals_status ON approvals(status, id);
CREATE INDEX approvals_agent ON approvals(agent, status);

CREATE TABLE agents (
    name       TEXT PRIMARY KEY,
    wanted     TEXT NOT NULL DEFAULT 'running',  -- what the operator last asked for
    created_at REAL NOT NULL
);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sender     TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at REAL NOT NULL,
    acked_at   REAL
);
CREATE INDEX messages_inbox ON messages(recipient, acked_at, id);

CREATE TABLE questions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    asker       TEXT NOT NULL,
    target      TEXT NOT NULL,
    question    TEXT NOT NULL,
    options     TEXT NOT NULL DEFAULT '[]',
    multi       INTEGER NOT NULL DEFAULT 0,
    deadline    REAL,
    status      TEXT NOT NULL DEFAULT 'pending',
    answer      TEXT,
    answered_by TEXT,
    created_at  REAL NOT NULL,
    resolved_at REAL
);
CREATE INDEX questions_pending ON questions(status, deadline);
"""

# v2 (issue "outcomes survive any crash"): the outbox, and what hivekit knows about each agent's
# container. ``agents.wanted`` also takes ``destroying`` and ``purging`` from v2 on: the intent
# of a destroy in progress, which startup finishes.
_SCHEMA_V2 = """
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: observers deduplicate by it
    payload    TEXT NOT NULL,                       -- JSON: events, doorbells, observer calls
    created_at REAL NOT NULL,
    done_at    REAL
);
CREATE INDEX outbox_undelivered ON outbox(id) WHERE done_at IS NULL;

-- NULL: the container runs applied main (as far as hivekit knows); 'building': a build from
-- main is under way (a crash leaves it unknown: startup rebuilds); 'needed': it may not run
-- main, and only an operator rebuild clears it. ``rebuild_note`` says why.
ALTER TABLE agents ADD COLUMN rebuild TEXT;
ALTER TABLE agents ADD COLUMN rebuild_note TEXT;
"""

#: ``agents.wanted`` values of an agent being destroyed: it is no longer one of the hive's agents.
DOOMED = ("destroying", "purging")
_LIVE = "wanted NOT IN ('destroying', 'purging')"

# v3 (issue 16, "a real hive of AI agents"): the template a spawn seeds its agent with
# (``hivekit request spawn NAME --template claude``); NULL for the default seed and for applies.
# ``commit_ref`` keeps what an apply's requester typed; ``sha`` what it resolved to.
_SCHEMA_V3 = """
ALTER TABLE approvals ADD COLUMN template TEXT;
"""


class Store:
    """The database at ``path``; safe to share between threads (each gets its own connection)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        # Every message is in here: 0600 whatever the umask. SQLite gives the -wal and -shm
        # files the database file's mode.
        private_file(self.path)
        self._upgrade()
        for extra in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.path}{extra}", 0o600)

    # --- connections -------------------------------------------------------------------------

    @property
    def conn(self) -> apsw.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = apsw.Connection(str(self.path))
            conn.setbusytimeout(BUSY_TIMEOUT_MS)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _upgrade(self) -> None:
        conn = self.conn
        with conn:
            version = conn.execute("PRAGMA user_version").fetchall()[0][0]
            if version > SCHEMA_VERSION:
                raise HiveError(
                    f"{self.path} has schema version {version}, newer than this hivekit "
                    f"understands ({SCHEMA_VERSION}); upgrade hivekit or use another state_dir"
                )
            if version == 0:
                conn.execute(_SCHEMA_V1)
                conn.execute("PRAGMA user_version = 1")
                version = 1
            if version == 1:
                conn.execute(_SCHEMA_V2)
                conn.execute("PRAGMA user_version = 2")
                version = 2
            if version == 2:
                conn.execute(_SCHEMA_V3)
                conn.execute("PRAGMA user_version = 3")
                version = 3
            # Next: `if version == 3: ...; PRAGMA user_version = 4`, and so on.

    def _rows(self, sql: str, args: Any = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, args)
        try:
            names = [d[0] for d in cur.getdescription()]
        except apsw.ExecutionCompleteError:  # no rows at all
            return []
        return [dict(zip(names, row, strict=True)) for row in cur]

    @contextmanager
    def transaction(self) -> Iterator[apsw.Connection]:
        """A write transaction on this thread's connection (immediate: no upgrade deadlocks).

        Writers in this process take turns on a lock first: SQLite has one writer at a time
        anyway, and a writer that finds the database locked polls with sleeps growing to 100 ms,
        so under contention some waited most of a second (broker bench: p99 650 ms at p50 34).

        Inside another transaction on the same thread it nests (a savepoint): what it writes
        commits with the outermost one, or not at all. That is how a transition and the messages
        it owes are written together (:mod:`hivekit.outbox`).
        """
        conn = self.conn
        with self._write_lock, conn:
            yield conn

    # --- approvals ---------------------------------------------------------------------------

    @staticmethod
    def _approval(row: dict[str, Any]) -> Approval:
        # ``commit_ref`` is what an apply's requester typed; the record's ``commit`` is always
        # the sha it resolved to (None for spawns).
        ref = row.pop("commit_ref")
        if row["kind"] == ApprovalKind.APPLY.value:
            row["commit"], row["ref"] = row["sha"], ref
        else:
            row["commit"], row["ref"] = None, None
        return converter.structure(row, Approval)

    def add_approval(self, kind: ApprovalKind, agent: str, *, ref: str | None = None,
                     sha: str | None = None, description: str = "",
                     template: str | None = None) -> Approval:
        """A new pending approval: an apply of ``sha`` (requested as ``ref``), or a spawn of a
        new agent (seeded from ``template``, None for the backend's default)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO approvals(kind, agent, status, commit_ref, sha, description,"
                " template, created_at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
                (kind.value, agent, ref if kind == ApprovalKind.APPLY else None, sha,
                 description, template if kind == ApprovalKind.SPAWN else None, time.time()),
            )
            new_id = conn.last_insert_rowid()
        return self.approval(new_id)

    def approval(self, approval_id: int) -> Approval:
        rows = self._rows("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        if not rows:
            raise NotFound(f"no approval #{approval_id}; `hivekit approvals --all` lists them")
        return self._approval(rows[0])

    def approvals(self, status: ApprovalStatus | None = None, limit: int | None = None,
                  agent: str | None = None) -> list[Approval]:
        """Newest first when limited (the recent history); oldest first otherwise."""
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status.value)
        if agent is not None:
            where.append("agent = ?")
            args.append(agent)
        sql = "SELECT * FROM approvals" + (" WHERE " + " AND ".join(where) if where else "")
        if limit is not None:
            sql += " ORDER BY id DESC LIMIT ?"
            args.append(limit)
        else:
            sql += " ORDER BY id"
        return [self._approval(r) for r in self._rows(sql, args)]

    def delete_approval(self, approval_id: int) -> None:
        """Forget an approval that never became visible (its request failed half-way)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM approvals WHERE id = ?", (approval_id,))

    def claim(self, approval_id: int, prev_sha: str | None = None) -> Approval:
        """Move a pending approval to ``running`` (recording ``prev_sha``), exactly once.

        :raises Conflict: it is not pending (the message says what it is).
        :raises NotFound: there is no such approval.
        """
        with self.transaction() as conn:
            conn.execute(
                "UPDATE approvals SET status = 'running', prev_sha = ? "
                "WHERE id = ? AND status = 'pending'",
                (prev_sha, approval_id),
            )
            changed = conn.changes()
        if not changed:
            current = self.approval(approval_id)
            raise Conflict(f"approval #{approval_id} is {current.status.value}, not pending")
        return self.approval(approval_id)

    def resolve(self, approval_id: int, status: ApprovalStatus, *, expect: ApprovalStatus,
                note: str | None = None, tag: str | None = None,
                sha: str | None = None) -> Approval:
        """Move an approval from ``expect`` to a terminal ``status``, exactly once."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE approvals SET status = ?, note = ?, tag = ?, sha = COALESCE(?, sha),"
                " resolved_at = ? WHERE id = ? AND status = ?",
                (status.value, note, tag, sha, time.time(), approval_id, expect.value),
            )
            changed = conn.changes()
        if not changed:
            current = self.approval(approval_id)
            raise Conflict(f"approval #{approval_id} is {current.status.value}, "
                           f"not {expect.value}")
        return self.approval(approval_id)

    def set_note(self, approval_id: int, note: str) -> None:
        """Record a running approval's failure reason before its rollback (recovery uses it)."""
        with self.transaction() as conn:
            conn.execute("UPDATE approvals SET note = ? WHERE id = ? AND status = 'running'",
                         (note, approval_id))

    def pending_spawn(self, agent: str) -> Approval | None:
        rows = self._rows(
            "SELECT * FROM approvals WHERE agent = ? AND kind = 'spawn' "
            "AND status IN ('pending', 'running') ORDER BY id LIMIT 1", (agent,))
        return self._approval(rows[0]) if rows else None

    # --- agents ------------------------------------------------------------------------------
    # A row whose ``wanted`` is ``destroying``/``purging`` is a destroy in progress (its intent,
    # written before the backend is told): not one of the hive's agents any more, and finished
    # by startup when the daemon died during it.

    def agent_names(self) -> list[str]:
        return [r["name"] for r in self._rows(
            f"SELECT name FROM agents WHERE {_LIVE} ORDER BY name")]

    def has_agent(self, name: str) -> bool:
        return bool(self._rows(f"SELECT 1 AS x FROM agents WHERE name = ? AND {_LIVE}",
                               (name,)))

    def add_agent(self, name: str) -> None:
        """Register ``name`` (a new container: nothing is known to be stale about it)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO agents(name, wanted, created_at) VALUES (?, 'running', ?) "
                "ON CONFLICT(name) DO UPDATE SET wanted = 'running', rebuild = NULL, "
                "rebuild_note = NULL", (name, time.time()))

    def remove_agent(self, name: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM agents WHERE name = ?", (name,))

    def set_wanted(self, name: str, wanted: str) -> None:
        with self.transaction() as conn:
            conn.execute(f"UPDATE agents SET wanted = ? WHERE name = ? AND {_LIVE}",
                         (wanted, name))

    def wanted(self) -> dict[str, str]:
        return {r["name"]: r["wanted"] for r in self._rows(
            f"SELECT name, wanted FROM agents WHERE {_LIVE}")}

    def doom(self, name: str, *, purge: bool) -> None:
        """Record that ``name`` is being destroyed (purged): the intent startup finishes.

        A tombstone being purged gets a row for the purpose.
        """
        wanted = "purging" if purge else "destroying"
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO agents(name, wanted, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET wanted = excluded.wanted",
                (name, wanted, time.time()))

    def doomed(self) -> dict[str, bool]:
        """Destroys in progress: agent name → whether it is a purge."""
        return {r["name"]: r["wanted"] == "purging" for r in self._rows(
            "SELECT name, wanted FROM agents WHERE wanted IN ('destroying', 'purging')")}

    def set_rebuild(self, name: str, state: str | None, note: str | None = None) -> None:
        """What is known about ``name``'s container: None (it runs applied ``main``),
        ``building`` (a build is under way) or ``needed`` (it may not run ``main``)."""
        with self.transaction() as conn:
            conn.execute("UPDATE agents SET rebuild = ?, rebuild_note = ? WHERE name = ?",
                         (state, note if state else None, name))

    def rebuild_marks(self) -> dict[str, tuple[str, str | None]]:
        """Agents whose container may not run applied ``main``: name → (state, note)."""
        return {r["name"]: (r["rebuild"], r["rebuild_note"]) for r in self._rows(
            "SELECT name, rebuild, rebuild_note FROM agents WHERE rebuild IS NOT NULL")}

    def rebuild_mark(self, name: str) -> tuple[str, str | None] | None:
        rows = self._rows("SELECT rebuild, rebuild_note FROM agents WHERE name = ? "
                          "AND rebuild IS NOT NULL", (name,))
        return (rows[0]["rebuild"], rows[0]["rebuild_note"]) if rows else None

    # --- outbox ------------------------------------------------------------------------------
    # What a transition owes outside the database (observer hooks, bus events, doorbells),
    # written in the transition's own transaction and delivered after it: see hivekit.outbox.

    def add_outbox(self, payload: str) -> int:
        with self.transaction() as conn:
            conn.execute("INSERT INTO outbox(payload, created_at) VALUES (?, ?)",
                         (payload, time.time()))
            return conn.last_insert_rowid()

    def undelivered(self) -> list[tuple[int, str]]:
        """Outbox entries not yet delivered, oldest first: ``(id, payload)``."""
        return [(r["id"], r["payload"]) for r in self._rows(
            "SELECT id, payload FROM outbox WHERE done_at IS NULL ORDER BY id")]

    def delivered(self, ids: list[int]) -> None:
        with self.transaction() as conn:
            conn.executemany("UPDATE outbox SET done_at = ? WHERE id = ?",
                             [(time.time(), i) for i in ids])

    def prune_outbox(self, before: float) -> None:
        """Forget entries delivered before ``before`` (UNIX time)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM outbox WHERE done_at IS NOT NULL AND done_at < ?",
                         (before,))

    # --- messages ----------------------------------------------------------------------------

    def add_message(self, sender: str, recipient: str, body: str) -> Message:
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO messages(sender, recipient, body, created_at) VALUES (?, ?, ?, ?)",
                (sender, recipient, body, now))
            new_id = conn.last_insert_rowid()
        return Message(id=new_id, sender=sender, recipient=recipient, body=body, created_at=now)

    def inbox(self, recipient: str, *, unacked_only: bool = False,
              limit: int | None = None, after: int = 0) -> list[Message]:
        """Messages to ``recipient`` in the order they were sent."""
        sql = "SELECT * FROM messages WHERE recipient = ? AND id > ?"
        if unacked_only:
            sql += " AND acked_at IS NULL"
        sql += " ORDER BY id"
        args: list[Any] = [recipient, after]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [converter.structure(r, Message) for r in self._rows(sql, args)]

    def recent_inbox(self, recipient: str, limit: int) -> list[Message]:
        """The newest ``limit`` messages to ``recipient``, oldest first."""
        rows = self._rows("SELECT * FROM messages WHERE recipient = ? ORDER BY id DESC LIMIT ?",
                          (recipient, limit))
        return [converter.structure(r, Message) for r in reversed(rows)]

    def ack(self, recipient: str, ids: list[int]) -> int:
        """Retire ``recipient``'s messages ``ids``; returns how many were newly acknowledged."""
        with self.transaction() as conn:
            # changes() counts only executemany's last statement: count them all.
            before = conn.total_changes()
            conn.executemany(
                "UPDATE messages SET acked_at = ? WHERE id = ? AND recipient = ? "
                "AND acked_at IS NULL", [(time.time(), i, recipient) for i in ids])
            return conn.total_changes() - before

    def ack_all(self, recipient: str) -> list[int]:
        """Retire every message of ``recipient``'s; returns the ids newly acknowledged."""
        with self.transaction() as conn:
            ids = [row[0] for row in conn.execute(
                "SELECT id FROM messages WHERE recipient = ? AND acked_at IS NULL ORDER BY id",
                (recipient,))]
            conn.execute("UPDATE messages SET acked_at = ? WHERE recipient = ? AND acked_at IS "
                         "NULL", (time.time(), recipient))
            return ids

    # --- questions ---------------------------------------------------------------------------

    @staticmethod
    def _question(row: dict[str, Any]) -> Question:
        row["options"] = json.loads(row["options"])
        row["multi"] = bool(row["multi"])
        return converter.structure(row, Question)

    def question(self, question_id: int) -> Question:
        rows = self._rows("SELECT * FROM questions WHERE id = ?", (question_id,))
        if not rows:
            raise NotFound(f"no question #{question_id}; `hivekit questions` lists them")
        return self._question(rows[0])

    def questions(self, *, status: str | None = "pending",
                  target: str | None = None) -> list[Question]:
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if target is not None:
            where.append("target = ?")
            args.append(target)
        sql = "SELECT * FROM questions" + (" WHERE " + " AND ".join(where) if where else "")
        return [self._question(r) for r in self._rows(sql + " ORDER BY id", args)]

    def add_question(self, asker: str, target: str, question: str, *, options: list[str],
                     multi: bool, deadline: float | None) -> Question:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO questions(asker, target, question, options, multi, deadline,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (asker, target, question, json.dumps(options), int(multi), deadline,
                 time.time()))
            new_id = conn.last_insert_rowid()
        return self.question(new_id)

    def resolve_question(self, question_id: int, status: str, *, answer: str | None = None,
                         answered_by: str | None = None) -> Question:
        """Move a pending question to ``status`` (answered, cancelled, expired), exactly once.

        :raises Conflict: it is no longer pending (the message says what became of it).
        :raises NotFound: there is no such question.
        """
        with self.transaction() as conn:
            conn.execute(
                "UPDATE questions SET status = ?, answer = ?, answered_by = ?, resolved_at = ?"
                " WHERE id = ? AND status = 'pending'",
                (status, answer, answered_by, time.time(), question_id))
            changed = conn.changes()
        current = self.question(question_id)
        if not changed:
            raise Conflict(f"question #{question_id} is {current.status}, not pending")
        return current

    def due_questions(self, now: float) -> list[Question]:
        """Pending questions whose deadline is at or before ``now``, oldest deadline first."""
        rows = self._rows("SELECT * FROM questions WHERE status = 'pending' AND deadline IS NOT"
                          " NULL AND deadline <= ? ORDER BY deadline, id", (now,))
        return [self._question(r) for r in rows]

    def next_deadline(self) -> float | None:
        """The earliest deadline of a pending question, or None."""
        rows = self._rows("SELECT MIN(deadline) AS d FROM questions WHERE status = 'pending'")
        return rows[0]["d"] if rows else None

    def questions_of(self, agent: str) -> list[Question]:
        """Pending questions ``agent`` asked or was asked, oldest first."""
        rows = self._rows("SELECT * FROM questions WHERE status = 'pending' AND"
                          " (asker = ? OR target = ?) ORDER BY id", (agent, agent))
        return [self._question(r) for r in rows]
