"""hivekit-tmux: a hivekit backend that runs each agent in a tmux session.

Enable it with ``[hive] backend = "tmux"``. Every agent is a session ``h-<name>`` on the hive's
own tmux server (socket ``<runtime_dir>/tmux.sock``; look at one with ``tmux -S <socket>
attach -t h-<name>``), running ``bash agent.sh`` from a snapshot of its applied repo. The
agents stop with the daemon; a new daemon starts the ones the operator wants running.

* **build** (spawn, rebuild): the applied repo's working tree (which the core keeps at ``main``)
  is copied to ``<state_dir>/tmux/<name>/<sha>/`` and its ``agent.sh`` checked with ``bash -n``;
  a script that is missing or does not parse fails the build before anything stops.
* **run**: ``tmux new-session`` in the agent's notes dir with its identity environment
  (``hive.agent_env``); a start counts once the agent listens on its port (``HIVE_PORT``),
  within ``start_timeout`` seconds. If a rebuilt agent does not come up, the previous build is
  started again and the build fails with the pane's last lines.
* **is_running**: the session exists and its pane's command has not exited (the sessions keep
  a dead pane, ``remain-on-exit``, so that its last output explains a failed start).
* **status**: every operation reports what it left (``hive.report_status``), and one
  ``tmux list-panes -a`` every ``status_interval`` seconds reports an agent whose script ended
  on its own (``stopped``, with its exit code and last output).

This is the backend ``docs/write-a-backend.md`` builds step by step; its contract run is
``tests/test_tmux_contract.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from attrs import field, frozen

from hivekit import (
    AgentSpec,
    CommandFailed,
    Hive,
    OperationFailed,
    hookimpl,
    positive,
    read_ref,
    run,
)

log = logging.getLogger("hivekit.tmux")

PLUGIN = "tmux"
#: The script every agent runs, from its applied repo.
SCRIPT = "agent.sh"
#: What a new agent runs: hivekit's reference harness, which serves a page on HIVE_PORT.
SEED = """\
# What the tmux backend runs for this agent (bash, in its notes dir). Commit a change and
# request an apply: once approved, the agent restarts with it. It must listen on $HIVE_PORT.
exec hivekit harness
"""


@frozen
class TmuxConfig:
    """The ``[tmux]`` table."""

    #: The tmux program.
    tmux: str = "tmux"
    #: Seconds a start may take before the agent listens on its port.
    start_timeout: float = field(default=30.0, validator=positive)
    #: Seconds between two looks at every session (to see an agent die on its own).
    status_interval: float = field(default=2.0, validator=positive)


# --- tmux ------------------------------------------------------------------------------------


def tmux(hive: Hive, *args: str, path: str | None = None) -> str:
    """Run a tmux command against the hive's own server (started by the first one).

    :param path: the ``PATH`` of a session this command makes (tmux gives a new session the
        ``PATH`` of the command that makes it, whatever ``-e`` says).
    """
    config: TmuxConfig = hive.plugin_config(PLUGIN)
    socket_path = hive.paths.runtime_dir / "tmux.sock"
    # The server keeps the environment of the command that started it: a clean one, so that
    # nothing of the daemon's reaches the agents.
    env = {"PATH": path or os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return run([config.tmux, "-S", str(socket_path), *args], env=env, timeout=30)


def session(agent: AgentSpec) -> str:
    return f"h-{agent.name}"


def target(agent: AgentSpec) -> str:
    """The agent's session ("=": exactly this name, never another one it is a prefix of)."""
    return f"={session(agent)}"


def pane(agent: AgentSpec) -> str:
    """The agent's pane (its session's current window's)."""
    return f"{target(agent)}:"


def pane_alive(hive: Hive, agent: AgentSpec) -> bool:
    try:
        dead = tmux(hive, "display-message", "-p", "-t", pane(agent), "#{pane_dead}")
    except CommandFailed:  # no such session, or no server at all
        return False
    return dead.strip() == "0"


def session_exists(hive: Hive, agent: AgentSpec) -> bool:
    try:
        tmux(hive, "has-session", "-t", target(agent))
    except CommandFailed:
        return False
    return True


def kill(hive: Hive, agent: AgentSpec) -> None:
    """Kill the agent's session; none is fine."""
    try:
        tmux(hive, "kill-session", "-t", target(agent))
    except CommandFailed as exc:
        if "can't find session" not in exc.stderr_tail and "no server" not in exc.stderr_tail \
                and "error connecting" not in exc.stderr_tail:
            raise


# --- builds ----------------------------------------------------------------------------------


def builds(hive: Hive, agent: AgentSpec) -> Path:
    return hive.paths.state_dir / PLUGIN / agent.name


def build(hive: Hive, agent: AgentSpec) -> Path:
    """Snapshot the applied repo's main and check its script; the snapshot's path."""
    sha = read_ref(agent.paths.applied)
    if sha is None:
        raise OperationFailed(f"{agent.name}'s applied repo has no main")
    snapshot = builds(hive, agent) / sha
    if not snapshot.is_dir():
        tmp = snapshot.with_name(sha + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(agent.paths.applied, tmp, ignore=shutil.ignore_patterns(".git"))
        tmp.rename(snapshot)
    script = snapshot / SCRIPT
    if not script.is_file():
        raise OperationFailed(f"{SCRIPT} is missing from {agent.name}'s config; commit one")
    try:
        run(["bash", "-n", str(script)], timeout=30)
    except CommandFailed as exc:
        raise OperationFailed(f"{SCRIPT} does not parse: {exc.stderr_tail}") from None
    hive.log(agent, f"tmux: built {sha[:12]} ({SCRIPT} parses)", "hive")
    return snapshot


def current(hive: Hive, agent: AgentSpec) -> Path | None:
    """The build the agent last ran."""
    try:
        return Path((builds(hive, agent) / "current").read_text())
    except FileNotFoundError:
        return None


# --- running ---------------------------------------------------------------------------------


def launch(hive: Hive, agent: AgentSpec, snapshot: Path) -> None:
    """Start ``snapshot`` in a fresh session and wait until the agent listens on its port."""
    kill(hive, agent)
    for d in (agent.paths.state, agent.paths.creds, agent.paths.runtime):
        d.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": agent_path(),
        "HOME": str(agent.paths.creds),
        **hive.agent_env(agent),  # last: nothing overrides the agent's identity
    }
    # In one tmux command, so that the options hold before the script can end: a pane whose
    # command ended stays (its last output explains a failed start), and so does the server.
    args = ["start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
            "set-option", "-g", "exit-empty", "off", ";",
            "new-session", "-d", "-s", session(agent), "-c", str(agent.paths.state)]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    tmux(hive, *args, "bash", str(snapshot / SCRIPT), path=env["PATH"])
    (builds(hive, agent) / "current").write_text(str(snapshot))
    hive.log(agent, f"tmux: session {session(agent)} runs {snapshot.name[:12]}", "hive")
    wait_until_up(hive, agent)


def agent_path() -> str:
    """The agents' PATH: the hive's own bin dir first (its ``hivekit`` and ``python``)."""
    return os.pathsep.join([str(Path(sys.executable).parent),
                            os.environ.get("PATH", "/usr/bin:/bin")])


def wait_until_up(hive: Hive, agent: AgentSpec) -> None:
    config: TmuxConfig = hive.plugin_config(PLUGIN)
    deadline = time.monotonic() + config.start_timeout
    while True:
        if not pane_alive(hive, agent):
            raise OperationFailed(f"{agent.name}: {SCRIPT} ended before it listened on port "
                                  f"{agent.port}; its last output:\n{last_output(hive, agent)}")
        if listens(agent.port):
            return
        if hive.stopping.is_set():  # long work gives up: the daemon waits for no one
            kill(hive, agent)
            raise OperationFailed(f"{agent.name}: the start was interrupted: the hive is "
                                  "stopping")
        if time.monotonic() >= deadline:
            output = last_output(hive, agent)
            kill(hive, agent)
            raise OperationFailed(f"{agent.name}: did not listen on port {agent.port} within "
                                  f"{config.start_timeout:g}s; its last output:\n{output}")
        time.sleep(0.1)


def listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def last_output(hive: Hive, agent: AgentSpec) -> str:
    try:
        text = tmux(hive, "capture-pane", "-p", "-t", pane(agent))
    except CommandFailed:
        return "(none)"
    return "\n".join(line for line in text.splitlines() if line.strip())[-2000:] or "(none)"


def deploy(hive: Hive, agent: AgentSpec) -> None:
    """Build ``main`` and run it; if it does not come up, run the previous build again."""
    snapshot = build(hive, agent)  # fails before anything stops
    previous = current(hive, agent) if pane_alive(hive, agent) else None
    try:
        launch(hive, agent, snapshot)
    except OperationFailed:
        if previous is not None and previous != snapshot and not hive.stopping.is_set():
            hive.log(agent, "tmux: the new build did not come up; starting the previous one",
                     "hive")
            launch(hive, agent, previous)
        raise
    for old in builds(hive, agent).iterdir():  # only what runs is kept
        if old.is_dir() and old != snapshot:
            shutil.rmtree(old, ignore_errors=True)


# --- the status channel ----------------------------------------------------------------------


def panes(hive: Hive) -> dict[str, tuple[bool, int | None]]:
    """Every session of the hive's server, in one tmux command: its name → whether its command
    runs, and the exit status of one that ended."""
    try:
        out = tmux(hive, "list-panes", "-a", "-F",
                   "#{session_name}\t#{pane_dead}\t#{pane_dead_status}")
    except CommandFailed:  # no server: no session
        return {}
    found = {}
    for line in out.splitlines():
        name, dead, status = [*line.split("\t"), "", ""][:3]
        found[name] = (dead != "1", int(status) if status.isdigit() else None)
    return found


class Watcher:
    """Tells the hive each agent's status: what an operation left, and, from one look at every
    session every ``status_interval`` seconds, an agent whose script ended on its own."""

    def __init__(self, hive: Hive) -> None:
        self.hive = hive
        # Held from a look at the sessions to its last report, and for an operation's report:
        # a look taken before an operation ended never overwrites what the operation left.
        self.lock = threading.Lock()
        self.reported: dict[str, str] = {}

    def run(self) -> None:
        interval = self.hive.plugin_config(PLUGIN).status_interval
        while not self.hive.stopping.wait(interval):
            try:
                self.look()
            except Exception:  # a poll that failed: the next one tries again
                log.debug("tmux: a status poll failed", exc_info=True)

    def look(self) -> None:
        with self.lock:
            sessions = panes(self.hive)
            for name in self.hive.agent_names():
                row = self.hive.view.row(name)
                if row is None or row.transient is not None:
                    continue  # an operation runs on it: the operation reports its outcome
                agent = self.hive.agent(name)
                alive, exit_code = sessions.get(session(agent), (False, None))
                if alive:
                    self.report(agent, "running")
                elif self.reported.get(name) != "running":
                    self.report(agent, "stopped")
                else:  # it was running, and it ended on its own: say how
                    detail = (f"{SCRIPT} exited with status {exit_code}"
                              if exit_code is not None else f"session {session(agent)} is gone")
                    self.report(agent, "stopped", detail=detail, exit_code=exit_code,
                                output=last_output(self.hive, agent).splitlines()[-20:])

    def after(self, agent: AgentSpec) -> None:
        """An operation on ``agent`` ended (however): report what it left, always (the hive
        forgot what it knew of the agent when the operation began)."""
        with self.lock:
            self.reported.pop(agent.name, None)
            self.report(agent, "running" if pane_alive(self.hive, agent) else "stopped")

    def report(self, agent: AgentSpec, status: str, **why: object) -> None:
        if self.reported.get(agent.name) == status:
            return
        self.reported[agent.name] = status
        self.hive.report_status(agent, status, **why)


def watcher(hive: Hive) -> Watcher:
    return hive.plugin_state(PLUGIN, lambda: Watcher(hive))


@contextlib.contextmanager
def reporting(hive: Hive, agent: AgentSpec) -> Iterator[None]:
    """Around an operation: report what it left behind, whether it succeeded or raised."""
    try:
        yield
    finally:
        watcher(hive).after(agent)


# --- hooks -----------------------------------------------------------------------------------


@hookimpl
def config_schema() -> type:
    return TmuxConfig


@hookimpl
def initial_config_files() -> dict[str, str]:
    return {SCRIPT: SEED}


@hookimpl
def spawn(hive: Hive, agent: AgentSpec) -> None:
    with reporting(hive, agent):
        deploy(hive, agent)


@hookimpl
def rebuild(hive: Hive, agent: AgentSpec) -> None:
    with reporting(hive, agent):
        deploy(hive, agent)


@hookimpl
def start(hive: Hive, agent: AgentSpec) -> None:
    with reporting(hive, agent):
        if pane_alive(hive, agent):
            return  # running already: nothing to do
        snapshot = current(hive, agent)
        if snapshot is None or not snapshot.is_dir():
            snapshot = build(hive, agent)
        launch(hive, agent, snapshot)


@hookimpl
def restart(hive: Hive, agent: AgentSpec) -> bool | None:
    if current(hive, agent) is None or not session_exists(hive, agent):
        return None  # nothing to restart in place: the core stops and starts
    with reporting(hive, agent):
        # The same command with the same environment (tmux takes PATH from this command).
        tmux(hive, "respawn-pane", "-k", "-t", pane(agent), path=agent_path())
        wait_until_up(hive, agent)
    return True


@hookimpl
def stop(hive: Hive, agent: AgentSpec) -> None:
    with reporting(hive, agent):
        kill(hive, agent)


@hookimpl
def destroy(hive: Hive, agent: AgentSpec) -> None:
    kill(hive, agent)
    shutil.rmtree(builds(hive, agent), ignore_errors=True)


@hookimpl
def is_running(hive: Hive, agent: AgentSpec) -> bool:
    return pane_alive(hive, agent)


@hookimpl
def startup(hive: Hive) -> None:
    threading.Thread(target=watcher(hive).run, name="tmux-status", daemon=True).start()


@hookimpl
def shutdown(hive: Hive) -> None:
    # The agents stop with the daemon (the next one starts those the operator wants running).
    with contextlib.suppress(CommandFailed):  # no server: nothing ran
        tmux(hive, "kill-server")
