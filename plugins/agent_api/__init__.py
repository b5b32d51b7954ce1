"""The agent API (bundled plugin ``agent_api``): each agent's own socket, and its MCP bridge.

Every registered agent gets ``<runtime_dir>/agents/<n>/hive.sock`` (mode 0600), bound into its
container as ``/run/hive/hive.sock``: HTTP + JSON for messages (send, recv, ack, broadcast),
questions (ask, answer, cancel) and, on the manager's socket, spawn/apply requests and approvals.
The socket is its agent's identity (see :mod:`.server`). ``hivekit mcp --socket PATH`` is a
stdio MCP server offering the same operations as tools (see :mod:`.bridge`).

Sockets are bound after the backend created or started the container (``trylast``), removed
after it destroyed it, and bound again for every registered agent when the daemon starts.
This module stays light: the CLI imports it on every run, the server and the bridge only when
they are used.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

import click
from attrs import field, frozen

from hivekit import hookimpl, positive

if TYPE_CHECKING:
    from hivekit import AgentSpec, Deploy, Hive

    from .server import AgentSockets

#: Where an agent finds its socket inside its container (the default of ``hivekit mcp``).
CONTAINER_SOCKET = "/run/hive/hive.sock"



@frozen
class AgentApiConfig:
    """The ``[agent_api]`` table."""

    #: The largest request body an agent's socket accepts, in bytes (larger: HTTP 413).
    #: Message bodies are further limited to 64 KiB.
    max_request_bytes: int = field(default=256 * 1024, validator=positive)


_sockets: weakref.WeakKeyDictionary[Hive, AgentSockets] = weakref.WeakKeyDictionary()
_sockets_lock = threading.Lock()


def sockets(hive: Hive) -> AgentSockets | None:
    """The hive's agent sockets (started on first use); None once the hive is stopping."""
    with _sockets_lock:  # hooks run on several threads: start one set of sockets only
        found = _sockets.get(hive)
        if found is None:
            if hive.stopping.is_set():
                return None
            from .server import AgentSockets

            config: AgentApiConfig = hive.plugin_config("agent_api")
            found = _sockets[hive] = AgentSockets(hive, config.max_request_bytes)
        return found


def _ensure(hive: Hive, name: str) -> None:
    served = sockets(hive)
    if served is not None:
        served.ensure(name)


@hookimpl
def config_schema() -> type:
    return AgentApiConfig


@hookimpl
def startup(hive: Hive) -> None:
    sockets(hive)
    for name in hive.agent_names():
        _ensure(hive, name)


@hookimpl
def shutdown(hive: Hive) -> None:
    with _sockets_lock:
        served = _sockets.pop(hive, None)
    if served is not None:
        served.close()


@hookimpl(trylast=True)
def spawn(hive: Hive, agent: AgentSpec) -> None:
    _ensure(hive, agent.name)


@hookimpl(trylast=True)
def start(hive: Hive, agent: AgentSpec) -> None:
    _ensure(hive, agent.name)


@hookimpl(trylast=True)
def rebuild(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> None:
    _ensure(hive, agent.name)


@hookimpl(trylast=True)
def destroy(hive: Hive, agent: AgentSpec, purge: bool) -> None:
    served = sockets(hive)
    if served is not None:
        served.remove(agent.name)
    else:
        agent.paths.socket.unlink(missing_ok=True)


@click.command("mcp")
@click.option("--socket", "socket_path", metavar="PATH", envvar="HIVE_SOCKET",
              default=CONTAINER_SOCKET, show_default=True,
              help="The agent's hive socket (default: $HIVE_SOCKET, else the path inside an "
                   "agent's container).")
def mcp_command(socket_path: str) -> None:
    """Serve the agent's hive socket as MCP tools on stdin/stdout.

    For an MCP client inside an agent's container (Claude Code or any other): messages, questions
    and, for the manager, spawn/apply requests, each a tool with its own description.
    """
    from .bridge import serve

    serve(socket_path)


@click.command("harness")
@click.option("--socket", "socket_path", metavar="PATH", envvar="HIVE_SOCKET",
              default=CONTAINER_SOCKET, show_default=True, help="The agent's hive socket.")
@click.option("--port", type=int, envvar="HIVE_PORT", required=True,
              help="Where to serve the agent's page (default: $HIVE_PORT).")
@click.option("--notes", type=click.Path(file_okay=False), envvar="HIVE_NOTES", default=".",
              show_default=True, help="The agent's notes dir, listed on its page.")
def harness_command(socket_path: str, port: int, notes: str) -> None:
    """Run the reference agent: answer messages, serve a page on the agent's port.

    What an agent runs without an LLM; read plugins/agent_api/harness.py for the loop an LLM
    harness runs instead.
    """
    from pathlib import Path

    from .harness import main

    main(socket_path, port, Path(notes))


@click.command("turn-loop", context_settings={"ignore_unknown_options": True})
@click.option("--socket", "socket_path", metavar="PATH", envvar="HIVE_SOCKET",
              default=CONTAINER_SOCKET, show_default=True, help="The agent's hive socket.")
@click.option("--claude", metavar="PROGRAM", default="claude", show_default=True,
              help="Claude Code (or a program that behaves as `claude -p` does).")
@click.option("--notes", type=click.Path(file_okay=False), envvar="HIVE_NOTES", default=".",
              show_default=True, help="The agent's notes dir: the turns' working directory.")
@click.option("--batch", type=click.IntRange(1, 100), default=20, show_default=True,
              help="The most messages one turn handles.")
@click.option("--wait", type=click.FloatRange(1, 300), default=60, show_default=True,
              help="Seconds each wait for messages lasts before it is renewed.")
@click.option("--turn-timeout", type=click.FloatRange(1), default=1800, show_default=True,
              help="Seconds a turn may take.")
@click.argument("claude_args", metavar="[-- CLAUDE_ARG]...", nargs=-1, type=click.UNPROCESSED)
def turn_loop_command(socket_path: str, claude: str, notes: str, batch: int, wait: float,
                      turn_timeout: float, claude_args: tuple[str, ...]) -> None:
    """Run Claude Code as this agent: one `claude -p` turn per batch of new messages.

    What the `claude` template runs. Arguments after `--` go to every turn (e.g.
    `--model sonnet`, `--permission-mode acceptEdits`). A failed turn ends the loop with
    exit 1 (the backend restarts it; its messages come again).
    """
    from pathlib import Path

    from .turns import main

    extra = list(claude_args[1:] if claude_args[:1] == ("--",) else claude_args)
    main(socket_path, claude, extra, Path(notes).resolve(), batch, wait, turn_timeout)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(mcp_command)
    cli.add_command(harness_command)
    cli.add_command(turn_loop_command)
