"""The CLI's side of the admin socket: HTTP over a Unix socket, errors as operator messages."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from hivekit.errors import HiveError


class NoDaemon(HiveError):
    status = 503


class ApiError(HiveError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """Calls the daemon's API at ``socket``. No timeout on reads: a build may take many minutes."""

    def __init__(self, socket: Path) -> None:
        self.socket = Path(socket)
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)),
                                  base_url="http://hive",
                                  timeout=httpx.Timeout(10.0, read=None))

    def _lost(self, exc: Exception) -> ApiError:
        return ApiError(f"lost the connection to the hive at {self.socket} ({exc}); if the "
                        "daemon stopped, it finishes interrupted work when it starts again "
                        "(`hivekit approvals --all` shows the outcome)", 0)

    def _no_daemon(self) -> NoDaemon:
        return NoDaemon(f"no hive running at {self.socket}; start one with `hivekit serve`")

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        params = {k: v for k, v in params.items() if v is not None}
        try:
            resp = self._http.request(method, path, json=body, params=params)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
            raise self._no_daemon() from None
        except httpx.HTTPError as exc:
            raise self._lost(exc) from None
        try:
            data = resp.json()
        except ValueError:
            data = {"error": resp.text}
        if resp.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            if not isinstance(message, str):  # an answer of another shape: say what came
                message = None
            raise ApiError(message or f"HTTP {resp.status_code}", resp.status_code)
        return data

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, **params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body)

    def lines(self, path: str, **params: Any) -> Iterator[str]:
        """Yield the lines of a streamed ``text/plain`` answer (``GET …/logs?follow=true``)."""
        params = {k: v for k, v in params.items() if v is not None}
        try:
            with self._http.stream("GET", path, params=params) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    try:
                        message = resp.json().get("error")
                    except ValueError:
                        message = resp.text
                    raise ApiError(message or f"HTTP {resp.status_code}", resp.status_code)
                yield from resp.iter_lines()
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
            raise self._no_daemon() from None
        except httpx.HTTPError as exc:
            raise self._lost(exc) from None

    def events(self, on_ready: Callable[[], None] | None = None) -> Iterator[tuple[str, Any]]:
        """Yield ``(type, data)`` from ``/api/events``; ``on_ready`` runs once it is subscribed."""
        try:
            with self._http.stream("GET", "/api/events") as resp:
                kind, data = None, []
                for line in resp.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and kind:
                        payload = json.loads("\n".join(data)) if data else None
                        if kind == "hello" and on_ready:
                            on_ready()
                        yield kind, payload
                        kind, data = None, []
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
            raise self._no_daemon() from None
        except httpx.HTTPError as exc:
            raise self._lost(exc) from None

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
