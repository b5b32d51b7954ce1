"""State at scale: ``GET /api/state`` of a real ``hivekit serve`` (fake backend) with 900 agents.

* against the same daemon with a short history (the snapshot must not grow with history): two
  daemons, one request to each in turn;
* against a **bare handler**: a Litestar app on uvicorn in a process of its own, answering
  ``/api/state`` with the very bytes the hive answered (what the framework and the socket cost
  anyway), one request to each in turn;
* with 4 dashboards polling (each a process of its own: a snapshot every 10 ms each, an event
  every 10 ms so nearly every snapshot is encoded anew) against 1 (segments alternate), and the
  same polling of the bare handler (what 4 clients cost any server on this machine); hivekit's
  CPU meanwhile; and, for comparison,
  4 clients of one process asking all at once right after an event, against hivekit and against
  the bare handler (what 4 clients cost any server: 4 writes of the snapshot, 4 reads); and
  what a ``POST /api/messages`` takes while 4 clients poll nonstop against while none does;
* on the ``nixos_container`` backend against the stand-ins: how many stand-in programs run per
  snapshot (none may: the status comes from one ``systemctl list-units`` per interval).

The clients are this process (asyncio, :mod:`bench.wire`: httpx costs more than the servers).

Run the floor alone: ``python -m bench.state SOCKET BODY_FILE``; one polling client:
``python -m bench.state --poll SOCKET COUNT``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.broker import cpu_seconds
from bench.common import Result, load_average, percentile, ratio_range, short_tmp
from bench.wire import Conn

ROOT = Path(__file__).resolve().parents[1]


def populate(state_dir: Path, agents: int, approvals: int, messages: int,
             nixos: Path | None = None) -> None:
    """Fill a stopped hive's store and disk directly: what ``agents`` agents and months of
    history leave behind (``nixos``: the stand-ins' host, each agent's container running)."""
    from hivekit.store import Store

    now = time.time()
    store = Store(state_dir / "hive.db")
    conn = store.conn
    fake = state_dir / "fake"
    fake.mkdir(parents=True, exist_ok=True)
    units = {}
    with conn:
        for i in range(agents):
            name = f"a{i}"
            conn.execute("INSERT OR IGNORE INTO agents(name, wanted, created_at) VALUES (?,?,?)",
                         (name, "running", now))
            refs = state_dir / "applied" / name / ".git" / "refs" / "heads"
            refs.mkdir(parents=True, exist_ok=True)
            (refs / "main").write_text(f"{i:040x}\n")
            (state_dir / "agents" / name / "config").mkdir(parents=True, exist_ok=True)
            (fake / f"{name}.json").write_text(json.dumps({"running": True}))
            if nixos is not None:
                conf = nixos / "etc" / "nixos-containers" / f"h-{name}.conf"
                conf.parent.mkdir(parents=True, exist_ok=True)
                conf.write_text("PRIVATE_NETWORK=0\nHOST_PORT=\nAUTO_START=0\n")
                units[f"container@h-{name}.service"] = {"state": "active"}
        conn.executemany(
            "INSERT INTO approvals(kind, agent, status, commit_ref, sha, description, tag,"
            " created_at, resolved_at) VALUES ('apply', ?, 'approved', 'HEAD', ?, 'x', ?, ?, ?)",
            [(f"a{i % max(agents, 1)}", f"{i:040x}", f"deployed/{i}", now, now)
             for i in range(approvals)])
        conn.executemany(
            "INSERT INTO messages(sender, recipient, body, created_at, acked_at)"
            " VALUES ('operator', ?, 'hello there', ?, ?)",
            [(f"a{i % max(agents, 1)}", now, now) for i in range(messages)])
    store.close()
    if nixos is not None:
        path = nixos / "systemd.json"
        data = json.loads(path.read_text()) if path.exists() else {"units": {},
                                                                    "loaded_dropins": {}}
        data["units"].update(units)
        path.write_text(json.dumps(data))


def start_hive(root: Path, agents: int, history: tuple[int, int], config: str = "",
               env: dict[str, str] | None = None, nixos: Path | None = None) -> Any:
    """A ``hivekit serve`` with ``agents`` agents and ``history`` (approvals, messages)."""
    from hivekit.testing import HiveProcess

    hive = HiveProcess(root, config or '[hive]\nbackend = "fake"\n', env=env)
    try:
        hive.start()  # creates the store; the manager comes up
        hive.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                                  for a in hive.get("/api/state")["agents"]), what="the manager")
        hive.stop()
        populate(hive.state_dir, agents, *history, nixos=nixos)
        hive.start(timeout=300)  # 900 agents' start on a machine at load 30 took over 30 s
        hive.wait_for(lambda: len(hive.get("/api/state")["agents"]) == agents + 1,
                      what=f"{agents} agents' rows")
    except BaseException:
        hive.stop()  # a daemon that failed to come up is not left running
        raise
    return hive


async def fetch_loop(path: str, count: int, latencies: list[float]) -> None:
    conn = await Conn(path).open()
    try:
        for _ in range(count):
            t = time.perf_counter()
            await conn.fetch("GET", "/api/state")
            latencies.append(time.perf_counter() - t)
    finally:
        await conn.close()


async def get_bytes(path: str) -> bytes:
    conn = await Conn(path).open()
    try:
        return await conn.fetch("GET", "/api/state")
    finally:
        await conn.close()


def alternate(paths: dict[str, str], rounds: int) -> dict[str, list[float]]:
    """One request to each server in turn, ``rounds`` times (after a warm-up)."""
    async def go() -> dict[str, list[float]]:
        conns = {k: await Conn(p).open() for k, p in paths.items()}
        times: dict[str, list[float]] = {k: [] for k in paths}
        try:
            for _ in range(3):
                for conn in conns.values():
                    await conn.fetch("GET", "/api/state")
            for _ in range(rounds):
                for key, conn in conns.items():
                    t = time.perf_counter()
                    await conn.fetch("GET", "/api/state")
                    times[key].append(time.perf_counter() - t)
        finally:
            for conn in conns.values():
                await conn.close()
        return times

    return asyncio.run(go())


def fanout(path: str, clients: int, rounds: int, post: bool = True) -> list[float]:
    """Dashboards that refetch after every event, all at once: each round a message is posted
    (one event: a new ``seq``; not to the bare handler, which has no events), then ``clients``
    ask for the snapshot at once, from this one process; the latency of each of them."""
    async def go() -> list[float]:
        poster = await Conn(path).open()
        conns = [await Conn(path).open() for _ in range(clients)]
        latencies: list[float] = []

        async def one(conn: Conn) -> None:
            t = time.perf_counter()
            await conn.fetch("GET", "/api/state")
            latencies.append(time.perf_counter() - t)

        try:
            for _ in range(rounds):
                if post:
                    await poster.request("POST", "/api/messages", {"to": "a1", "body": "ping"})
                await asyncio.gather(*(one(c) for c in conns))
        finally:
            for c in [poster, *conns]:
                await c.close()
        return latencies

    return asyncio.run(go())


#: How often a polling client asks (a dashboard refreshing fast), and a poster makes an event.
POLL_INTERVAL = 0.01


async def poll_loop(path: str, count: int, interval: float) -> list[float]:
    """``count`` snapshots, one every ``interval`` seconds after a random phase; latencies."""
    import random

    conn = await Conn(path).open()
    out: list[float] = []
    try:
        await conn.fetch("GET", "/api/state")  # warm
        await asyncio.sleep(random.random() * interval)
        for _ in range(count):
            t = time.perf_counter()
            await conn.fetch("GET", "/api/state")
            out.append(time.perf_counter() - t)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t)))
    finally:
        await conn.close()
    return out


def polling(path: str, clients: int, count: int, pid: int,
            events: bool = True) -> tuple[list[float], float]:
    """``clients`` dashboards polling, each a process of its own (as browsers are): a snapshot
    every :data:`POLL_INTERVAL` each, their phases random, while (with ``events``) this process
    makes an event as often, so nearly every snapshot is encoded anew. Returns every client's
    latencies and the CPU the server ``pid`` spent per second meanwhile."""
    procs = [subprocess.Popen([sys.executable, "-m", "bench.state", "--poll", path, str(count)],
                              stdout=subprocess.PIPE, cwd=ROOT) for _ in range(clients)]

    async def make_events() -> None:
        conn = await Conn(path).open()
        try:
            while any(p.poll() is None for p in procs):
                await conn.request("POST", "/api/messages", {"to": "a1", "body": "ping"})
                await asyncio.sleep(POLL_INTERVAL)
        finally:
            await conn.close()

    cpu, wall = cpu_seconds(pid), time.perf_counter()
    if events:
        asyncio.run(make_events())
    latencies = [x for p in procs for x in json.loads(p.communicate()[0])]
    return latencies, (cpu_seconds(pid) - cpu) / (time.perf_counter() - wall)


def posts(path: str, pollers: int, count: int) -> list[float]:
    """``POST /api/messages`` latencies (one every 20 ms) while ``pollers`` clients fetch the
    snapshot in closed loops."""
    async def go() -> list[float]:
        done = asyncio.Event()

        async def poll() -> None:
            conn = await Conn(path).open()
            try:
                while not done.is_set():
                    await conn.fetch("GET", "/api/state")
            finally:
                await conn.close()

        loops = [asyncio.create_task(poll()) for _ in range(pollers)]
        conn = await Conn(path).open()
        out: list[float] = []
        try:
            await asyncio.sleep(0.05)
            for _ in range(count):
                t = time.perf_counter()
                await conn.request("POST", "/api/messages", {"to": "a1", "body": "ping"})
                out.append(time.perf_counter() - t)
                await asyncio.sleep(0.02)
        finally:
            done.set()
            await asyncio.gather(*loops)
            await conn.close()
        return out

    return asyncio.run(go())


def serve_floor(socket: Path, body_file: Path) -> None:
    """The floor: Litestar on uvicorn, answering ``/api/state`` with fixed bytes."""
    import uvicorn
    from litestar import Litestar, MediaType, Response, get

    from hivekit.sockets import bind_unix

    body = body_file.read_bytes()

    @get("/api/state", signature_namespace={"Response": Response})
    async def bare() -> Response:
        return Response(content=body, media_type=MediaType.JSON)

    sock = bind_unix(socket)
    app = Litestar([bare], debug=False, logging_config=None, openapi_config=None)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None,
                                           log_level="warning", access_log=False))
    asyncio.run(server.serve(sockets=[sock]))


def nixos_calls(root: Path, agents: int, snapshots: int) -> dict[str, float]:
    """Stand-in invocations per snapshot and at start, on nixos_container with ``agents``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from nixos_standins import NIXOS_CONTAINER, SYSTEMCTL, Host, write_flake

    host = Host(root / "host")
    host.root.mkdir(parents=True)
    # A host flake for the manager, whose container the first start creates.
    flake = write_flake(root / "flake", root / "h" / "state" / "applied", ["manager"])
    config = f"""[hive]
backend = "nixos_container"

[nixos_container]
nixos_container = "{NIXOS_CONTAINER}"
systemctl = "{SYSTEMCTL}"
containers_conf_dir = "{host.conf_dir}"
systemd_run_dir = "{host.run_dir}"
flake = "{flake}"
status_interval = 3600
"""
    hive = start_hive(root / "h", agents, (0, 0), config,
                      env={"NIXOS_STANDIN_ROOT": str(host.root)}, nixos=host.root)
    try:
        at_start = len(host.calls())
        before = len(host.calls())
        for _ in range(snapshots):
            rows = hive.get("/api/state")["agents"]
        during = len(host.calls()) - before
        running = sum(r["status"] == "running" for r in rows)
    finally:
        hive.stop()
    polls = [c for c in host.calls() if c["argv"][:1] == ["list-units"]]
    return {"per_snapshot": during / snapshots, "at_start": at_start, "running": running,
            "polls": len(polls)}


def run(quick: bool = False) -> Result:
    agents = 90 if quick else 900
    big = (1_000, 10_000) if quick else (10_000, 100_000)
    small = (10, 100) if quick else (100, 1_000)
    rounds = 10 if quick else 100
    segments = 1 if quick else 3
    per_client = 5 if quick else 40
    result = Result(f"GET /api/state with {agents} agents (a real hivekit serve)")
    root = short_tmp()
    long_ = start_hive(root / "long", agents, big)
    try:
        short = start_hive(root / "short", agents, small)
    except BaseException:
        long_.stop()
        raise
    floor_proc = None
    try:
        body = asyncio.run(get_bytes(str(long_.socket)))
        (root / "body.json").write_bytes(body)
        floor_sock = root / "floor.sock"
        floor_proc = subprocess.Popen([sys.executable, "-m", "bench.state", str(floor_sock),
                                       str(root / "body.json")], cwd=ROOT)
        deadline = time.time() + 60
        while not floor_sock.exists():
            assert time.time() < deadline, "the floor server did not start"
            time.sleep(0.02)
        paths = {"long": str(long_.socket), "short": str(short.socket),
                 "bare": str(floor_sock)}
        times = alternate(paths, rounds)
        polled: dict[tuple[str, int], list[float]] = {(k, n): [] for k in ("long", "bare")
                                                      for n in (1, 4)}
        cpu: dict[int, list[float]] = {1: [], 4: []}
        pids = {"long": long_.proc.pid, "bare": floor_proc.pid}
        burst: dict[tuple[str, int], list[float]] = {(k, n): [] for k in ("long", "bare")
                                                     for n in (1, 4)}
        post_idle: list[float] = []
        post_busy: list[float] = []
        for _ in range(segments):  # 1 client, 4 clients, 1, 4... on the hive, then the floor
            for key in ("long", "bare"):
                for n in (1, 4):
                    latencies, share = polling(paths[key], n, per_client * 2, pids[key],
                                               events=key == "long")
                    polled[key, n] += latencies
                    if key == "long":
                        cpu[n].append(share)
            for key in ("long", "bare"):
                for n in (1, 4):
                    burst[key, n] += fanout(paths[key], n, per_client, post=key == "long")
            post_idle += posts(paths["long"], 0, per_client)
            post_busy += posts(paths["long"], 4, per_client)
    finally:
        if floor_proc is not None:
            floor_proc.terminate()
            floor_proc.wait(10)
        long_.stop()
        short.stop()

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    result.add(f"long history ({big[0]} approvals, {big[1]} messages) vs short",
               med(times["long"]), med(times["short"]), target=1.2)
    result.add("hivekit vs a bare handler with the same JSON", med(times["long"]),
               med(times["bare"]), target=2.0)
    result.add("4 dashboards polling vs 1 (an event every 10 ms)", med(polled["long", 4]),
               med(polled["long", 1]), target=1.5)
    result.add("  the same polling against the bare handler", med(polled["bare", 4]),
               med(polled["bare", 1]))
    result.add("  hivekit's CPU, 4 dashboards vs 1 (share of a core)", med(cpu[4]) * 100,
               med(cpu[1]) * 100, unit="%")
    result.add("  all 4 asking at once after an event vs 1", med(burst["long", 4]),
               med(burst["long", 1]))
    result.add("  the same against the bare handler", med(burst["bare", 4]),
               med(burst["bare", 1]))
    result.add("POST /api/messages while 4 clients poll nonstop vs none", med(post_busy),
               med(post_idle))
    result.add("  its p99, 4 clients polling vs none", percentile(post_busy, 99),
               percentile(post_idle, 99))
    result.add("payload size", len(body) / 1024, unit="KiB")
    nix_agents = 10 if quick else 100
    calls = nixos_calls(root / "nixos", nix_agents, 5 if quick else 20)
    result.add(f"nixos_container, {nix_agents} agents: stand-in programs run per snapshot",
               calls["per_snapshot"], unit="calls", target=0)
    result.add(f"nixos_container, {nix_agents} agents: stand-in programs run at start",
               calls["at_start"], unit="calls")
    result.add(f"nixos_container, {nix_agents} agents: rows shown running",
               calls["running"], unit="rows")
    result.notes.append(
        f"{rounds} requests to each server in turn, medians; per-round ratios vs bare "
        f"{ratio_range(times['long'], times['bare'])}, long vs short "
        f"{ratio_range(times['long'], times['short'])}; polling and bursts: {segments} "
        f"segment(s) of 1 and of 4 clients alternating, {per_client * 2} snapshots per polling "
        f"client, {per_client} bursts; load average at the end {load_average()}")
    return result


if __name__ == "__main__":
    if sys.argv[1] == "--poll":  # one polling dashboard: its latencies, as JSON
        print(json.dumps(asyncio.run(poll_loop(sys.argv[2], int(sys.argv[3]), POLL_INTERVAL))))
    else:
        serve_floor(Path(sys.argv[1]), Path(sys.argv[2]))
