"""``hivekit turn-loop``: Claude Code (``claude -p``) as a hive agent, one turn per batch of mail.

What the process backend's ``claude`` template runs (``hivekit request spawn NAME --template
claude``). The loop:

1. registers the hive's MCP bridge with Claude Code once (``claude mcp add --scope user hive --
   hivekit mcp``, unless ``claude mcp get hive`` finds it), so an interactive ``claude`` in the
   agent's sandbox (``hivekit exec NAME -- claude``) has the hive's tools too;
2. waits for messages on the agent's socket (``recv``, long-polling);
3. runs one turn: ``claude -p PROMPT --output-format json`` with the messages in the prompt,
   the hive's prompt appended to the system prompt (who the agent is, its notes dir, the
   operator's pronouns), the bridge as its only MCP server (``--mcp-config``,
   ``--strict-mcp-config``) with its tools allowed (``--allowedTools mcp__hive``), the
   conversation resumed from the last turn (``--resume SESSION``, kept in
   ``$HIVE_NOTES/.claude-session``), and the arguments given after ``--``;
4. acknowledges the messages once the turn succeeded. A failed turn (``claude`` exits non-zero
   or answers ``"is_error": true``, e.g. ``Not logged in · Please run /login``) prints what it
   said and ends the loop with exit code 1: the backend restarts it with backoff, the dashboard
   shows the agent failing with that output, and the messages, never acknowledged, come again.

The flags and the JSON result (``{"type": "result", "is_error", "result", "session_id", ...}``)
are Claude Code's documented print mode (``claude --help``; docs.anthropic.com/en/docs/claude-code
/cli-reference and /sdk/sdk-headless). Standard library and httpx only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .harness import Socket

log = logging.getLogger("hivekit.turns")

#: The MCP server's name in Claude Code (its tools are ``mcp__hive__send``...).
SERVER = "hive"
#: Where the conversation's session id is kept, in the notes dir.
SESSION_FILE = ".claude-session"
#: Claude Code's answer to ``--resume`` with a session it does not have.
NO_SESSION = "No conversation found"

HIVE_PROMPT = """\
You are {name}, an agent of a hive run by hivekit{role}. A human operator ({pronouns}) \
oversees the hive and approves every change to it.
{manager}
Your notes directory is {notes}: it is your working directory and it persists across restarts \
and redeploys, so keep there what you need to remember. {shared} is shared with every agent.
Messages reach you in your inbox; each turn shows you the new ones. The hive's tools (MCP \
server "{server}") are how you act on them: `send` replies (to the sender's name; the operator \
is "operator"), `ask` asks the operator or a peer a question, `agents` lists the hive. Messages \
from "system" are hive events as JSON (a "type" says which). The messages of a turn are \
acknowledged for you when it ends: do not call `recv` or `ack` for them.
"""


def hive_prompt(me: dict[str, Any]) -> str:
    """The hive's part of the system prompt: who the agent is, where its notes are."""
    is_manager = bool(me.get("is_manager"))
    manager = ("You are the manager: you propose new agents (`request_spawn`) and config "
               "changes (`request_apply`), which the operator approves or denies."
               if is_manager else
               f"The manager is {me.get('manager', 'manager')}: ask it (with `send`) for a new "
               "agent or a change to your configuration.")
    return HIVE_PROMPT.format(
        name=me.get("name", "?"), role=", and its manager" if is_manager else "",
        pronouns=me.get("operator_pronouns") or "pronouns not given", manager=manager,
        notes=os.environ.get("HIVE_NOTES", os.getcwd()),
        shared=os.environ.get("HIVE_SHARED", "/shared"), server=SERVER)


def turn_prompt(messages: list[dict[str, Any]]) -> str:
    """One turn's prompt: the new messages, oldest first, each with its id, sender and time."""
    parts = [f"{len(messages)} new message(s) in your inbox, oldest first:"]
    for m in messages:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(m["created_at"]))
        kind = " (a hive event, JSON)" if m["sender"] == "system" else ""
        parts.append(f"--- message #{m['id']} from {m['sender']}{kind}, {when}\n{m['body']}")
    parts.append("Handle them, replying with the hive's `send` tool where a reply is due.")
    return "\n\n".join(parts)


def bridge_command() -> list[str]:
    """How Claude Code starts the bridge: this hivekit's ``hivekit mcp``."""
    found = shutil.which("hivekit")
    return [found, "mcp"] if found else [sys.executable, "-m", "hivekit", "mcp"]


class TurnFailed(Exception):
    """A turn did not succeed; the message is what Claude Code said."""


class Loop:
    """The loop of one agent; :meth:`run` returns only when a turn failed (or on SIGTERM)."""

    def __init__(self, socket: Socket, claude: str, extra: list[str], notes: Path,
                 batch: int = 20, wait: float = 60.0, turn_timeout: float = 1800.0) -> None:
        self.socket, self.claude, self.extra = socket, claude, extra
        self.notes, self.batch, self.wait, self.turn_timeout = notes, batch, wait, turn_timeout
        self.me: dict[str, Any] = {}

    # --- Claude Code --------------------------------------------------------------------------

    def _run(self, argv: list[str], timeout: float) -> tuple[int | None, list[str], str]:
        """Run ``argv``: (exit code or None on a timeout, stdout lines, stderr's tail)."""
        from hivekit import CommandFailed, HiveError, run

        out: list[str] = []

        def on_line(stream: str, line: str) -> None:
            if stream == "stdout":
                out.append(line)

        try:
            run(argv, cwd=self.notes, timeout=timeout, on_line=on_line)
        except CommandFailed as exc:
            return (None if exc.timed_out else exc.exit_code), out, exc.stderr_tail
        except HiveError as exc:  # the program is missing
            raise TurnFailed(f"{exc} (the claude template runs Claude Code: install it on the "
                             "hive's machine, e.g. npm install -g @anthropic-ai/claude-code)"
                             ) from None
        return 0, out, ""

    def register_bridge(self) -> None:
        """Make the hive's bridge one of Claude Code's own MCP servers (user scope), once."""
        code, _, _ = self._run([self.claude, "mcp", "get", SERVER], 60)
        if code == 0:
            return
        code, out, err = self._run([self.claude, "mcp", "add", "--scope", "user", SERVER, "--",
                                    *bridge_command()], 60)
        if code == 0:
            log.info("registered the hive's MCP bridge with Claude Code (%s)", SERVER)
        else:
            log.warning("could not register the hive's MCP bridge: %s",
                        err or "\n".join(out) or f"exit {code}")

    def turn(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """One ``claude -p`` turn over ``messages``; its JSON result. :class:`TurnFailed`."""
        session_file = self.notes / SESSION_FILE
        session = session_file.read_text().strip() if session_file.is_file() else ""
        config = {"mcpServers": {SERVER: {"type": "stdio", "command": bridge_command()[0],
                                          "args": bridge_command()[1:]}}}
        argv = [self.claude, "-p", turn_prompt(messages), "--output-format", "json",
                "--append-system-prompt", hive_prompt(self.me),
                "--mcp-config", json.dumps(config), "--strict-mcp-config",
                "--allowedTools", f"mcp__{SERVER}", *self.extra]
        if session:
            argv += ["--resume", session]
        code, out, err = self._run(argv, self.turn_timeout)
        result = _result(out)
        said = (result or {}).get("result") or err or "\n".join(out[-20:])
        if session and NO_SESSION in said:
            log.info("the last conversation (%s) is gone: starting a new one", session)
            session_file.unlink(missing_ok=True)
            return self.turn(messages)
        if code is None:
            raise TurnFailed(f"the turn did not end within {self.turn_timeout:g}s")
        if code != 0 or result is None or result.get("is_error"):
            raise TurnFailed(f"claude exited {code}: {said}".rstrip())
        if result.get("session_id"):
            session_file.write_text(str(result["session_id"]) + "\n")
        return result

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        self.me = self.socket.call("GET", "/whoami")
        print(f"turn-loop: {self.me['name']} waits for messages (claude: {self.claude})",
              flush=True)
        self.register_bridge()
        cursor = 0
        while True:
            got = self.socket.call("GET", "/recv", after=cursor, limit=self.batch,
                                   wait=self.wait)
            cursor = got["cursor"]
            messages = got["messages"]
            if not messages:
                continue
            result = self.turn(messages)
            ids = [m["id"] for m in messages]
            self.socket.call("POST", "/ack", {"ids": ids})
            summary = " ".join(str(result.get("result", "")).split())[:200]
            print(f"turn-loop: handled {len(ids)} message(s) (#{ids[0]}..#{ids[-1]}): "
                  f"{summary}", flush=True)


def _result(lines: list[str]) -> dict[str, Any] | None:
    """The ``{"type": "result", ...}`` object of Claude Code's JSON output, if any."""
    for line in reversed(lines):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("type") == "result":
            return data
    return None


def main(socket_path: str, claude: str, extra: list[str], notes: Path, batch: int,
         wait: float, turn_timeout: float) -> None:
    logging.basicConfig(level=logging.INFO, format="turn-loop: %(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    loop = Loop(Socket(socket_path), claude, extra, notes, batch, wait, turn_timeout)
    said = None
    while True:
        try:
            loop.run()
        except TurnFailed as exc:
            print(f"turn-loop: the turn failed, so the loop stops (its messages stay "
                  f"unacknowledged and come again): {exc}", file=sys.stderr, flush=True)
            sys.exit(1)
        except Exception as exc:  # the socket is bound just after the agent starts
            if str(exc) != said:
                log.warning("waiting for the hive at %s (%s)", socket_path, exc)
                said = str(exc)
            time.sleep(1)
