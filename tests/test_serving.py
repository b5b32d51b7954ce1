"""hivekit.QuietServer: uvicorn's server without its ten wake-ups a second (idle CPU), stopping at
once when told from another thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn

from hivekit import QuietServer, bind_unix


async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


class Counting(QuietServer):
    ticks = 0

    async def on_tick(self, counter: int) -> bool:
        Counting.ticks += 1
        return await super().on_tick(counter)


def get(path) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


def test_it_serves_wakes_once_a_second_and_stops_at_once(short_tmp):
    sock = bind_unix(short_tmp / "s.sock")
    server = Counting(uvicorn.Config(app, lifespan="off", log_config=None))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        reply = get(short_tmp / "s.sock")
        assert reply.startswith(b"HTTP/1.1 200") and b"\r\n\r\n2\r\nok\r\n" in reply
        assert b"\r\ndate: " in reply.lower()  # the header the ticks keep current
        start = Counting.ticks
        time.sleep(2.5)
        # uvicorn's own main loop would have ticked 25 times by now.
        assert 1 <= Counting.ticks - start <= 4
    finally:
        asked = time.monotonic()
        server.should_exit = True  # from this thread, as a plugin's stop() does
        thread.join(10)
        sock.close()
    assert not thread.is_alive()
    assert time.monotonic() - asked < 0.9  # not left to the next tick
