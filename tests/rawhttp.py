"""HTTP over a Unix socket with the standard library, sending bytes exactly as given (the
boundary tests send bad JSON on purpose; no client library may tidy it first)."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any


class UnixConnection(http.client.HTTPConnection):
    """An ``HTTPConnection`` to the Unix socket at ``path``."""

    def __init__(self, path: Path, timeout: float = 60) -> None:
        super().__init__("hive", timeout=timeout)
        self.path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def call(sock: Path, method: str, target: str, body: Any = None) -> tuple[int, str]:
    """One request with ``body`` as JSON; the status and the answer's text."""
    conn = UnixConnection(sock)
    try:
        conn.request(method, target, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()
