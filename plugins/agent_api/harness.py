"""``hivekit harness``: the reference agent, the loop an LLM harness runs, without the LLM.

It is what a new agent runs until its config names a real harness. It connects to its socket
(``$HIVE_SOCKET``), serves a small page on ``127.0.0.1:$HIVE_PORT`` (``HIVE_BIND`` to listen
elsewhere) until SIGTERM, and answers every message it receives, acknowledging each once handled:

* ``GET /``: who the agent is, the messages it handled, its notes (``$HIVE_NOTES``).
* ``GET /api/status``: ``{name, port, pid, socket, socket_present, notes, handled}`` as JSON.

Standard library and httpx only, so it runs wherever the hive's Python does.

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
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hivekit import events, helper_event

log = logging.getLogger("hivekit.harness")

#: Notes files larger than this are listed but not shown on the page.
MAX_NOTE_BYTES = 64 * 1024
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
        self.me: dict[str, Any] = {"name": os.environ.get("HIVE_LABEL", "?")}
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
        # Helper events are structured by hivekit's converter, as strictly as hivekit sends
        # them: a body that is not one is a note (a wake-up), never half-read.
        event = helper_event(body)
        if event is None:
            log.info("system: %s", body)
            return
        log.info("event %s", type(event).TYPE)
        match event:
            case events.QuestionAskedHelper(id=question_id, options=options):
                answer = options[0] if options else f"{self.me['name']} has no opinion"
                self.socket.call("POST", "/answer", {"id": question_id, "answer": answer})
            case _:
                pass

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

    def status(self) -> dict[str, Any]:
        sock = self.socket.path
        return {
            "name": self.me.get("name", "?"),
            "port": int(os.environ.get("HIVE_PORT", "0") or 0),
            "pid": os.getpid(),
            "socket": sock,
            "socket_present": Path(sock).exists(),
            "notes": read_notes(self.notes),
            "handled": [{"id": m["id"], "sender": m["sender"], "body": m["body"]}
                        for m in self.handled],
        }


def read_notes(root: Path) -> dict[str, str]:
    """Each small text file in the notes dir, by name (the agent's log and dotfiles left out)."""
    if not root.is_dir():
        return {}
    notes = {}
    for path in sorted(root.iterdir()):
        if not path.is_file() or path.name.startswith(("agent.log", ".")):
            continue
        try:
            size = path.stat().st_size
            notes[path.name] = (f"({size} bytes, not shown)" if size > MAX_NOTE_BYTES
                                else path.read_text(errors="replace"))
        except OSError as exc:
            notes[path.name] = f"(unreadable: {exc.strerror})"
    return notes


def page(info: dict[str, Any]) -> str:
    esc = html.escape
    handled = "".join(
        f"<li><b>{esc(m['sender'])}</b>: {esc(m['body'])}</li>" for m in reversed(info["handled"])
    ) or "<li><em>nothing yet</em></li>"
    notes = "".join(
        f"<h3>{esc(name)}</h3><pre>{esc(text)}</pre>" for name, text in info["notes"].items()
    ) or "<p><em>No notes yet.</em></p>"
    return (
        "<!doctype html><meta charset=utf-8>"
        f"<title>{esc(info['name'])}</title>"
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:46em;margin:2em auto;"
        "padding:0 1em}pre{background:#f4f4f4;padding:.6em;overflow:auto}</style>"
        f"<h1>{esc(info['name'])}</h1>"
        "<p>This agent runs hivekit's reference harness: it answers every message with an echo. "
        "Commit a real harness to its <code>agent.toml</code> and request an apply.</p>"
        f"<p>port {info['port']} · pid {info['pid']} · socket <code>{esc(info['socket'])}"
        f"</code> ({'present' if info['socket_present'] else 'absent'})</p>"
        f"<h2>Messages handled</h2><ul>{handled}</ul><h2>Notes</h2>{notes}"
    )


def serve_page(harness: Harness, bind: str, port: int) -> ThreadingHTTPServer:
    class Page(BaseHTTPRequestHandler):
        server_version = "hivekit-harness"

        def do_GET(self) -> None:
            info = harness.status()
            if self.path == "/api/status":
                self._send(200, "application/json", json.dumps(info))
            elif self.path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", page(info))
            else:
                self._send(404, "text/plain; charset=utf-8", "not found\n")

        def _send(self, code: int, kind: str, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((bind, port), Page)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(socket_path: str, port: int, notes: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="harness: %(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per long-poll otherwise
    harness = Harness(Socket(socket_path), notes)
    name = harness.me["name"]
    bind = os.environ.get("HIVE_BIND", "127.0.0.1")
    try:
        server = serve_page(harness, bind, port)
    except OSError as exc:
        print(f"harness: {name} cannot listen on {bind}:{port}: {exc.strerror}",
              file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"harness: {name} serving http://{bind}:{port}/ (socket {socket_path})", flush=True)

    def stop(*_: Any) -> None:
        harness.stop.set()
        server.shutdown()
        print(f"harness: {name} stopped", flush=True)
        os._exit(0)  # the long-poll in flight would otherwise hold the exit up to its timeout

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    said = None
    while not harness.stop.is_set():
        try:
            harness.run()
        except Exception as exc:  # the socket is bound just after the agent starts
            if str(exc) != said:  # once per kind of outage, not once a second
                log.warning("waiting for the hive at %s (%s)", socket_path, exc)
                said = str(exc)
            time.sleep(1)
