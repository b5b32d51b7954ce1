"""The doorbell: wakes whoever waits for an inbox when a message lands in it.

:meth:`hivekit.hive.Hive.send` rings it for the recipient after the message is stored, so a
``recv`` long-poll (a thread or a coroutine, see :mod:`hivekit.broker`) wakes at once instead of
polling the store. Closing it (the daemon is stopping) wakes every waiter for good.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("hivekit.broker")


class Doorbell:
    """Per-inbox wake-up callbacks. Thread-safe; callbacks run on the ringing thread and must
    not block (set an event, schedule onto a loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran: waiters should return what they have."""
        return self._closed

    def listen(self, inbox: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever ``inbox`` gets a message; returns the function that stops it.

        On a closed doorbell the callback is called once at once.
        """
        with self._lock:
            closed = self._closed
            if not closed:
                self._listeners.setdefault(inbox, []).append(callback)
        if closed:
            _call(callback)

        def stop() -> None:
            with self._lock:
                listeners = self._listeners.get(inbox)
                if listeners and callback in listeners:
                    listeners.remove(callback)
                    if not listeners:
                        del self._listeners[inbox]

        return stop

    def listening(self, inbox: str) -> int:
        """How many are waiting on ``inbox`` right now (for diagnostics and tests)."""
        with self._lock:
            return len(self._listeners.get(inbox, ()))

    def ring(self, inbox: str) -> None:
        """Wake everyone listening on ``inbox``."""
        with self._lock:
            listeners = list(self._listeners.get(inbox, ()))
        for callback in listeners:
            _call(callback)

    def close(self) -> None:
        """Wake every listener of every inbox, now and from now on (the daemon is stopping)."""
        with self._lock:
            self._closed = True
            listeners = [cb for cbs in self._listeners.values() for cb in cbs]
        for callback in listeners:
            _call(callback)


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # a waiter's broken callback must not break the sender
        log.exception("doorbell callback failed (ignored)")
