"""The deploy's ``verify`` step on NixOS containers: is the agent up on what was just built?

A rebuild stops and starts the container, so both systemd instances that matter start fresh:
the host's ``container@<c>.service`` and, inside the container, the agent's
``hive-agent.service`` (``nix/agent-base.nix``; ``Restart=always``). A manual start clears a
unit's restart counter (systemd's service.c flushes ``n_restarts`` on every start that is not
an automatic restart), so "not restarted since the build" is ``NRestarts=0``. Each round of the
check runs two commands, one per unit::

    systemctl show -p LoadState -p ActiveState -p SubState -p NRestarts container@<c>.service
    systemctl -M <c> show -p LoadState -p ActiveState -p SubState -p NRestarts \\
        -p ExecMainStatus hive-agent.service

Healthy: both ``active``/``running``, neither restarted, for ``health_settle`` seconds since the
build's start returned; then what the agent's own NixOS config declares
(``hivekit.agent.health``: an HTTP probe on its port, a command run in the container). A unit
that exited (``auto-restart``), restarted or ``failed`` is unhealthy for good: the deploy fails
at once and is rolled back, its note carrying the service's last journal lines.

The agent's declarations are read from the system just built:
``<profile>/etc/hive/health.json``, which ``nix/agent-base.nix`` renders from
``hivekit.agent.health`` (a NixOS toplevel's ``etc`` is its ``/etc``). The manager can write
that config, so the file is checked strictly (:class:`hivekit.Health`); a file that does not
parse fails the deploy, naming it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hivekit import CommandFailed, Health, Invalid, OperationFailed, ProgramMissing, http_probe

if TYPE_CHECKING:
    from hivekit import AgentSpec

#: The agent's service inside its container (nix/agent-base.nix).
AGENT_UNIT = "hive-agent.service"
#: Where the built system holds the agent's health declarations (nix/agent-base.nix).
HEALTH_FILE = Path("etc/hive/health.json")
#: The properties each round reads, host unit and agent unit.
HOST_PROPS = ("LoadState", "ActiveState", "SubState", "NRestarts")
AGENT_PROPS = (*HOST_PROPS, "ExecMainStatus")
#: Lines of the agent service's journal a failure's note carries.
JOURNAL_LINES = 10


class Starts:
    """When each container's last build (spawn, rebuild) started it: the settle clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[str, float] = {}

    def mark(self, name: str) -> None:
        with self._lock:
            self._at[name] = time.monotonic()

    def since(self, name: str) -> float | None:
        with self._lock:
            at = self._at.get(name)
        return None if at is None else time.monotonic() - at

    def forget(self, name: str) -> None:
        with self._lock:
            self._at.pop(name, None)


def load(system: Path | None) -> Health:
    """The health declarations of the built ``system`` (none declared: every field None).

    :raises OperationFailed: the file is there but is not what agent-base.nix renders.
    """
    if system is None:
        return Health()
    path = system / HEALTH_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return Health()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OperationFailed(f"{path}: cannot read the agent's health declarations "
                              f"(hivekit.agent.health): {exc}") from None
    if not isinstance(raw, dict):
        raise OperationFailed(f"{path}: the agent's health declarations "
                              f"(hivekit.agent.health) must be an object, got {raw!r}")
    from hivekit import structure

    # agent-base.nix renders every option, unset ones as null: null means "not declared".
    try:
        return structure({k: v for k, v in raw.items() if v is not None}, Health)
    except Invalid as exc:
        raise OperationFailed(f"{path}: hivekit.agent.health: {exc.message}") from None


def parse_show(out: str) -> dict[str, str]:
    """``systemctl show``'s ``KEY=VALUE`` lines as a dict."""
    props = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key] = value
    return props


def show_argv(systemctl: str, unit: str, props: tuple[str, ...],
              machine: str | None = None) -> list[str]:
    argv = [systemctl, *(("-M", machine) if machine else ()), "show"]
    for prop in props:
        argv += ["-p", prop]
    return [*argv, unit]


def restarts(props: dict[str, str]) -> int:
    value = props.get("NRestarts", "0")
    return int(value) if value.isdigit() else 0


def host_problem(props: dict[str, str], container: str) -> str | None:
    """Why the host's container unit is not yet healthy (None: it is).

    :raises OperationFailed: it failed, stopped or restarted since the build.
    """
    unit = f"container@{container}.service"
    active, sub = props.get("ActiveState", "?"), props.get("SubState", "?")
    if props.get("LoadState") == "not-found":
        raise OperationFailed(f"{unit} is not known to systemd: is the container still there?")
    if restarts(props):
        raise OperationFailed(f"{unit} restarted {restarts(props)} time(s) since the build "
                              f"(see `journalctl -u {unit}`)")
    if active in ("failed", "inactive", "deactivating") or sub == "auto-restart":
        raise OperationFailed(f"{unit} is {active} ({sub}) after its build "
                              f"(see `journalctl -u {unit}`)")
    if active != "active":
        return f"{unit} is {active} ({sub})"
    return None


def agent_problem(props: dict[str, str], container: str) -> str | None:
    """Why the agent's service in ``container`` is not yet healthy (None: it is).

    :raises OperationFailed: it is missing, exited, restarted or failed since the build.
    """
    active, sub = props.get("ActiveState", "?"), props.get("SubState", "?")
    where = f"{AGENT_UNIT} in {container}"
    if props.get("LoadState") == "not-found":
        raise OperationFailed(f"{where} does not exist: the agent's NixOS config must import "
                              "hivekit's agent-base (hivekit.lib.mkAgent does)")
    status = props.get("ExecMainStatus", "")
    code = f", last exit status {status}" if status not in ("", "0") else ""
    if restarts(props) or sub == "auto-restart" or active == "failed":
        what = (f"restarted {restarts(props)} time(s)" if restarts(props)
                else f"is {active} ({sub})")
        raise OperationFailed(f"{where} {what} since the build{code}")
    if active != "active":
        return f"{where} is {active} ({sub})"
    return None


def journal_tail(journalctl: str, container: str, timeout: float) -> str:
    """The agent service's last journal lines, for a failure's note ("" if unreadable)."""
    from hivekit import run

    argv = [journalctl, "-M", container, "-u", AGENT_UNIT, "-o", "cat", "--no-pager", "-n",
            str(JOURNAL_LINES)]
    try:
        out = run(argv, timeout=timeout)
    except (CommandFailed, ProgramMissing):
        return ""
    lines = out.splitlines()[-JOURNAL_LINES:]
    return ("\nits last output:\n" + "\n".join(lines)) if lines else ""


def check(agent: AgentSpec, *, container: str, systemctl: str, journalctl: str,
          system: Path | None, settled: float | None, settle: float, timeout: float,
          run_in: list[str]) -> bool | str:
    """One round of the ``health_check``: True, or why not yet.

    :param settled: seconds since the build's start returned (None: not started by a build).
    :param run_in: the argv prefix that runs a command in the container (``nixos-container
        run <c> --``), for a declared ``command`` probe.
    :raises OperationFailed: unhealthy for good (the message says why, with the agent's last
        output when its service is the one that failed).
    """
    from hivekit import run

    if settled is None:
        raise OperationFailed(f"{container} was not started by its build")
    health = load(system)
    host = parse_show(run(show_argv(systemctl, f"container@{container}.service", HOST_PROPS),
                          timeout=timeout))
    if (problem := host_problem(host, container)) is not None:
        return problem
    try:
        inside = run(show_argv(systemctl, AGENT_UNIT, AGENT_PROPS, machine=container),
                     timeout=timeout)
    except CommandFailed as exc:
        # The container's own systemd is not reachable yet (still booting).
        return f"cannot ask {container}'s systemd yet: {exc.stderr_tail.strip() or exc}"
    try:
        problem = agent_problem(parse_show(inside), container)
    except OperationFailed as exc:
        raise OperationFailed(f"{exc}{journal_tail(journalctl, container, timeout)}") from None
    if problem is not None:
        return problem
    settle = health.settle or settle
    if settled < settle:
        return f"up for {settled:.1f}s of the {settle:g}s it must stay up"
    if health.http is not None and (problem := http_probe(agent.port, health.http)) is not None:
        return problem
    if health.command is not None:
        try:
            run([*run_in, *health.command], timeout=health.timeout or timeout)
        except CommandFailed as exc:
            return f"its health command {' '.join(health.command)!r} failed: {exc}"
    return True
