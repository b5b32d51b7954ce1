"""The CLI as a boundary: arguments are checked before any path is built, and no answer of any
shape makes it print a traceback.

Both tests are generated from the command table: every command the ``cli`` plugin registers
(the ones wrapped by ``api_command``), every argument by its click type. A new command or
argument is covered without editing this file.
"""

from __future__ import annotations

import json
import os
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from hivekit.testing import HiveProcess

BAD = {
    "NAME": ["../x", "coder/destroy", "coder?purge=true", "UPPER", "", "a" * 10, "%2e%2e",
             "coder#x"],
    "ID": ["abc", "1/approve", "1?x=1", "0", str(2**63), "1.5", "٣", " 1", "%31"],
}


def _group() -> click.Group:
    """The ``hivekit`` group with the commands of every bundled plugin that has some."""
    from hivekit import cli as cli_module

    group = cli_module.cli
    if "approve" not in group.commands:
        config = Path(tempfile.mkdtemp(prefix="hkc", dir="/tmp")) / "hivekit.toml"
        config.write_text('[hive]\nbackend = "fake"\nenable = ["meta_flake", "forge"]\n')
        cli_module.load_commands(group, ["--config", str(config)])
        shutil.rmtree(config.parent)
    return group


def api_commands() -> Iterator[tuple[list[str], click.Command]]:
    """``(words, command)`` for every command that talks to the daemon's API."""

    def walk(group: click.Group, words: list[str]) -> Iterator[tuple[list[str], click.Command]]:
        for name, cmd in sorted(group.commands.items()):
            if isinstance(cmd, click.Group):
                # A group's own arguments (`creds NAME set KEY`) come before its commands.
                yield from walk(cmd, [*words, name, *arguments(cmd)])
            elif getattr(cmd.callback, "hivekit_api", False):
                yield [*words, name], cmd

    return walk(_group(), [])


def arguments(cmd: click.Command, **override: str) -> list[str]:
    """Valid-looking arguments for ``cmd``: a name for a NAME, an id for an ID, text else."""
    args = []
    for param in cmd.params:
        if isinstance(param, click.Argument):
            kind = param.type.name.upper()
            args.append(override.get(param.name or "", {"NAME": "coder", "ID": "1"}.get(
                kind, "x")))
    return args


def invoke(hive_config: Path, words: list[str]) -> Any:
    runner = CliRunner()
    # A command that reads a value from stdin (`creds NAME set KEY`) gets one.
    return runner.invoke(_group(), words, env={"HIVEKIT_CONFIG": str(hive_config)},
                         catch_exceptions=True, input="value\n")


def test_the_command_table_has_typed_names_and_ids() -> None:
    typed = {" ".join(w): [p.type.name for p in c.params if isinstance(p, click.Argument)]
             for w, c in api_commands()}
    assert typed["approve"] == ["ID"] and typed["answer"][0] == "ID"
    assert typed["destroy"] == ["NAME"] and typed["request apply"][0] == "NAME"
    assert typed["send"][0] == "NAME" and typed["inbox"] == ["NAME"]
    assert "meta log" in typed  # other plugins' API commands are covered too


def _state(hive: HiveProcess) -> Any:
    return (hive.get("/api/agents"), hive.get("/api/approvals", all=True, limit=1000),
            hive.get("/api/agents/coder/inbox", limit=1000),
            hive.get("/api/questions", all=True, target="any"))


def test_names_and_ids_that_would_escape_their_segment_exit_2(hive: HiveProcess) -> None:
    hive.spawn("coder")
    sha = hive.commit("coder", {"a.txt": "a\n"})
    hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    before = _state(hive)
    tried = 0
    for words, cmd in api_commands():
        for param in cmd.params:
            kind = param.type.name.upper()
            if not isinstance(param, click.Argument) or kind not in BAD:
                continue
            for value in BAD[kind]:
                args = arguments(cmd, **{param.name or "": value})
                result = invoke(hive.config_path, [*words, *args])
                tried += 1
                shown = f"{' '.join(words)} {args}: {result.output}"
                assert result.exit_code == 2, shown
                assert result.exception is None or isinstance(result.exception, SystemExit), shown
                assert "Traceback" not in result.output, shown
                if kind == "NAME" and value not in ("",):
                    assert "1-9 characters" in result.output, shown
                if kind == "ID" and not value.startswith("-"):
                    assert "from 1 to" in result.output, shown
    assert tried > 60
    assert _state(hive) == before


def test_approve_abc_is_bad_usage(hive: HiveProcess) -> None:
    result = hive.cli("approve", "abc")
    assert result.returncode == 2
    assert "'abc' is not an id" in result.stderr and "Traceback" not in result.stderr


# --- a daemon that answers in the wrong shapes --------------------------------------------------

SHAPES: list[tuple[int, bytes]] = [
    (200, b"[]"), (200, b"{}"), (200, b'"text"'), (200, b"not json"),
    (200, b'{"approval": 5, "diff": []}'), (200, b'[{"id": 1, "sender": null}]'),
    (200, b'{"agents": "x", "tombstones": 5}'), (201, b'{"id": "1", "status": 7}'),
    (500, b"<html>oops</html>"), (404, b'{"error": 5}'),
]


class _Answering(BaseHTTPRequestHandler):
    answer: tuple[int, bytes] = (200, b"{}")

    def _reply(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        status, body = self.server.answer  # type: ignore[attr-defined]
        ctype = "application/json"
        if self.path.startswith("/api/events"):
            # A stream that greets, then carries the same wrong shape as an event, and ends.
            status, ctype = 200, "text/event-stream"
            body = (b'event: hello\r\ndata: {"seq": 0, "boot": "b"}\r\n\r\n'
                    b"event: approval_changed\r\ndata: " + body + b"\r\n\r\n")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def wrong_daemon() -> Iterator[tuple[Path, _Server]]:
    root = Path(tempfile.mkdtemp(prefix="hkw", dir="/tmp"))
    (root / "run").mkdir()
    config = root / "hivekit.toml"
    config.write_text('[hive]\nbackend = "fake"\nstate_dir = "state"\nruntime_dir = "run"\n')
    server = _Server(str(root / "run" / "admin.sock"), _Answering)
    server.answer = (200, b"{}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield config, server
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(root, ignore_errors=True)


def test_no_answer_shape_gives_a_traceback(wrong_daemon: tuple[Path, _Server]) -> None:
    config, server = wrong_daemon
    os.environ.pop("HIVEKIT_CONFIG", None)
    tried = 0
    for words, cmd in api_commands():
        for shape in SHAPES:
            server.answer = shape  # type: ignore[attr-defined]
            args = [*words, *arguments(cmd)]
            result = invoke(config, args)
            tried += 1
            shown = f"{args} answered {shape}: exit {result.exit_code}\n{result.output}"
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                shown, result.exception)
            assert "Traceback" not in result.output, shown
            if result.exit_code != 0:
                assert result.exit_code == 1 and "error: " in result.output, shown
    assert tried > 100  # every command, every shape


def test_a_wrong_answer_says_what_it_was(wrong_daemon: tuple[Path, _Server]) -> None:
    config, server = wrong_daemon
    server.answer = (200, json.dumps({"approval": 5, "diff": []}).encode())  # type: ignore[attr-defined]
    result = invoke(config, ["show", "1"])
    assert result.exit_code == 1
    assert "unexpected answer" in result.output and "approval" in result.output
