"""State at scale: ``GET /api/state`` with 900 agents and a long history, against the same with a
short history (the snapshot must not grow with history), and against a bare Litestar handler
returning the same JSON (what the framework and the socket cost anyway)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import Result, local_hive, median_time, short_tmp


def populate(hive: Any, agents: int, approvals: int, messages: int) -> None:
    """Fill the store directly: what 900 agents and months of history leave behind."""
    now = time.time()
    conn = hive.store.conn
    fake = hive.paths.state_dir / "fake"
    fake.mkdir(parents=True, exist_ok=True)
    with conn:
        for i in range(agents):
            name = f"a{i}"
            conn.execute("INSERT OR IGNORE INTO agents(name, wanted, created_at) VALUES (?,?,?)",
                         (name, "running", now))
            refs = hive.paths.applied_root / name / ".git" / "refs" / "heads"
            refs.mkdir(parents=True, exist_ok=True)
            (refs / "main").write_text(f"{i:040x}\n")
            (hive.paths.agents_root / name / "config").mkdir(parents=True, exist_ok=True)
            (fake / f"{name}.json").write_text(json.dumps({"running": True}))
        conn.executemany(
            "INSERT INTO approvals(kind, agent, status, commit_ref, sha, description, tag,"
            " created_at, resolved_at) VALUES ('apply', ?, 'approved', 'HEAD', ?, 'x', ?, ?, ?)",
            [(f"a{i % agents}", f"{i:040x}", f"deployed/{i}", now, now)
             for i in range(approvals)])
        conn.executemany(
            "INSERT INTO messages(sender, recipient, body, created_at, acked_at)"
            " VALUES ('operator', ?, 'hello there', ?, ?)",
            [(f"a{i % agents}", now, now) for i in range(messages)])


class Server:
    """A uvicorn server for ``app`` on a Unix socket, in a thread."""

    def __init__(self, app: Any, path: Path) -> None:
        import uvicorn

        from hivekit.sockets import bind_unix

        self.sock = bind_unix(path)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.path = path

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def fetcher(path: Path, url: str = "/api/state"):
    import httpx

    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://h")

    def fetch() -> None:
        resp = client.get(url)
        resp.raise_for_status()

    return fetch


def run(quick: bool = False) -> Result:
    from litestar import Litestar, get

    from hivekit.api import create_app
    from hivekit.state import snapshot

    agents = 90 if quick else 900
    big = (1_000, 10_000) if quick else (10_000, 100_000)
    small = (10, 100) if quick else (100, 1_000)
    repeat = 5 if quick else 30
    result = Result(f"GET /api/state with {agents} agents")
    timings = {}
    payload: dict[str, Any] = {}
    for label, (approvals, messages) in (("short", small), ("long", big)):
        root = short_tmp()
        hive = local_hive(root / label)
        populate(hive, agents, approvals, messages)
        server = Server(create_app(hive), root / f"{label}.sock")
        timings[label] = median_time(fetcher(server.path), repeat, warmup=2)
        payload = snapshot(hive)
        server.stop()
        os.environ.pop("HIVEKIT_CONFIG", None)

    @get("/api/state")
    async def bare() -> dict[str, Any]:
        return payload

    root = short_tmp()
    server = Server(Litestar([bare]), root / "bare.sock")
    t_bare = median_time(fetcher(server.path), repeat, warmup=2)
    server.stop()
    result.add(f"long history ({big[0]} approvals, {big[1]} messages) vs short",
               timings["long"], timings["short"], target=1.2)
    result.add("hivekit vs a bare handler with the same JSON", timings["long"], t_bare,
               target=2.0)
    result.add("payload size", len(json.dumps(payload)) / 1024, unit="KiB")
    return result
