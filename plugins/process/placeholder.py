"""The page a freshly spawned agent serves until its ``agent.toml`` says otherwise.

``hivekit placeholder`` (or ``python -m hivekit_plugins.process.placeholder``) serves on
``127.0.0.1:$HIVE_PORT`` (set
``HIVE_BIND`` to listen elsewhere) until SIGTERM:

* ``GET /``: a small page saying who the agent is, with its notes.
* ``GET /api/status``: ``{name, port, pid, socket, socket_present, notes}`` as JSON, where
  ``notes`` maps each small text file in the agent's notes dir (``$HIVE_NOTES``) to its text.

It proves the plumbing (identity, port, notes, socket dir) and nothing else: it reads no inbox
and answers no message. Standard library only, so it runs wherever the hive's Python does.
"""

from __future__ import annotations

import html
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: Notes files larger than this are listed but not shown.
MAX_NOTE_BYTES = 64 * 1024


def _notes() -> dict[str, str]:
    root = os.environ.get("HIVE_NOTES")
    if not root or not Path(root).is_dir():
        return {}
    notes = {}
    for path in sorted(Path(root).iterdir()):
        if not path.is_file() or path.name.startswith(("agent.log", ".")):
            continue
        try:
            if path.stat().st_size > MAX_NOTE_BYTES:
                notes[path.name] = f"({path.stat().st_size} bytes, not shown)"
                continue
            notes[path.name] = path.read_text(errors="replace")
        except OSError as exc:
            notes[path.name] = f"(unreadable: {exc.strerror})"
    return notes


def status() -> dict[str, Any]:
    sock = os.environ.get("HIVE_SOCKET", "")
    return {
        "name": os.environ.get("HIVE_LABEL", "?"),
        "port": int(os.environ.get("HIVE_PORT", "0") or 0),
        "pid": os.getpid(),
        "socket": sock,
        "socket_present": bool(sock) and Path(sock).exists(),
        "notes": _notes(),
    }


def page(info: dict[str, Any]) -> str:
    esc = html.escape
    notes = "".join(
        f"<h3>{esc(name)}</h3><pre>{esc(text)}</pre>" for name, text in info["notes"].items()
    ) or "<p><em>No notes yet.</em></p>"
    return (
        "<!doctype html><meta charset=utf-8>"
        f"<title>{esc(info['name'])}</title>"
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:46em;margin:2em auto;"
        "padding:0 1em}pre{background:#f4f4f4;padding:.6em;overflow:auto}</style>"
        f"<h1>{esc(info['name'])}</h1>"
        "<p>This agent runs hivekit's placeholder: it is up, and does nothing else yet. "
        "Commit a real command to its <code>agent.toml</code> and request an apply.</p>"
        f"<p>port {info['port']} · pid {info['pid']} · socket <code>{esc(info['socket'])}"
        f"</code> ({'present' if info['socket_present'] else 'absent'})</p>"
        f"<h2>Notes</h2>{notes}"
    )


class Handler(BaseHTTPRequestHandler):
    server_version = "hivekit-placeholder"

    def do_GET(self) -> None:
        info = status()
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


def main() -> None:
    port = int(os.environ.get("HIVE_PORT", "0") or 0)
    bind = os.environ.get("HIVE_BIND", "127.0.0.1")
    name = os.environ.get("HIVE_LABEL", "?")
    try:
        server = ThreadingHTTPServer((bind, port), Handler)
    except OSError as exc:
        print(f"placeholder: {name} cannot listen on {bind}:{port}: {exc.strerror}",
              file=sys.stderr, flush=True)
        sys.exit(1)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM,
                  lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"placeholder: {name} serving http://{bind}:{server.server_address[1]}/", flush=True)
    with server:
        server.serve_forever()
    print(f"placeholder: {name} stopped", flush=True)


if __name__ == "__main__":
    main()
