"""``GET /api/events`` against a real daemon: frame format, seq order, Last-Event-ID replay."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import httpx

from hivekit.testing import HiveProcess


def stream(hive: HiveProcess, frames: queue.Queue, last_id: str | None = None) -> None:
    """Read /api/events into ``frames`` as dicts of the frame's fields, in a daemon thread."""

    def read() -> None:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(hive.socket)),
                          timeout=None) as client, client.stream(
                "GET", "http://hive/api/events", headers=headers) as resp:
            frames.put({"content-type": resp.headers["content-type"],
                        "cache-control": resp.headers.get("cache-control")})
            fields: dict[str, Any] = {}
            for line in resp.iter_lines():
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif fields:
                    frames.put(fields)
                    fields = {}

    threading.Thread(target=read, daemon=True).start()


def take(frames: queue.Queue, n: int) -> list[dict[str, Any]]:
    return [frames.get(timeout=20) for _ in range(n)]


def test_frames_carry_seq_type_and_json_in_order(hive):
    frames: queue.Queue = queue.Queue()
    stream(hive, frames)
    head, hello = take(frames, 2)
    assert head == {"content-type": "text/event-stream; charset=utf-8",
                    "cache-control": "no-cache"}
    assert hello["event"] == "hello" and "id" not in hello
    start = json.loads(hello["data"])["seq"]
    for i in range(40):  # a burst: several events may share one write
        hive.post("/api/messages", {"to": "manager", "body": f"note {i}"})
    got = take(frames, 40)
    assert [int(f["id"]) for f in got] == list(range(start + 1, start + 41))
    assert {f["event"] for f in got} == {"message"}
    bodies = [json.loads(f["data"]) for f in got]
    assert [b["message"]["body"] for b in bodies] == [f"note {i}" for i in range(40)]
    assert all(b["type"] == "message" for b in bodies)


def test_last_event_id_replays_what_was_missed_after_the_hello(hive):
    frames: queue.Queue = queue.Queue()
    stream(hive, frames)
    _, hello = take(frames, 2)
    seen = json.loads(hello["data"])["seq"]
    hive.post("/api/messages", {"to": "manager", "body": "missed"})
    assert take(frames, 1)[0]["id"] == str(seen + 1)

    again: queue.Queue = queue.Queue()
    stream(hive, again, last_id=str(seen))
    _, hello2, replayed = take(again, 3)
    assert hello2["event"] == "hello"
    assert json.loads(hello2["data"])["seq"] == seen + 1
    assert replayed["id"] == str(seen + 1)
    assert json.loads(replayed["data"])["message"]["body"] == "missed"
    hive.post("/api/messages", {"to": "manager", "body": "live"})
    assert take(again, 1)[0]["id"] == str(seen + 2)  # nothing twice, nothing skipped
