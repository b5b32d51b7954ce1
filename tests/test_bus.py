"""The event bus: seq order, non-blocking publish, slow subscribers drop and can tell."""

from __future__ import annotations

import asyncio
import threading

from hivekit.bus import EventBus
from hivekit.events import LogLine


def ev(i: int) -> LogLine:
    return LogLine(agent="a", line=str(i))


def test_seq_is_monotonic_across_threads():
    bus = EventBus()
    sub = bus.subscribe_sync(maxsize=10_000)
    threads = [threading.Thread(target=lambda: [bus.publish(ev(i)) for i in range(200)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [sub.get(1).seq for _ in range(800)]
    assert seqs == list(range(1, 801))
    assert bus.seq == 800


def test_async_subscribers_get_events_in_order_from_another_thread():
    bus = EventBus()

    async def main() -> list[int]:
        sub = bus.subscribe()
        publisher = threading.Thread(target=lambda: [bus.publish(ev(i)) for i in range(500)])
        publisher.start()
        got = []
        while len(got) < 500:
            env = await sub.get(5)
            assert env is not None
            got.append(env.seq)
        publisher.join()
        return got

    assert asyncio.run(main()) == list(range(1, 501))


def test_slow_subscriber_drops_and_sees_a_gap_without_blocking_the_publisher():
    bus = EventBus()

    async def main() -> tuple[list[int], list[int], int]:
        slow = bus.subscribe(maxsize=10)
        fast = bus.subscribe(maxsize=10_000)
        done = threading.Event()
        threading.Thread(target=lambda: ([bus.publish(ev(i)) for i in range(100)],
                                         done.set())).start()
        # The publisher finishes although the slow subscriber reads nothing.
        assert await asyncio.to_thread(done.wait, 10)
        await asyncio.sleep(0.1)
        fast_seqs = [(await fast.get(1)).seq for _ in range(100)]
        slow_seqs = []
        while (env := await slow.get(0.2)) is not None:
            slow_seqs.append(env.seq)
        return fast_seqs, slow_seqs, slow.dropped

    fast_seqs, slow_seqs, dropped = asyncio.run(main())
    assert fast_seqs == list(range(1, 101))
    assert slow_seqs == list(range(1, 11))  # what fitted; the rest is a detectable gap
    assert dropped == 90


def test_replay_since_and_forgotten_history():
    bus = EventBus(replay=5)
    for i in range(8):
        bus.publish(ev(i))
    assert [e.seq for e in bus.since(5)] == [6, 7, 8]
    assert bus.since(8) == []
    assert bus.since(1) is None  # seqs 2 and 3 are no longer kept: resync from a snapshot


def test_close_ends_async_streams():
    bus = EventBus()

    async def main() -> list[int]:
        sub = bus.subscribe()
        bus.publish(ev(1))
        threading.Timer(0.1, bus.close).start()
        return [env.seq async for env in sub]

    assert asyncio.run(main()) == [1]


def test_a_burst_arrives_as_batches_in_order_and_nothing_from_before_subscribing():
    bus = EventBus()

    async def main() -> tuple[list[list[int]], list[int]]:
        early = bus.subscribe()
        bus.publish(ev(0))  # handed off to this loop later, with what follows
        late = bus.subscribe()
        for i in range(1, 100):
            bus.publish(ev(i))
        batches = []
        async for batch in early.batches(limit=60):
            batches.append([env.seq for env in batch])
            if batch[-1].seq == 100:
                break
        return batches, [(await late.get(1)).seq for _ in range(99)]

    batches, late = asyncio.run(main())
    assert batches == [list(range(1, 61)), list(range(61, 101))]  # one hand-off, cut at limit
    assert late == list(range(2, 101))  # seq 1 was published before it subscribed


def test_a_burst_bigger_than_the_old_queue_reaches_a_reading_subscriber_whole():
    # What a busy loop hands off at once is a whole burst: the queue must hold one.
    bus = EventBus()

    async def main() -> tuple[list[int], int]:
        sub = bus.subscribe()
        publisher = threading.Thread(target=lambda: [bus.publish(ev(i)) for i in range(3000)])
        publisher.start()
        await asyncio.to_thread(publisher.join)
        got = [(await sub.get(1)).seq for _ in range(3000)]
        return got, sub.dropped

    got, dropped = asyncio.run(main())
    assert got == list(range(1, 3001))
    assert dropped == 0
