"""The broker: persistent per-agent inboxes with acknowledged delivery.

Senders are agents (through their sockets), the operator, and ``system`` (helper events,
wake-ups). Every message is stored in the recipient's inbox (the store's ``messages`` table)
before anyone hears of it, and announced on the bus as a ``message`` dashboard event.

What a receiver may rely on:

* A message stays in its recipient's inbox, unacknowledged, until the recipient acknowledges it
  (:func:`ack`). Nothing handed out is lost when the receiver crashes before acknowledging.
* :func:`receive` hands out unacknowledged messages with an id above the caller's ``after``
  cursor, oldest first, and returns the cursor to pass next time (the last id handed out). The
  cursor belongs to the receiving *connection* (the MCP bridge, a harness' loop): within one, a
  message is handed out once; a new connection starts from 0, that is from the oldest
  unacknowledged message, so whatever was handed out but not acknowledged before a crash or a
  reconnect is handed out again.
* Ids grow in the order messages were stored (SQLite allocates them under its single write
  lock), so a cursor never skips a message that was still being written.
* With ``wait`` > 0, a receive that finds nothing blocks until a message arrives (the
  :class:`~hivekit.doorbell.Doorbell` wakes it), ``wait`` seconds pass, or the hive stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from attrs import field, frozen

from hivekit.errors import BadRequest, NotFound
from hivekit.hive import OPERATOR
from hivekit.names import MAX_ID, check_name
from hivekit.records import Message

if TYPE_CHECKING:
    from hivekit.hive import Hive

#: The largest message body, in bytes (UTF-8).
MAX_BODY = 64 * 1024
#: The most messages one receive hands out.
MAX_BATCH = 100
#: The longest a receive may wait, in seconds (longer waits are cut to this).
MAX_WAIT = 300.0
#: The most ids one ack takes.
MAX_ACK = 1000


@frozen
class Delivery:
    """What a receive hands out: messages oldest first, and the cursor to pass next time."""

    messages: list[Message]
    #: The id of the last message handed out (or the ``after`` given, when none was).
    cursor: int


@frozen
class BroadcastResult:
    """Who a broadcast reached, and why it did not reach the others."""

    #: The agents whose inbox got the message, each with the message's id there.
    sent: dict[str, int] = field(factory=dict)
    #: Agent name → the reason its delivery failed.
    failed: dict[str, str] = field(factory=dict)


def check_body(body: str) -> str:
    if not body.strip():
        raise BadRequest("body must be a non-empty string")
    if len(body.encode()) > MAX_BODY:
        raise BadRequest(f"body is too long ({len(body.encode())} bytes; the limit is "
                         f"{MAX_BODY})")
    return body


def send(hive: Hive, sender: str, to: str, body: str) -> Message:
    """Put ``body`` into agent ``to``'s inbox from ``sender``.

    :raises NotFound: ``to`` is not a registered agent (nothing is stored).
    :raises BadRequest: ``to`` is not a valid name, or the body is empty or too long.
    """
    recipient = check_name(to)
    body = check_body(body)
    if recipient == OPERATOR:
        # The operator's inbox: agents' replies, shown on the dashboard and by `inbox operator`.
        return hive.send(sender, recipient, body)
    if not hive.store.has_agent(recipient):
        known = ", ".join(hive.store.agent_names()) or "none"
        raise NotFound(f"no agent named {recipient!r} to send to (agents: {known})")
    return hive.send(sender, recipient, body)


def broadcast(hive: Hive, sender: str, body: str) -> BroadcastResult:
    """Send ``body`` to every registered agent but the sender, with ``[hive] broadcast_hint``
    appended (by default hive-c0re's: "⚠️ _hint: this was a broadcast and may not need any
    action from you_").

    The manager is a recipient (unless it sent it): it coordinates the hive, so what one agent
    tells every other, or the operator tells every agent, concerns it at least as much, and the
    hint says it may need no action. The operator (``sender = "operator"``) reaches every agent.
    A bad body refuses the whole broadcast; a delivery that fails is reported per agent and
    does not stop the others.
    """
    text = check_body(body) + hive.config.hive.broadcast_hint
    result = BroadcastResult()
    for name in hive.agent_names():
        if name == sender:
            continue
        try:
            result.sent[name] = hive.send(sender, name, text).id
        except Exception as exc:
            result.failed[name] = f"{type(exc).__name__}: {exc}"
    return result


def _limits(after: int, limit: int, wait: float) -> tuple[int, int, float]:
    if not 0 <= after <= MAX_ID:
        raise BadRequest(f"after must be 0 or a message id, got {after}")
    if not 1 <= limit <= MAX_BATCH:
        raise BadRequest(f"limit must be between 1 and {MAX_BATCH}, got {limit}")
    if not wait >= 0:  # also refuses NaN
        raise BadRequest(f"wait must be 0 or more seconds, got {wait}")
    return after, limit, min(wait, MAX_WAIT)


def _delivery(messages: list[Message], after: int) -> Delivery:
    return Delivery(messages=messages, cursor=messages[-1].id if messages else after)


def receive(hive: Hive, agent: str, *, after: int = 0, limit: int = MAX_BATCH,
            wait: float = 0.0) -> Delivery:
    """``agent``'s unacknowledged messages after ``after``, waiting up to ``wait`` seconds for
    one if there are none. Blocks the calling thread; servers use :func:`receive_async`."""
    after_i, limit_i, wait_f = _limits(after, limit, wait)
    rung = threading.Event()
    unlisten = hive.doorbell.listen(agent, rung.set)
    try:
        deadline = time.monotonic() + wait_f
        while True:
            rung.clear()  # before looking: a message stored after the look still wakes us
            found = hive.store.inbox(agent, unacked_only=True, after=after_i, limit=limit_i)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0 or hive.doorbell.closed or hive.stopping.is_set():
                return _delivery(found, after_i)
            rung.wait(remaining)
    finally:
        unlisten()


async def receive_async(hive: Hive, agent: str, *, after: int = 0,
                        limit: int = MAX_BATCH, wait: float = 0.0,
                        stopped: Callable[[], bool] | None = None) -> Delivery:
    """:func:`receive` for a coroutine: the wait occupies no thread. ``stopped()`` returning
    True (checked whenever the agent's doorbell rings) ends the wait early, as closing the
    doorbell does.

    The inbox is read on the loop's own thread: a read never waits for a writer (the store is
    in WAL mode, readers see the last commit), and it takes well under a millisecond, less than
    handing it to a worker thread and back (two of a round trip's four thread hops, measured
    in the broker bench)."""
    after_i, limit_i, wait_f = _limits(after, limit, wait)
    loop = asyncio.get_running_loop()
    rung = asyncio.Event()

    def ring() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(rung.set)

    unlisten = hive.doorbell.listen(agent, ring)
    try:
        deadline = loop.time() + wait_f
        while True:
            rung.clear()
            found = hive.store.inbox(agent, unacked_only=True, after=after_i, limit=limit_i)
            remaining = deadline - loop.time()
            if (found or remaining <= 0 or hive.doorbell.closed or hive.stopping.is_set()
                    or (stopped is not None and stopped())):
                return _delivery(found, after_i)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rung.wait(), remaining)
    finally:
        unlisten()


def ack(hive: Hive, agent: str, ids: list[int]) -> int:
    """Retire ``agent``'s messages ``ids``; returns how many were newly acknowledged.

    Ids that are not ``agent``'s, or were already acknowledged, are ignored (acking twice is
    harmless), so a receiver may simply ack everything it handled.
    """
    if not all(0 < i <= MAX_ID for i in ids):
        raise BadRequest(f"ids must be message ids (1 to {MAX_ID})")
    if len(ids) > MAX_ACK:
        raise BadRequest(f"too many ids ({len(ids)}; at most {MAX_ACK} per ack)")
    return hive.store.ack(agent, ids) if ids else 0

