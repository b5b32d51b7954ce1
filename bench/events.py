"""Events: many SSE subscribers on ``/api/events``, a burst of events published from a worker
thread inside the daemon's process. Every reading subscriber must get every event in seq order;
a subscriber that stops reading may lose events but must be able to tell (its seq jumps, or its
stream is cut); and the publisher must never wait for a slow subscriber: the publish loop with
one stuck subscriber must take no longer than with none (target: <= 1.2 x).

The floor of the delivery: a bare Litestar app doing the same fan-out with nothing around it
(:class:`FloorFan`: a counter for the ids, each frame encoded once, one hand-off to the loop per
burst, one write per subscriber per burst; no replay, no records, no drop accounting), the same
2,000 events to the same 500 subscribers; rounds of the hive and of the floor alternate.

The hive and its API server run in this process (the publisher is a thread here, as the core's
workers are in the daemon); the subscribers are another process (:mod:`bench.sse_clients`).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import Result, Server, load_average, local_hive, ratio_range, short_tmp

#: Characters per published log line (about a line of a Nix build log).
LINE = 160


def subscriber_count(hive: Any) -> int:
    return len(hive.bus.subscriptions())


class FloorFan:
    """The floor's event fan-out (see the module docstring)."""

    def __init__(self) -> None:
        import asyncio

        self.lock = threading.Lock()
        self.seq = 0
        self.pending: list[bytes] = []
        self.scheduled = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subs: list[asyncio.Queue[bytes]] = []

    def publish(self, line: str) -> None:  # any thread
        with self.lock:
            self.seq += 1
            data = json.dumps({"type": "log", "agent": "bench", "line": line,
                               "stream": "stdout"}, separators=(",", ":"))
            self.pending.append(f"id: {self.seq}\r\nevent: log\r\ndata: {data}\r\n\r\n"
                                .encode())
            if not self.scheduled and self.loop is not None:
                self.loop.call_soon_threadsafe(self._hand_off)
                self.scheduled = True

    def _hand_off(self) -> None:  # the loop
        with self.lock:
            batch, self.pending, self.scheduled = b"".join(self.pending), [], False
            subs = list(self.subs)
        for queue in subs:
            queue.put_nowait(batch)

    def app(self) -> Any:
        import asyncio
        from collections.abc import AsyncIterator

        from litestar import Litestar, get
        from litestar.response import Stream

        @get("/api/events", signature_namespace={"Stream": Stream})
        async def events() -> Stream:
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            self.loop = asyncio.get_running_loop()
            with self.lock:
                self.subs.append(queue)
                seq = self.seq

            async def frames() -> AsyncIterator[bytes]:
                try:
                    yield f"event: hello\r\ndata: {json.dumps({'seq': seq})}\r\n\r\n".encode()
                    while True:
                        yield await queue.get()
                finally:
                    with self.lock:
                        self.subs.remove(queue)

            return Stream(frames(), media_type="text/event-stream")

        return Litestar([events], debug=False, logging_config=None, openapi_config=None)


def overflow(hive: Any, filler: str, limit: int = 100_000) -> int:
    """Publish until the only subscriber (the stuck one) drops events; returns how many."""
    from hivekit.events import LogLine

    subs = hive.bus.subscriptions()
    for n in range(1, limit + 1):
        hive.bus.publish(LogLine(agent="bench", line=f"fill {n:06d} {filler}"))
        if n % 50 == 0:
            time.sleep(0.005)  # let the server's loop hand them on (and back up)
            if any(s.dropped for s in subs):
                return n
    raise RuntimeError(f"the stuck subscriber still drops nothing after {limit} events")


def one_round(hive: Any, path: Path, subscribers: int, count: int,
              stuck: bool, floor: FloorFan | None = None) -> dict[str, Any]:
    """One burst of ``count`` events to ``subscribers`` readers (+ one stuck one); through
    ``floor`` instead of the hive when given."""
    from hivekit.events import LogLine

    def emit(line: str) -> None:
        if floor is not None:
            floor.publish(line)
        else:
            hive.bus.publish(LogLine(agent="bench", line=line))

    def last_seq() -> int:
        return floor.seq if floor is not None else hive.bus.seq

    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.sse_clients", str(path), str(subscribers),
         "1" if stuck else "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None

    def expect(word: str) -> str:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith(word):
            proc.kill()
            raise RuntimeError(f"SSE clients said {line!r}, expected {word!r}")
        return line

    filler = "x" * LINE
    prefill = 0
    try:
        if stuck:
            expect("stuck")
            prefill = overflow(hive, filler)
            proc.stdin.write("go\n")
            proc.stdin.flush()
        expect("ready")
        timing: dict[str, float] = {}

        def publish() -> None:
            timing["start"] = time.monotonic()
            t, cpu = time.perf_counter(), time.thread_time()
            for i in range(count):
                emit(f"{i:06d} {filler}")
            timing["publish"] = time.perf_counter() - t
            timing["publish_cpu"] = time.thread_time() - cpu

        worker = threading.Thread(target=publish, name="publisher")
        worker.start()
        worker.join()
        proc.stdin.write(f"last {last_seq()}\n")
        proc.stdin.flush()
        if stuck:
            expect("drained")
            hive.bus.publish(LogLine(agent="bench", line="marker"))
            proc.stdin.write(f"last {hive.bus.seq}\n")
            proc.stdin.flush()
        report = json.loads(expect("{"))
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report["publish"] = timing["publish"]
    report["publish_cpu"] = timing["publish_cpu"]
    report["prefill"] = prefill
    report["delivered"] = report["done_at"] - timing["start"]
    # The server notices closed streams a moment later; the next round starts without them.
    deadline = time.time() + 30
    while (len(floor.subs) if floor is not None else subscriber_count(hive)) and \
            time.time() < deadline:
        time.sleep(0.05)
    return report


def run(quick: bool = False) -> Result:
    from hivekit.api import create_app

    subscribers = 50 if quick else 500
    count = 200 if quick else 2000
    repeat = 1 if quick else 7
    result = Result(f"events: {count} events to {subscribers} SSE subscribers")
    root = short_tmp()
    hive = local_hive(root / "events")
    server = Server(create_app(hive), root / "api.sock")
    fan = FloorFan()
    floor_server = Server(fan.app(), root / "floor.sock")
    rounds: dict[str, list[dict[str, Any]]] = {"none": [], "stuck": [], "floor": []}
    try:
        for _ in range(repeat):  # alternate, so every mode sees the same machine
            for mode in rounds:
                if mode == "floor":
                    rounds[mode].append(one_round(hive, floor_server.path, subscribers, count,
                                                  stuck=False, floor=fan))
                else:
                    rounds[mode].append(one_round(hive, server.path, subscribers, count,
                                                  stuck=mode == "stuck"))
    finally:
        server.stop()
        floor_server.stop()
        hive.hook.shutdown(hive=hive)

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[mode])

    everyone = [s for mode in ("none", "stuck") for r in rounds[mode]
                for s in r["subscribers"]]
    result.add("publish loop, one stuck subscriber vs none", median("stuck", "publish"),
               median("none", "publish"), target=1.2)
    result.add("  publisher thread's CPU in it, one stuck vs none",
               median("stuck", "publish_cpu"), median("none", "publish_cpu"))
    result.add("publish to the last reader having every event", median("none", "delivered"),
               median("floor", "delivered"))
    floor_ok = all(s["complete"] for r in rounds["floor"] for s in r["subscribers"])
    result.add("floor: readers with every event in order", float(floor_ok), unit="all")
    result.add("  same, with one stuck subscriber", median("stuck", "delivered"))
    result.add("reading subscribers with every event in seq order",
               sum(s["complete"] for s in everyone), unit="subs")
    result.add("reading subscribers (all rounds)", len(everyone), unit="subs")
    result.add("events missed by reading subscribers", sum(s["missing"] for s in everyone),
               unit="events", target=0)
    result.add("subscribers that saw events out of order",
               sum(not s["in_order"] for s in everyone), unit="subs", target=0)
    stuck = [r["stuck"] for r in rounds["stuck"]]
    result.add("stuck subscriber: events received (median)",
               statistics.median(s["received"] for s in stuck), unit="events")
    result.add("stuck subscriber: events lost (median)",
               statistics.median(s["missing"] for s in stuck), unit="events")
    result.add("stuck subscriber: losses without a seq gap or a cut stream",
               sum(1 for s in stuck if s["missing"] and not (s["gaps"] or s["cut"])),
               unit="rounds", target=0)
    gapped = [s for s in stuck if s["gaps"]]
    if gapped:
        first = gapped[0]["gaps"][0]
        result.notes.append(f"stuck subscriber: its seq jumped in {len(gapped)} of {len(stuck)} "
                            f"round(s) (e.g. {first[0]} -> {first[1]}); cut in "
                            f"{sum(s['cut'] for s in stuck)}")
    result.notes.append("stuck subscriber: it overflowed after "
                        + ", ".join(str(r["prefill"]) for r in rounds["stuck"])
                        + " events published before the others subscribed and the timed burst")
    result.notes.append("publish loop (ms), none: " + ", ".join(
        f"{r['publish'] * 1000:.1f}" for r in rounds["none"]) + "; one stuck: " + ", ".join(
        f"{r['publish'] * 1000:.1f}" for r in rounds["stuck"]))
    result.notes.append("delivery vs the floor, per round: " + ratio_range(
        [r["delivered"] for r in rounds["none"]], [r["delivered"] for r in rounds["floor"]])
        + f"; load average at the end {load_average()}")
    result.notes.append(f"{LINE}-character log lines; {repeat} round(s) per mode, medians; "
                        "the stuck subscriber reads its hello, then nothing until the others "
                        "have every event; then a marker event shows it its gap")
    return result
