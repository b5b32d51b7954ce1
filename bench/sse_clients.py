"""SSE subscribers for the events bench, in a process of their own (so they do not compete with
the publisher for its GIL).

``python -m bench.sse_clients SOCKET COUNT STUCK``: opens COUNT streams on ``/api/events`` (plus
one that stops reading after its ``hello`` when STUCK is 1) and talks to the bench over stdin and
stdout, one line each:

1. with a stuck stream: opens it first, prints ``stuck SEQ`` once it got its ``hello``, then reads
   nothing from it and waits for a line (the bench publishes until it overflows);
2. prints ``ready SEQ`` once every other stream got its ``hello`` (SEQ: the seq it announced);
3. reads ``last SEQ`` (the seq of the last event published), and every reading stream reads up to
   it;
4. with a stuck stream: when the others have everything, reads the stuck one again until it goes
   quiet, prints ``drained``, reads ``last SEQ`` once more (one marker event published after
   that, so a stream that lost events sees its seq jump) and reads the stuck one up to it, or to
   its end;
5. prints one line of JSON: what every stream received (see :func:`main`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from bench.wire import EventStream

#: Seconds a stream may stay silent before it counts as cut.
SILENCE = 60.0
#: Seconds without a frame after which a resumed stuck stream counts as drained.
QUIET = 1.0


async def read_line() -> str:
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Reader:
    """One stream: its hello's seq, then the seqs it received, up to a last seq told later."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.start = 0
        self.pending: list[tuple[str, str | None, str]] = []
        self.seqs: list[int] = []
        self.cut = False
        self.done_at = 0.0

    async def hello(self) -> int:
        frames = await self.stream.frames()
        if not frames or frames[0][0] != "hello":
            raise RuntimeError(f"expected a hello frame, got {frames!r}")
        self.start = json.loads(frames[0][2])["seq"]
        self.pending = frames[1:]
        return self.start

    def has(self, last: int) -> bool:
        return bool(self.seqs) and self.seqs[-1] >= last

    async def read_to(self, last: asyncio.Future[int]) -> None:
        """Read until the seq ``last`` resolves to has arrived (``done_at``: when it did). A
        reader may have everything before it learns ``last``: then it is cancelled (see
        :func:`main`)."""
        frames: list[tuple[str, str | None, str]] | None = self.pending
        self.pending = []
        try:
            while not self.cut:
                if frames:
                    self.seqs += [int(seq) for _event, seq, _data in frames if seq is not None]
                    self.done_at = time.monotonic()
                if last.done() and self.has(last.result()):
                    break
                try:
                    async with asyncio.timeout(SILENCE):
                        frames = await self.stream.frames()
                except TimeoutError:
                    frames = None
                if frames is None:
                    self.cut = True
        except asyncio.CancelledError:
            pass

    async def read_until_quiet(self, quiet: float) -> None:
        """Read until nothing arrives for ``quiet`` seconds (or the stream ends)."""
        frames: list[tuple[str, str | None, str]] | None = self.pending
        self.pending = []
        while True:
            for _event, seq, _data in frames or ():
                if seq is not None:
                    self.seqs.append(int(seq))
            try:
                async with asyncio.timeout(quiet):
                    frames = await self.stream.frames()
            except TimeoutError:
                return
            if frames is None:
                self.cut = True
                return

    def report(self, last: int) -> dict[str, Any]:
        expected = list(range(self.start + 1, last + 1))
        gaps = [(a, b) for a, b in zip(self.seqs, self.seqs[1:], strict=False) if b != a + 1]
        return {
            "received": len(self.seqs),
            "complete": self.seqs == expected,
            "in_order": all(b > a for a, b in zip(self.seqs, self.seqs[1:], strict=False)),
            "missing": len(set(expected) - set(self.seqs)),
            "gaps": gaps[:5],
            "cut": self.cut,
        }


async def open_reader(path: str) -> Reader:
    reader = Reader(await EventStream.open(path, "/api/events"))
    await reader.hello()
    return reader


async def main(path: str, count: int, stuck: bool) -> None:
    loop = asyncio.get_running_loop()
    slow = None
    if stuck:  # subscribed first: the bench fills it up before the others come
        slow = await open_reader(path)
        say(f"stuck {slow.start}")
        await read_line()
    readers = list(await asyncio.gather(*(open_reader(path) for _ in range(count))))
    say(f"ready {max(r.start for r in readers)}")
    last: asyncio.Future[int] = loop.create_future()
    tasks = [asyncio.create_task(r.read_to(last)) for r in readers]
    last.set_result(int((await read_line()).split()[1]))
    for reader, task in zip(readers, tasks, strict=True):
        if reader.has(last.result()):  # waiting for more than there will be
            task.cancel()
    await asyncio.gather(*tasks)
    report: dict[str, Any] = {
        "subscribers": [r.report(last.result()) for r in readers],
        "done_at": max(r.done_at for r in readers),
    }
    if slow is not None:
        # Read what the stuck stream has queued until it goes quiet: only then is there room
        # for the marker, and its seq shows whether anything was lost in between.
        await slow.read_until_quiet(QUIET)
        say("drained")
        marker: asyncio.Future[int] = loop.create_future()
        marker.set_result(int((await read_line()).split()[1]))
        await slow.read_to(marker)  # the marker is published after this starts: no race
        report["stuck"] = slow.report(marker.result())
        report["stuck"]["seqs_tail"] = slow.seqs[-3:]
    for r in [*readers, *([slow] if slow else [])]:
        r.stream.close()
    say(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"))
