"""A uvicorn server for a hive: quiet when idle, prompt to stop.

uvicorn's own main loop wakes ten times a second to see whether it should stop (and once a
second to renew its ``date`` header). A hive runs three such servers (the admin socket, the
dashboard, the agents' sockets) for as long as it lives, mostly idle: those wake-ups were
most of an idle daemon's CPU. :class:`QuietServer` renews the header once a second and
otherwise sleeps until it is told to stop, which it notices at once, from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

#: Seconds between two renewals of the ``date`` header (uvicorn's own rate).
TICK = 1.0


class QuietServer(uvicorn.Server):
    """``uvicorn.Server`` that wakes once a second when idle, not ten times.

    Use it as uvicorn's: ``await server.serve(sockets=[...])`` in a thread and loop of your own;
    setting ``server.should_exit = True`` (from any thread) makes it stop at once, as uvicorn's
    own signal handling does.
    """

    _wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
    _exit = False

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit = value
        if value and self._wake is not None:
            loop, event = self._wake
            with contextlib.suppress(RuntimeError):  # the loop is already closed: it ended
                loop.call_soon_threadsafe(event.set)

    async def main_loop(self) -> None:
        # The event before the first look: a stop asked for after the look still wakes us.
        self._wake = (asyncio.get_running_loop(), asyncio.Event())
        counter = 0
        while not await self.on_tick(counter):
            # on_tick renews the header when counter % 10 == 0: every tick here is a second.
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake[1].wait(), TICK)
