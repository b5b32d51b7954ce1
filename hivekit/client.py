"""The CLI's side of the admin socket: HTTP/1.1 over a Unix socket, errors as operator messages.

Only the standard library's ``socket`` and ``json``: every ``hivekit`` command pays for what
this imports, and an HTTP client library (httpx imports its own CLI, rich and pygments) costs
more than the command's whole work. It speaks what the daemon's server (uvicorn) answers: one
request per connection, a body with ``Content-Length`` or ``Transfer-Encoding: chunked``, and
the ``/api/events`` stream read as it comes.
"""

from __future__ import annotations

import json
import queue
import socket as _socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hivekit.errors import HiveError

#: Seconds to wait for the daemon to accept the connection and to write the request. Reading
#: the answer has no timeout: a deploy may build for many minutes.
CONNECT_TIMEOUT = 10.0
#: The largest response head accepted (the daemon's are a few hundred bytes).
MAX_HEAD = 64 * 1024


class NoDaemon(HiveError):
    status = 503


class ApiError(HiveError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(Exception):
    """The answer is not the HTTP/1.1 this client understands."""


def _query_value(value: Any) -> str:
    if isinstance(value, bool):  # as the API reads booleans: true / false
        return "true" if value else "false"
    return str(value)


def _target(path: str, params: dict[str, Any]) -> str:
    if not params:
        return path
    from urllib.parse import urlencode

    return path + "?" + urlencode({k: _query_value(v) for k, v in params.items()})


class _Response:
    """One answer being read: status, headers, and its body (whole, or chunk by chunk)."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        head = self._read_until(b"\r\n\r\n", MAX_HEAD)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                self.headers[name.strip().lower()] = value.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the daemon closed the connection mid-answer")
        self.buffer += data

    def _read_until(self, marker: bytes, limit: int) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise ProtocolError("answer head too large")
            self._fill()
        out, self.buffer = self.buffer[:end], self.buffer[end + len(marker):]
        return out

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives (a chunked body chunk by chunk)."""
        if self.chunked:
            while True:
                size_line = self._read_until(b"\r\n", 1024)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size_line[:40]!r}") from None
                if size == 0:
                    return
                data = self._read_exactly(size + 2)
                yield data[:-2]
        elif "content-length" in self.headers:
            length = int(self.headers["content-length"])
            if length:
                yield self._read_exactly(length)
        else:  # the body runs to the end of the connection
            if self.buffer:
                yield self.buffer
                self.buffer = b""
            while data := self.sock.recv(65536):
                yield data

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def lines(self) -> Iterator[str]:
        """The body's lines as they arrive, without their line ends (a last line without one
        too)."""
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                yield raw.rstrip(b"\r").decode(errors="replace")
        if pending:
            yield pending.rstrip(b"\r").decode(errors="replace")


class Client:
    """Calls the daemon's API at ``socket``. No timeout on reads: a build may take many minutes."""

    def __init__(self, socket: Path) -> None:
        self.socket = Path(socket)

    def _lost(self, exc: Exception) -> ApiError:
        return ApiError(f"lost the connection to the hive at {self.socket} ({exc}); if the "
                        "daemon stopped, it finishes interrupted work when it starts again "
                        "(`hivekit approvals --all` shows the outcome)", 0)

    def _no_daemon(self) -> NoDaemon:
        return NoDaemon(f"no hive running at {self.socket}; start one with `hivekit serve`")

    def _send(self, method: str, target: str, body: bytes | None) -> tuple[_socket.socket,
                                                                           _Response]:
        """Connect, send the request, read the answer's head."""
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(str(self.socket))
            except (FileNotFoundError, ConnectionRefusedError):
                raise self._no_daemon() from None
            head = (f"{method} {target} HTTP/1.1\r\nHost: hive\r\nConnection: close\r\n"
                    "Accept: application/json\r\n")
            if body is not None or method not in ("GET", "HEAD"):
                payload = body or b""
                head += (f"Content-Type: application/json\r\nContent-Length: {len(payload)}"
                         "\r\n")
            sock.sendall(head.encode("latin-1") + b"\r\n" + (body or b""))
            sock.settimeout(None)
            return sock, _Response(sock)
        except HiveError:
            sock.close()
            raise
        except (OSError, ProtocolError, UnicodeError) as exc:
            sock.close()
            raise self._lost(exc) from None

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        params = {k: v for k, v in params.items() if v is not None}
        payload = None if body is None else json.dumps(body).encode()
        sock, resp = self._send(method, _target(path, params), payload)
        try:
            raw = resp.read()
        except (OSError, ProtocolError) as exc:
            raise self._lost(exc) from None
        finally:
            sock.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = {"error": raw.decode(errors="replace")}
        if resp.status >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            if not isinstance(message, str):  # an answer of another shape: say what came
                message = None
            raise ApiError(message or f"HTTP {resp.status}", resp.status)
        return data

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, **params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body)

    def lines(self, path: str, **params: Any) -> Iterator[str]:
        """Yield the lines of a streamed ``text/plain`` answer (``GET …/logs?follow=true``) as
        they arrive; an error answer raises :class:`ApiError` with the daemon's message."""
        params = {k: v for k, v in params.items() if v is not None}
        sock, resp = self._send("GET", _target(path, params), None)
        try:
            if resp.status >= 400:
                raw = resp.read()
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None
                message = data.get("error") if isinstance(data, dict) else None
                if not isinstance(message, str):
                    message = raw[:200].decode(errors="replace") or None
                raise ApiError(message or f"HTTP {resp.status}", resp.status)
            yield from resp.lines()
        except (OSError, ProtocolError) as exc:
            raise self._lost(exc) from None
        finally:
            sock.close()

    def events(self, on_ready: Callable[[], None] | None = None) -> Iterator[tuple[str, Any]]:
        """Yield ``(type, data)`` from ``/api/events``; ``on_ready`` runs once it is subscribed."""
        sock, resp = self._send("GET", "/api/events", None)
        try:
            if resp.status >= 400:
                data = resp.read()
                raise ApiError(f"HTTP {resp.status}: {data[:200].decode(errors='replace')}",
                               resp.status)
            kind, data_lines = None, []
            for line in resp.lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data_lines.append(line[5:].strip())
                elif line == "" and kind:
                    payload = json.loads("\n".join(data_lines)) if data_lines else None
                    if kind == "hello" and on_ready:
                        on_ready()
                    yield kind, payload
                    kind, data_lines = None, []
        except (OSError, ProtocolError) as exc:
            raise self._lost(exc) from None
        finally:
            sock.close()

    def watch(self, call: Callable[[], Any], on_event: Callable[[str, Any], bool],
              finished: Callable[[Any], bool] = lambda result: True) -> Any:
        """Run ``call`` (a POST) while following the event stream.

        ``on_event(type, data)`` sees every event from just before ``call`` starts until it
        returns True, or until ``call`` has returned and ``finished(result)`` says that result
        needs no more waiting (a spawn's approval returns ``running`` and ends later). Returns
        ``call``'s result; re-raises its error at once.
        """
        ready = threading.Event()
        frames: queue.Queue[tuple[str, Any] | BaseException | None] = queue.Queue()

        def read() -> None:
            try:
                for frame in self.events(on_ready=ready.set):
                    frames.put(frame)
            except BaseException as exc:  # handed to the caller's thread
                frames.put(exc)
            finally:
                ready.set()  # no stream to wait for (no daemon, say): the call says why
            frames.put(None)

        threading.Thread(target=read, daemon=True).start()
        ready.wait(10)
        outcome: dict[str, Any] = {}

        def run_call() -> None:
            try:
                outcome["result"] = call()
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=run_call, daemon=True)
        worker.start()
        while True:
            if "error" in outcome:
                raise outcome["error"]
            try:
                frame = frames.get(timeout=0.1)
            except queue.Empty:
                if "result" in outcome and finished(outcome["result"]):
                    break
                continue
            if isinstance(frame, BaseException):
                raise frame
            if frame is None or on_event(*frame):
                break
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("result")
