"""The event bus: the one bridge from the synchronous core to the async surfaces.

``publish`` may be called from any thread. Each event is stamped with the next ``seq`` (monotonic
for the daemon's life) under a lock, kept in a short replay buffer (for ``Last-Event-ID``), and
handed to every subscriber without ever waiting on one: an async subscriber gets it through its
loop's ``call_soon_threadsafe`` (one call per loop and event, however many subscribers share the
loop), and a subscriber whose queue is full loses the event. Subscribers notice a loss as a gap in
``seq`` and resync from a snapshot (``GET /api/state`` reads the seq before the state).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import secrets
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator

from hivekit.events import Envelope, Event

#: Events a subscriber may fall behind by before it starts losing them.
QUEUE_SIZE = 1024
#: Recent events kept for subscribers that reconnect with Last-Event-ID.
REPLAY_SIZE = 2048


class Subscription:
    """An async subscriber: iterate it inside the loop it was created on."""

    def __init__(self, bus: EventBus, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self._bus = bus
        self.loop = loop
        self.queue: asyncio.Queue[Envelope | None] = asyncio.Queue(maxsize)
        #: Events this subscriber lost because it was too slow.
        self.dropped = 0
        self.closed = False

    def _deliver(self, env: Envelope | None) -> None:  # runs in self.loop
        if self.closed and env is not None:
            return
        try:
            self.queue.put_nowait(env)
        except asyncio.QueueFull:
            if env is None:  # closing must get through: make room for the sentinel
                self.queue.get_nowait()
                self.queue.put_nowait(None)
            else:
                self.dropped += 1

    async def __aiter__(self) -> AsyncIterator[Envelope]:
        try:
            while True:
                env = await self.queue.get()
                if env is None:
                    return
                yield env
        finally:
            self.close()

    async def get(self, timeout: float | None = None) -> Envelope | None:
        """The next event, or None when the bus closed (or ``timeout`` passed)."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._remove(self)


class SyncSubscription:
    """A thread's subscriber (tests, watchers): a bounded queue; ``next(sub, timeout)``."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self.queue: queue.Queue[Envelope | None] = queue.Queue(maxsize)
        self.dropped = 0

    def _deliver(self, env: Envelope | None) -> None:
        try:
            self.queue.put_nowait(env)
        except queue.Full:
            self.dropped += 1

    def get(self, timeout: float | None = None) -> Envelope | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self) -> Iterator[Envelope]:
        while (env := self.queue.get()) is not None:
            yield env

    def close(self) -> None:
        self._bus._remove(self)


class EventBus:
    def __init__(self, replay: int = REPLAY_SIZE) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._replay: deque[Envelope] = deque(maxlen=replay)
        self._async: dict[asyncio.AbstractEventLoop, list[Subscription]] = {}
        self._sync: list[SyncSubscription] = []
        self._closed = False
        #: Names this bus (this daemon's life): seqs restart from 1 with a new daemon, so a
        #: client that sees another ``boot`` reloads its snapshot instead of comparing seqs.
        self.boot = secrets.token_hex(8)

    @property
    def seq(self) -> int:
        """The seq of the last event published (0 before any)."""
        return self._seq

    def publish(self, event: Event) -> Envelope:
        """Stamp ``event`` with the next seq and hand it to every subscriber; never waits on one."""
        with self._lock:
            self._seq += 1
            env = Envelope(seq=self._seq, event=event)
            self._replay.append(env)
            loops = [(loop, list(subs)) for loop, subs in self._async.items()]
            syncs = list(self._sync)
            # Handing off under the lock keeps every subscriber's order equal to seq order.
            for loop, subs in loops:
                try:
                    loop.call_soon_threadsafe(_fan_out, subs, env)
                except RuntimeError:  # the loop closed under us; its subscribers are gone
                    self._async.pop(loop, None)
            for sub in syncs:
                sub._deliver(env)
        return env

    def since(self, seq: int) -> list[Envelope] | None:
        """Events after ``seq`` from the replay buffer, or None if some were already forgotten
        (or ``seq`` is from a previous daemon's life: larger than any seq published yet)."""
        with self._lock:
            if seq > self._seq:
                return None
            if seq == self._seq:
                return []
            if not self._replay or self._replay[0].seq > seq + 1:
                return None
            return [e for e in self._replay if e.seq > seq]

    def subscribe(self, maxsize: int = QUEUE_SIZE) -> Subscription:
        """An async subscription on the running loop; it sees events published from now on."""
        loop = asyncio.get_running_loop()
        sub = Subscription(self, loop, maxsize)
        with self._lock:
            if self._closed:
                sub._deliver(None)
            else:
                self._async.setdefault(loop, []).append(sub)
        return sub

    def subscribe_sync(self, maxsize: int = QUEUE_SIZE) -> SyncSubscription:
        sub = SyncSubscription(self, maxsize)
        with self._lock:
            self._sync.append(sub)
        return sub

    def _remove(self, sub: Subscription | SyncSubscription) -> None:
        with self._lock:
            if isinstance(sub, SyncSubscription):
                if sub in self._sync:
                    self._sync.remove(sub)
                return
            subs = self._async.get(sub.loop)
            if subs and sub in subs:
                subs.remove(sub)
                if not subs:
                    del self._async[sub.loop]

    def close(self) -> None:
        """End every subscription (streams finish; used on shutdown so they never block a stop)."""
        with self._lock:
            self._closed = True
            loops = [(loop, list(subs)) for loop, subs in self._async.items()]
            syncs = list(self._sync)
        for loop, subs in loops:
            with contextlib.suppress(RuntimeError):  # that loop is already gone
                loop.call_soon_threadsafe(_fan_out, subs, None)
        for sub in syncs:
            sub._deliver(None)


def _fan_out(subs: list[Subscription], env: Envelope | None) -> None:
    for sub in subs:
        sub._deliver(env)
