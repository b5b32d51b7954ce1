"""The event bus: the one bridge from the synchronous core to the async surfaces.

``publish`` may be called from any thread. Each event is stamped with the next ``seq`` (monotonic
for the daemon's life) under a lock, kept in a short replay buffer (for ``Last-Event-ID``), and
handed to every subscriber without ever waiting on one: async subscribers get it through their
loop's ``call_soon_threadsafe``, at most one pending per loop however many subscribers share it
and however many events are published meanwhile (each hand-off brings every event published
since the last, as one batch for every subscriber), and a subscriber whose queue is full loses
the event. Subscribers notice a loss as a gap in
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

#: Events a subscriber may fall behind by before it starts losing them. A subscriber that keeps
#: reading may still be a whole burst behind: what is published while its loop is busy arrives
#: in one hand-off (2,000 events to 500 SSE subscribers lost ~600 each at 1,024; see bench/).
QUEUE_SIZE = 4096
#: Recent events kept for subscribers that reconnect with Last-Event-ID.
REPLAY_SIZE = 2048


class Subscription:
    """An async subscriber: iterate it inside the loop it was created on.

    Its events arrive in batches (one per hand-off from the publishing threads, the same list
    object for every subscriber on the loop), queued up to ``maxsize`` events; what does not fit
    is lost and counted in :attr:`dropped`.
    """

    def __init__(self, bus: EventBus, loop: asyncio.AbstractEventLoop, maxsize: int,
                 start: int) -> None:
        self._bus = bus
        self.loop = loop
        self.maxsize = maxsize
        #: The seq when it subscribed: it gets the events after that one.
        self.start = start
        self._batches: deque[list[Envelope]] = deque()
        self._offset = 0  # events of _batches[0] already taken
        self._count = 0  # events queued
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        #: Events this subscriber lost because it was too slow.
        self.dropped = 0
        self.closed = False

    def _deliver(self, batch: list[Envelope]) -> None:  # runs in self.loop
        if self.closed or self._ended:
            return
        if batch[0].seq <= self.start:  # published before it subscribed, handed off after
            batch = [env for env in batch if env.seq > self.start]
            if not batch:
                return
        room = self.maxsize - self._count
        if len(batch) > room:
            self.dropped += len(batch) - max(room, 0)
            if room <= 0:
                return
            batch = batch[:room]
        self._batches.append(batch)
        self._count += len(batch)
        self._wake()

    def _end(self) -> None:  # runs in self.loop: the bus closed
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _take(self, limit: int) -> list[Envelope]:
        out: list[Envelope] = []
        while self._batches and len(out) < limit:
            head = self._batches[0]
            part = head[self._offset:self._offset + limit - len(out)]
            out += part
            self._offset += len(part)
            if self._offset >= len(head):
                self._batches.popleft()
                self._offset = 0
        self._count -= len(out)
        return out

    async def _wait(self, timeout: float | None = None) -> bool:
        """Until an event is queued or the bus closed (True), or ``timeout`` passed (False)."""
        while not self._count and not self._ended:
            self._waiter = self.loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except TimeoutError:
                return False
            finally:
                self._waiter = None
        return True

    async def batches(self, limit: int = 512) -> AsyncIterator[list[Envelope]]:
        """Like iterating, but each step yields every event already queued (at most ``limit``,
        at least one), oldest first: a server writes a burst in one go instead of one write per
        event. Ends when the bus closes (after what was queued)."""
        try:
            while await self._wait() and self._count:
                yield self._take(limit)
        finally:
            self.close()

    async def __aiter__(self) -> AsyncIterator[Envelope]:
        try:
            while await self._wait() and self._count:
                for env in self._take(512):
                    yield env
        finally:
            self.close()

    async def get(self, timeout: float | None = None) -> Envelope | None:
        """The next event, or None when the bus closed (or ``timeout`` passed)."""
        if not await self._wait(timeout) or not self._count:
            return None
        return self._take(1)[0]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._remove(self)


class _Loop:
    """The async subscribers on one event loop, and the events published but not yet handed to
    them (one ``call_soon_threadsafe`` hands off everything published since the last one)."""

    __slots__ = ("loop", "pending", "scheduled", "subs")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.subs: list[Subscription] = []
        self.pending: list[Envelope] = []
        self.scheduled = False


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
        self._async: dict[asyncio.AbstractEventLoop, _Loop] = {}
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
            # Queued and handed off under the lock: every subscriber's order is seq order.
            for loop, fan in list(self._async.items()):
                fan.pending.append(env)
                if not fan.scheduled:
                    try:
                        loop.call_soon_threadsafe(self._hand_off, fan)
                        fan.scheduled = True
                    except RuntimeError:  # the loop closed under us; its subscribers are gone
                        self._async.pop(loop, None)
            for sub in self._sync:
                sub._deliver(env)
        return env

    def _hand_off(self, fan: _Loop) -> None:  # runs in fan.loop
        with self._lock:
            batch, fan.pending, fan.scheduled = fan.pending, [], False
            subs = list(fan.subs)
        if batch:
            for sub in subs:
                sub._deliver(batch)

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
        with self._lock:
            sub = Subscription(self, loop, maxsize, self._seq)
            if self._closed:
                sub._end()
            else:
                self._async.setdefault(loop, _Loop(loop)).subs.append(sub)
        return sub

    def subscriptions(self) -> list[Subscription]:
        """The async subscriptions open now (for diagnostics: ``dropped``, ``start``)."""
        with self._lock:
            return [sub for fan in self._async.values() for sub in fan.subs]

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
            fan = self._async.get(sub.loop)
            if fan and sub in fan.subs:
                fan.subs.remove(sub)
                if not fan.subs:
                    del self._async[sub.loop]

    def close(self) -> None:
        """End every subscription (streams finish; used on shutdown so they never block a stop)."""
        with self._lock:
            self._closed = True
            fans = list(self._async.values())
            syncs = list(self._sync)
        for fan in fans:
            with contextlib.suppress(RuntimeError):  # that loop is already gone
                # After any hand-off already scheduled: what was published first arrives first.
                fan.loop.call_soon_threadsafe(_end_all, fan)
        for sub in syncs:
            sub._deliver(None)


def _end_all(fan: _Loop) -> None:
    for sub in list(fan.subs):
        sub._end()
