"""``agent.toml``: what the process backend runs for an agent, read from its applied repo.

The manager commits it in the agent's proposed repo like any other config file; a change reaches
the running agent only through an approved apply. Keys::

    command = "hivekit"                     # required
    args = ["harness"]
    wait_for_port = true                    # a start counts once it listens on HIVE_PORT
    [env]
    PYTHONUNBUFFERED = "1"
    [health]                                # how a deploy proves it runs (all optional)
    timeout = 60                            # seconds to wait ([hive] health_timeout)
    settle = 1                              # seconds up without a restart ([process] health_settle)
    http = "/healthz"                       # GET on HIVE_PORT must answer 2xx
    command = ["./check.sh"]                # run like the agent, must exit 0

``command`` is a program name looked up on the agent's PATH (the hive's own bin dir comes first,
so ``python`` and ``hivekit`` are the hive's), an absolute path, or a path relative to the config
repo (``./run.sh``, committed with its executable bit).
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
import tomllib
from pathlib import Path

from attrs import field, frozen

from hivekit import Health, OperationFailed, identity

FILE = "agent.toml"
#: The template that runs Claude Code (``hivekit request spawn NAME --template claude``).
CLAUDE = "claude"

#: Variables hivekit sets itself: an agent's config cannot change who it is or where it talks.
IDENTITY = identity.NAMES
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@frozen
class AgentToml:
    """A parsed, checked ``agent.toml``."""

    #: The program to run (see the module's docstring for how it is found).
    command: str
    #: Its arguments.
    args: list[str] = field(factory=list)
    #: Extra environment variables (on top of the identity hivekit sets).
    env: dict[str, str] = field(factory=dict)
    #: Whether a start or build waits until the program listens on HIVE_PORT. With false it
    #: counts as done as soon as the program was started.
    wait_for_port: bool = True
    #: How a deploy proves the agent runs (``[health]``).
    health: Health = field(factory=Health)

    def __attrs_post_init__(self) -> None:
        if not self.command.strip():
            raise ValueError("command must not be empty")
        for value in (self.command, *self.args, *self.env.values()):
            if "\0" in value:
                raise ValueError("command, args and env values must not contain NUL bytes")
        for key in self.env:
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"env: {key!r} is not a valid environment variable name")
            if key in IDENTITY:
                raise ValueError(f"env: {key} is set by hivekit (the agent's identity) and "
                                 "cannot be overridden")


def seed(name: str) -> str:
    """The ``agent.toml`` a new agent starts with: ``hivekit harness``, the reference agent."""
    return (
        f"# What the process backend runs for {name}. Commit a change here and request an\n"
        "# apply: once approved, the agent restarts with it (a file that does not parse, or a\n"
        "# command that is not found or does not come up, fails the deploy and the running\n"
        "# agent is kept). Keys: command (required), args, env, wait_for_port (default true:\n"
        "# a start counts once the program listens on $HIVE_PORT).\n"
        + _identity_comment() +
        'command = "hivekit"\n'
        'args = ["harness"]\n'
        "\n"
        "[env]\n"
        'PYTHONUNBUFFERED = "1"\n'
    )


def seed_claude(name: str) -> str:
    """The ``claude`` template's ``agent.toml``: Claude Code through ``hivekit turn-loop``."""
    return (
        f"# {name} runs Claude Code (the hive's \"claude\" template). `hivekit turn-loop` waits\n"
        "# for messages on the hive's socket, gives each batch to one `claude -p` turn with the\n"
        "# hive's MCP tools (send, ask, agents...) and the hive's prompt, and acknowledges them\n"
        "# once the turn succeeded; a failed turn restarts the agent (the dashboard shows why).\n"
        "# Arguments after \"--\" go to every turn (`claude --help`: --model, --permission-mode).\n"
        "# It needs Claude Code on the hive's PATH (npm install -g @anthropic-ai/claude-code) and\n"
        f"# credentials: `hivekit creds {name} set ANTHROPIC_API_KEY` (the value on stdin), or\n"
        f"# `hivekit exec {name} -- claude login`. Commit a change here and request an apply.\n"
        'command = "hivekit"\n'
        'args = ["turn-loop", "--", "--permission-mode", "acceptEdits"]\n'
        "wait_for_port = false   # it serves no page\n"
        "\n"
        "[env]\n"
        'PYTHONUNBUFFERED = "1"\n'
    )


def _identity_comment() -> str:
    names = [v.name for v in identity.VARIABLES if not v.manager_only]
    text = "The hive sets " + ", ".join(names[:-1]) + " and " + names[-1] + "."
    return "".join(f"# {line}\n" for line in textwrap.wrap(text, 86))


def parse(text: str) -> AgentToml:
    """Parse and check ``agent.toml``'s text; :class:`OperationFailed` says what is wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OperationFailed(f"{FILE}: not valid TOML: {exc}") from None
    if "command" not in raw:
        raise OperationFailed(f"{FILE}: command is missing (the program to run, e.g. "
                              'command = "python")')
    from hivekit import Invalid, structure

    try:
        return structure(raw, AgentToml)
    except Invalid as exc:
        raise OperationFailed(f"{FILE}: {exc.message}") from None


def load(applied: Path) -> AgentToml:
    """The checked ``agent.toml`` of the applied repo's working tree (what ``main`` holds)."""
    path = applied / FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise OperationFailed(f"{FILE} is missing from the agent's config; commit one with "
                              'at least command = "..."') from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OperationFailed(f"{FILE}: cannot read: {exc}") from None
    return parse(text)


def resolve(spec: AgentToml, applied: Path, path_var: str) -> str:
    """The absolute path of the program ``spec.command`` names, checked to be executable."""
    command = spec.command
    if "/" in command:
        target = Path(command) if os.path.isabs(command) else applied / command
        if not target.is_file() or not os.access(target, os.X_OK):
            where = "" if os.path.isabs(command) else " (relative to the agent's config repo)"
            raise OperationFailed(f"{FILE}: command {command!r}{where} is not an executable "
                                  "file")
        return str(target)
    found = shutil.which(command, path=path_var)
    if found is None:
        raise OperationFailed(f"{FILE}: command {command!r} was not found on the agent's PATH "
                              f"({path_var})")
    return found
