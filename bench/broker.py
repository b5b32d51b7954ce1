"""Broker: send → recv → ack round trips through agents' own sockets, many agents busy at once,
against a bare Litestar handler running the same SQL (see :func:`floor_app`).

The hive is a real ``hivekit serve`` (fake backend) and the floor a server process of its own, so
neither shares a GIL with the load generator. Agents form a ring: agent k sends to agent k+1,
whose receiver long-polls ``/recv`` on its own socket and acknowledges what it got; each sender
waits for its message to be acknowledged before sending the next, so ``agents`` round trips are
in flight at any time, each of three requests. The floor is driven the same way: three requests
per round trip (send, recv, ack, each running hivekit's statements for it), one worker per
agent, the same messages. Hive and floor alternate in segments.

Run the floor server alone: ``python -m bench.broker SOCKET DATABASE AGENT...``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from bench.common import Result, percentile, short_tmp
from bench.wire import Conn

#: How long a receiver long-polls (it is cancelled at the end anyway).
WAIT = 10


@attrs.define
class Tally:
    """What a load generator saw."""

    sent: int = 0
    received: set[tuple[int, int]] = attrs.field(factory=set)
    duplicates: int = 0
    acked: int = 0
    latencies: list[float] = attrs.field(factory=list)
    wall: float = 0.0
    #: CPU seconds the server process spent during the measured round trips.
    cpu: float = 0.0
    round_trips: int = 0

    @property
    def lost(self) -> int:
        return self.sent - min(len(self.received), self.acked)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive_hive(sockets: list[Path], names: list[str], rounds: int, warmup: int,
                     pid: int) -> Tally:
    """Ring round trips through the agents' sockets; ``warmup`` rounds per agent first."""
    n = len(sockets)
    tally = Tally()
    loop = asyncio.get_running_loop()
    waiting: dict[tuple[int, int], asyncio.Future[None]] = {}
    measuring = {"on": False}

    async def receiver(j: int) -> None:
        conn = await Conn(str(sockets[j])).open()
        cursor = 0
        try:
            while True:
                got = await conn.request("GET", f"/recv?after={cursor}&wait={WAIT}")
                now = time.monotonic()
                cursor = got["cursor"]
                ids, keys = [], []
                for m in got["messages"]:
                    body = json.loads(m["body"])
                    key = (body["k"], body["i"])
                    if key in tally.received:
                        tally.duplicates += 1
                    tally.received.add(key)
                    if body["m"]:
                        tally.latencies.append(now - body["t"])
                    ids.append(m["id"])
                    keys.append(key)
                if ids:
                    # not `tally.acked += await ...`: that reads tally.acked before awaiting
                    acked = (await conn.request("POST", "/ack", {"ids": ids}))["acked"]
                    tally.acked += acked
                for key in keys:
                    fut = waiting.pop(key, None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
        finally:
            await conn.close()

    async def sender(k: int, conn: Conn, first: int, count: int) -> None:
        to = names[(k + 1) % n]
        for i in range(first, first + count):
            fut = waiting[(k, i)] = loop.create_future()
            t = time.monotonic()
            body = json.dumps({"k": k, "i": i, "t": t, "m": measuring["on"]})
            await conn.request("POST", "/send", {"to": to, "body": body})
            tally.sent += 1
            await asyncio.wait_for(fut, 60)

    receivers = [asyncio.create_task(receiver(j)) for j in range(n)]
    conns = [await Conn(str(s)).open() for s in sockets]
    try:
        await asyncio.sleep(0.2)  # let the receivers' long-polls reach the hive
        await asyncio.gather(*(sender(k, conns[k], 0, warmup) for k in range(n)))
        measuring["on"] = True
        t, cpu = time.perf_counter(), cpu_seconds(pid)
        await asyncio.gather(*(sender(k, conns[k], warmup, rounds) for k in range(n)))
        tally.wall = time.perf_counter() - t
        tally.cpu = cpu_seconds(pid) - cpu
        tally.round_trips = n * rounds
    finally:
        for task in receivers:
            task.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)
        for c in conns:
            await c.close()
    return tally


async def drive_floor(socket: Path, names: list[str], rounds: int, warmup: int,
                      pid: int) -> Tally:
    """The same load against the floor: three requests per round trip, one worker per agent."""
    tally = Tally()
    workers = len(names)

    cursors = [0] * workers

    async def worker(k: int, first: int, count: int, measured: bool) -> None:
        me = names[(k + 1) % workers]  # the ring of the hive's side: k sends to k+1
        for i in range(first, first + count):
            t = time.monotonic()
            await sends[k].request("POST", "/send", {"to": me, "body": f"{k} {i} {t}"})
            tally.sent += 1
            got = await recvs[k].request("GET", f"/recv?me={me}&after={cursors[k]}&limit=100")
            if measured:
                tally.latencies.append(time.monotonic() - t)
            ids = [m["id"] for m in got["messages"]]
            cursors[k] = got["cursor"]
            tally.received.update((k, m["id"]) for m in got["messages"])
            acked = (await recvs[k].request("POST", f"/ack?me={me}", {"ids": ids}))["acked"]
            tally.acked += acked

    sends = [await Conn(str(socket)).open() for _ in range(workers)]
    recvs = [await Conn(str(socket)).open() for _ in range(workers)]
    try:
        await asyncio.gather(*(worker(k, 0, warmup, False) for k in range(workers)))
        t, cpu = time.perf_counter(), cpu_seconds(pid)
        await asyncio.gather(*(worker(k, warmup, rounds, True) for k in range(workers)))
        tally.wall = time.perf_counter() - t
        tally.cpu = cpu_seconds(pid) - cpu
        tally.round_trips = workers * rounds
    finally:
        for c in sends + recvs:
            await c.close()
    return tally


def floor_app(db: Path, names: list[str]) -> Any:
    """A bare Litestar app running the SQL hivekit's broker runs for each request, on hivekit's
    schema, directly on one apsw connection (no worker thread, no records, no checks):

    * send: the recipient's existence (``SELECT ... FROM agents``), then the ``INSERT`` in an
      immediate transaction;
    * recv: the unacknowledged messages after the cursor (``SELECT ... LIMIT``);
    * ack: the ``UPDATE`` of each id in a transaction.
    """
    import apsw
    from litestar import Litestar, get, post

    from hivekit.store import Store

    store = Store(db)  # hivekit's schema and pragmas; the floor then talks SQL itself
    with store.conn:
        for name in names:
            store.conn.execute("INSERT OR IGNORE INTO agents(name, wanted, created_at) "
                               "VALUES (?, 'running', ?)", (name, time.time()))
    store.close()
    conn = apsw.Connection(str(db))
    conn.setbusytimeout(10_000)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")

    @post("/send", status_code=201)
    async def send(data: dict[str, Any]) -> dict[str, Any]:
        if not list(conn.execute("SELECT 1 AS x FROM agents WHERE name = ?", (data["to"],))):
            return {"error": "no such agent"}
        now = time.time()
        with conn:
            conn.execute("INSERT INTO messages(sender, recipient, body, created_at) "
                         "VALUES (?, ?, ?, ?)", ("floor", data["to"], data["body"], now))
            new_id = conn.last_insert_rowid()
        return {"id": new_id, "sender": "floor", "recipient": data["to"], "body": data["body"],
                "created_at": now, "acked_at": None}

    @get("/recv")
    async def recv(me: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        cur = conn.execute("SELECT * FROM messages WHERE recipient = ? AND id > ? AND acked_at "
                           "IS NULL ORDER BY id LIMIT ?", (me, after, limit))
        names = [d[0] for d in cur.getdescription()] if cur else []
        messages = [dict(zip(names, row, strict=True)) for row in cur]
        return {"messages": messages, "cursor": messages[-1]["id"] if messages else after}

    @post("/ack", status_code=200)
    async def ack(me: str, data: dict[str, Any]) -> dict[str, Any]:
        with conn:
            before = conn.total_changes()
            conn.executemany("UPDATE messages SET acked_at = ? WHERE id = ? AND recipient = ? "
                             "AND acked_at IS NULL", [(time.time(), i, me) for i in data["ids"]])
            return {"acked": conn.total_changes() - before}

    return Litestar([send, recv, ack], debug=False, logging_config=None, openapi_config=None)


def serve_floor(socket: Path, db: Path, names: list[str]) -> None:
    import uvicorn

    from hivekit.sockets import bind_unix

    app = floor_app(db, names)
    sock = bind_unix(socket)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None,
                                           log_level="warning", access_log=False))
    asyncio.run(server.serve(sockets=[sock]))


def _wait_for(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run(quick: bool = False) -> Result:
    from hivekit.testing import HiveProcess

    agents = 10 if quick else 50
    rounds = 10 if quick else 40
    warmup = 2 if quick else 5
    segments = 1 if quick else 3
    result = Result(f"broker: send -> recv -> ack, {agents} agents at once")
    root = short_tmp()
    names = [f"b{i}" for i in range(agents)]
    floor_sock = root / "floor.sock"
    hives: list[Tally] = []
    floors: list[Tally] = []
    with HiveProcess(root / "h") as hive:
        for name in names:
            hive.spawn(name)
        sockets = [hive.runtime_dir / "agents" / name / "hive.sock" for name in names]
        _wait_for(lambda: all(s.exists() for s in sockets), "the agents' sockets")
        proc = subprocess.Popen([sys.executable, "-m", "bench.broker", str(floor_sock),
                                 str(root / "floor.db"), *names])
        try:
            _wait_for(floor_sock.exists, "the floor server")
            # Alternate: a shared machine's load drifts, and both sides should see the same.
            for _ in range(segments):
                hives.append(asyncio.run(drive_hive(sockets, names, rounds, warmup,
                                                    hive.proc.pid)))
                floors.append(asyncio.run(drive_floor(floor_sock, names, rounds, warmup,
                                                      proc.pid)))
        finally:
            proc.terminate()
            proc.wait(10)
        inboxes = [m for name in names for m in hive.get(f"/api/agents/{name}/inbox",
                                                         limit=1000)
                   if m["sender"] in names]

    def per_trip(tallies: list[Tally], key: str) -> float:
        return statistics.median(getattr(t, key) / t.round_trips for t in tallies)

    def latencies(tallies: list[Tally]) -> list[float]:
        return [x for t in tallies for x in t.latencies]

    wall, floor_wall = per_trip(hives, "wall"), per_trip(floors, "wall")
    result.add("time per round trip (wall / round trips)", wall, floor_wall, target=2.5)
    result.add("server CPU per round trip (all its threads)", per_trip(hives, "cpu"),
               per_trip(floors, "cpu"))
    result.add("round trips per second", 1 / wall, 1 / floor_wall, unit="/s")
    result.add("delivery latency p50 (send -> receipt)", percentile(latencies(hives), 50),
               percentile(latencies(floors), 50))
    result.add("delivery latency p99 (send -> receipt)", percentile(latencies(hives), 99),
               percentile(latencies(floors), 99))
    result.add("messages sent", sum(t.sent for t in hives), unit="msgs")
    result.add("messages lost (sent - received and acked)", sum(t.lost for t in hives),
               unit="msgs", target=0)
    result.add("messages handed out twice", sum(t.duplicates for t in hives), unit="msgs")
    result.add("messages left unacknowledged in the store",
               sum(1 for m in inboxes if m["acked_at"] is None), unit="msgs", target=0)
    result.add("messages stored (must equal sent)", len(inboxes), unit="msgs")
    result.notes.append(
        f"{segments} segment(s) per side, alternating, medians; each {rounds} measured round "
        f"trips per agent after {warmup} warm-up ones; the floor's latency is its round trip's "
        "send + recv requests")
    return result


if __name__ == "__main__":
    serve_floor(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
