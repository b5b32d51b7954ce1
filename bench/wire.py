"""A minimal HTTP/1.1 client over a Unix socket, for load generators.

httpx costs far more per request than the servers under test do, so a load generator built on it
measures mostly itself. This speaks just enough HTTP for the benches: keep-alive requests with a
``Content-Length`` or chunked response, and a server-sent event stream read frame by frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any


class HTTPError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class Conn:
    """One keep-alive connection to a Unix socket; one request at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Conn:
        self.reader, self.writer = await asyncio.open_unix_connection(self.path, limit=1 << 20)
        return self

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):  # ConnectionError included
                await self.writer.wait_closed()
            self.writer = None

    async def send_request(self, method: str, target: str, body: bytes | None = None) -> None:
        assert self.writer is not None
        head = f"{method} {target} HTTP/1.1\r\nhost: h\r\n"
        if body is not None:
            head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        await self.writer.drain()

    async def read_head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def read_chunk(self) -> bytes:
        """The next chunk of a chunked body (b"" at its end)."""
        assert self.reader is not None
        size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def fetch(self, method: str, target: str, body: bytes | None = None) -> bytes:
        """Send a request and return the answer's body as bytes (not decoded: a client that
        only needs the bytes costs the server's measurement nothing more).

        :raises HTTPError: the status is not 2xx.
        """
        assert self.reader is not None
        await self.send_request(method, target, body)
        status, headers = await self.read_head()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        else:
            parts = []
            while chunk := await self.read_chunk():
                parts.append(chunk)
            data = b"".join(parts)
        if not 200 <= status < 300:
            raise HTTPError(status, data)
        return data

    async def request(self, method: str, target: str, body: Any = None) -> Any:
        """Send a request (``body`` as JSON) and return the decoded JSON answer.

        :raises HTTPError: the status is not 2xx.
        """
        data = await self.fetch(method, target,
                                None if body is None else json.dumps(body).encode())
        return json.loads(data) if data else None


class EventStream:
    """A server-sent event stream on a raw non-blocking socket.

    Nothing is read from the socket except inside :meth:`frames`, so a stream that is not read is
    a client that stopped reading: the server's writes back up as they would.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.raw = b""  # bytes off the socket, not yet de-chunked
        self.body = b""  # de-chunked, not yet split into frames
        self.ended = False

    @classmethod
    async def open(cls, path: str, target: str) -> EventStream:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, path)
        await loop.sock_sendall(sock, f"GET {target} HTTP/1.1\r\nhost: h\r\n\r\n".encode())
        stream = cls(sock)
        while b"\r\n\r\n" not in stream.raw:
            await stream._fill()
        head, stream.raw = stream.raw.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        chunked = any(line.lower().replace(" ", "") == "transfer-encoding:chunked"
                      for line in lines)
        if status != 200 or not chunked:
            sock.close()
            raise HTTPError(status, b"expected a chunked event stream")
        return stream

    async def _fill(self) -> None:
        data = await asyncio.get_running_loop().sock_recv(self.sock, 1 << 16)
        if not data:
            raise ConnectionError("the server closed the stream")
        self.raw += data

    def _dechunk(self) -> None:
        raw, pos, parts = self.raw, 0, []
        while not self.ended:
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(raw[pos:eol].split(b";")[0], 16)
            end = eol + 2 + size + 2
            if len(raw) < end:
                break
            if size == 0:
                self.ended = True
            parts.append(raw[eol + 2:end - 2])
            pos = end
        self.raw = raw[pos:]
        self.body += b"".join(parts)

    async def frames(self) -> list[tuple[str, str | None, str]] | None:
        """Every complete frame received, ``(event, id, data)``, waiting for one if there are
        none; None when the stream ended (or the server cut it)."""
        while True:
            self._dechunk()  # what came with the last read (the head's, too) first
            if b"\r\n\r\n" in self.body:
                *complete, self.body = self.body.split(b"\r\n\r\n")
                found = [f for f in map(_parse_frame, complete) if f is not None]
                if found:
                    return found
            if self.ended:
                return None
            try:
                await self._fill()
            except OSError:  # ConnectionError included
                return None

    def close(self) -> None:
        self.sock.close()


def _parse_frame(frame: bytes) -> tuple[str, str | None, str] | None:
    fields: dict[str, str] = {}
    for line in frame.decode().split("\r\n"):
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value
    if "data" not in fields and "event" not in fields:
        return None  # a comment or keep-alive
    return fields.get("event", "message"), fields.get("id"), fields.get("data", "")
