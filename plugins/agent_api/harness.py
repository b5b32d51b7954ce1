"""``hivekit harness``: the reference agent, the loop an LLM harness runs, without the LLM.

It is what a new agent runs until its config names a real harness. It connects to its socket
(``$HIVE_SOCKET``), serves a small page on ``$HIVE_PORT`` (its identity, the messages it handled,
its notes), and answers every message it receives, acknowledging each once handled.

The loop, step by step, is the one an LLM harness (Claude Code with ``hivekit mcp``, or your own)
runs:

1. ``recv`` with a long-poll: wait for the next messages (the connection keeps the cursor).
2. For each message: a JSON body from ``system`` is a hive event (``approval_resolved``,
   ``question_asked``...); anything else is from the operator or a peer. *An LLM harness puts it in
   the model's context here and lets the model act through the tools (send, ask, answer...).*
   This one replies with an echo, and answers peers' questions with their first option.
3. ``ack`` what was handled: a harness that crashes before this gets the messages again.
"""

from __future__ import annotations

import html
import json
import logging
import os
import signal
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("hivekit.harness")

#: Replies start with this, and the harness never replies to a reply: two harnesses talking to
#: each other would otherwise echo forever.
REPLY_PREFIX = "re: "


class Socket:
    """Blocking HTTP to the agent's socket."""

    def __init__(self, path: str) -> None:
        import httpx

        self.path = path
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://hive",
                                 timeout=httpx.Timeout(10.0, read=None))

    def call(self, method: str, url: str, body: Any = None, **params: Any) -> Any:
        resp = self.http.request(method, url, json=body, params=params)
        data = resp.json()
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {url}: {data.get('error', resp.status_code)}")
        return data


class Harness:
    def __init__(self, socket: Socket, notes: Path) -> None:
        self.socket = socket
        self.notes = notes
        self.me: dict[str, Any] = {}
        self.handled: deque[dict[str, Any]] = deque(maxlen=50)
        self.stop = threading.Event()

    def handle(self, message: dict[str, Any]) -> None:
        sender, body = message["sender"], message["body"]
        if sender == "system":
            self.on_event(body)
        elif not body.startswith(REPLY_PREFIX):
            self.socket.call("POST", "/send", {
                "to": sender, "body": f"{REPLY_PREFIX}{self.me['name']} got your message: {body}"})
        self.handled.append(message)

    def on_event(self, body: str) -> None:
        try:
            event = json.loads(body)
        except ValueError:
            log.info("system: %s", body)  # a wake-up note
            return
        log.info("event %s", event.get("type"))
        if event.get("type") == "question_asked":
            options = event.get("options") or []
            answer = options[0] if options else f"{self.me['name']} has no opinion"
            self.socket.call("POST", "/answer", {"id": event["id"], "answer": answer})

    def run(self) -> None:
        self.me = self.socket.call("GET", "/whoami")
        cursor = 0
        while not self.stop.is_set():
            try:
                got = self.socket.call("GET", "/recv", after=cursor, wait=20)
            except Exception as exc:  # the hive restarting: keep trying, as a harness should
                log.warning("recv failed (%s); retrying", exc)
                self.stop.wait(1)
                continue
            cursor = got["cursor"]
            done = []
            for message in got["messages"]:
                try:
                    self.handle(message)
                    done.append(message["id"])
                except Exception as exc:
                    log.warning("handling message %s failed: %s", message["id"], exc)
            if done:
                self.socket.call("POST", "/ack", {"ids": done})

    def page(self) -> str:
        name = html.escape(self.me.get("name", "?"))
        rows = "".join(
            f"<li><b>{html.escape(m['sender'])}</b>: {html.escape(m['body'])}</li>"
            for m in reversed(self.handled)) or "<li>nothing yet</li>"
        notes = sorted(p.name for p in self.notes.glob("*") if p.is_file()) \
            if self.notes.is_dir() else []
        note_list = "".join(f"<li>{html.escape(n)}</li>" for n in notes) or "<li>none</li>"
        return (f"<!doctype html><meta charset=utf-8><title>{name}</title>"
                f"<h1>{name}</h1><p>reference harness of hivekit</p>"
                f"<h2>Messages handled</h2><ul>{rows}</ul><h2>Notes</h2><ul>{note_list}</ul>")


def serve_page(harness: Harness, port: int) -> ThreadingHTTPServer:
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                body, kind = json.dumps({"name": harness.me.get("name"),
                                         "handled": len(harness.handled)}), "application/json"
            else:
                body, kind = harness.page(), "text/html; charset=utf-8"
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(socket_path: str, port: int, notes: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="harness: %(message)s")
    harness = Harness(Socket(socket_path), notes)
    server = serve_page(harness, port)
    log.info("serving on 127.0.0.1:%s, socket %s", port, socket_path)

    def stop(*_: Any) -> None:
        harness.stop.set()
        server.shutdown()
        os._exit(0)  # the long-poll in flight would otherwise hold the exit up to its timeout

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not harness.stop.is_set():
        try:
            harness.run()
        except Exception as exc:  # e.g. the hive is not up yet
            log.warning("%s; retrying in 1s", exc)
            time.sleep(1)
