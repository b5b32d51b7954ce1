"""The process backend (plugin ``process``, ``[hive] backend = "process"``): each agent is a
supervised child process of the daemon, sandboxed with bubblewrap when it can run here.

What an agent runs comes from ``agent.toml`` in its applied repo (see :mod:`.spec`); how it is
run from the ``[process]`` table (see :mod:`.settings`). Agents are children of the daemon: they
stop when it stops (and die with it if it is killed), and the core's startup reconciliation
starts again every agent the operator last wanted running.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hivekit_plugins.process import cgroups, sandbox, spec
from hivekit_plugins.process.settings import ProcessConfig
from hivekit_plugins.process.supervisor import (
    Child,
    Launch,
    LogFile,
    describe_exit,
    group_members,
)

from hivekit import (
    Badge,
    BadgeLevel,
    ExecPlan,
    Health,
    HiveError,
    Mount,
    OperationFailed,
    actions,
    creds,
    hookimpl,
    http_probe,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hivekit import AgentSpec, Deploy, Hive

log = logging.getLogger("hivekit.process")

#: The exec shim, run by path with ``python -I`` so that it needs nothing but the stdlib.
LAUNCHER = Path(__file__).with_name("launch.py")
#: The agent's output, in its notes dir.
LOG_NAME = "agent.log"
#: Environment variables passed from the hive to every agent when set.
PASSED_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


class Backend:
    """The hive's agents and how they are run; one per :class:`Hive` (see :func:`backend`)."""

    def __init__(self, hive: Hive) -> None:
        self.hive = hive
        self.settings: ProcessConfig = hive.plugin_config("process")
        self.children: dict[str, Child] = {}
        self._lock = threading.Lock()
        self._bwrap: str | None = None
        self._probed = False
        self._tree: cgroups.Tree | None = None
        self._tree_probed = False
        #: agent → (the launch number its last run started, when it came up).
        self._started: dict[str, tuple[int, float]] = {}
        #: agent → the ``[health]`` of what its last deploy runs.
        self._health: dict[str, Health] = {}

    # --- sandbox -------------------------------------------------------------------------------

    def bwrap(self) -> str | None:
        """The bubblewrap program to run agents under, or None for plain processes.

        Decided once (at startup, or at the first launch): ``sandbox = "auto"`` probes and falls
        back with a warning; ``"bwrap"`` refuses to go on without it; ``"none"`` never tries.
        """
        with self._lock:
            if self._probed:
                return self._bwrap
            mode = self.settings.sandbox
            if mode == "none":
                log.info("process: sandbox = \"none\": agents run as plain processes")
            else:
                problem = sandbox.probe(self.settings.bwrap)
                if problem is None:
                    self._bwrap = os.path.realpath(_which(self.settings.bwrap))
                    log.info("process: agents run under bubblewrap (%s)", self._bwrap)
                elif mode == "bwrap":
                    raise HiveError(
                        f"[process] sandbox = \"bwrap\", but bubblewrap cannot run here: "
                        f"{problem}\nfix that, or set [process] sandbox = \"auto\" to fall "
                        "back to plain processes")
                else:
                    log.warning("process: bubblewrap cannot run here, so agents run as plain "
                                "processes that see and can change everything this hive's "
                                "user can: %s", problem)
            self._probed = True
            known = list(self.children) if self._bwrap is None else []
        # The "no sandbox" badge of agents whose rows were made before the probe.
        for name in known:
            self.hive.refresh(name)
        return self._bwrap

    def cgroup_tree(self) -> cgroups.Tree | None:
        """The cgroup tree agents' memory and CPU limits use, or None for rlimits.

        Decided once, like :meth:`bwrap`: ``cgroup = "auto"`` probes and warns (naming what is
        then not enforced) when the config sets limits it cannot enforce; ``"required"``
        refuses to go on without; ``"off"`` never tries.
        """
        with self._lock:
            if self._tree_probed:
                return self._tree
            s = self.settings
            mode = s.cgroup
            tree, why = (None, 'cgroup = "off"') if mode == "off" else cgroups.probe(
                self.hive.paths.state_dir)
            if tree is None and mode == "required":
                raise HiveError(f'[process] cgroup = "required", but no cgroup tree can take '
                                f'the agents\' limits here: {why}\nrun hivekit serve where it '
                                'may manage cgroups (a systemd unit with Delegate=yes), or set '
                                '[process] cgroup = "auto" to fall back to rlimits')
            if tree is not None:
                tree.sweep()
                log.info("process: agents' memory and CPU limits use cgroup %s (%s)", tree.kind,
                         ", ".join(f"{c} in {d}" for c, d in sorted(tree.parents.items())))
            warning = cgroups.fallback_warning(why, s.any_set("memory"), s.any_set("cpus"),
                                               tree)
            if warning:
                log.warning("%s", warning)
            self._tree, self._tree_probed = tree, True
            return tree

    # --- launching -----------------------------------------------------------------------------

    def launch_for(self, agent: AgentSpec, config: spec.AgentToml, *, argv: list[str] | None = None,
                   tty: bool = False) -> Launch:
        """How to run ``config`` for ``agent``: checks that its command exists.

        With ``argv``, how to run that command instead, in the same sandbox, limits and
        environment, for ``hivekit exec`` (no parent-death signal: the operator's CLI runs it;
        ``tty``: it keeps the operator's terminal).
        """
        hive, p = self.hive, agent.paths
        for d in (p.state, p.creds, p.runtime, hive.paths.shared):
            d.mkdir(parents=True, exist_ok=True)
        # The hive's own bin dir first: `python` and `hivekit` are the ones the hive runs on.
        path_var = config.env.get("PATH") or os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
        program = spec.resolve(config, p.applied, path_var) if argv is None else argv[0]
        bwrap = self.bwrap()
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.update({"PATH": path_var, "HOME": str(p.creds)})
        env.update(config.env)
        extra = self.extra_binds(agent)
        # Last: agent.toml cannot set these (spec refuses them), and nothing may shadow them.
        env.update(hive.agent_env(agent))  # its paths through the mount table (agent_mounts)
        inner = [program, *config.args] if argv is None else [program, *argv[1:]]
        if bwrap:
            inner = [*sandbox.argv(bwrap, name=agent.name,
                                   hidden=[hive.paths.state_dir, hive.paths.runtime_dir],
                                   applied=p.applied, notes=p.state, creds=p.creds,
                                   shared=hive.paths.shared, runtime=p.runtime, extra=extra,
                                   ro_binds=self.settings.ro_binds,
                                   new_session=argv is not None and not tty),
                     *inner]
        shim = [sys.executable, "-I", str(LAUNCHER)]
        if argv is None:
            shim += ["--parent", str(os.getpid())]
        shim += [a for d in self._cgroups(agent) for a in ("--cgroup", str(d))]
        shim += ["--env-dir", str(creds.env_dir(agent))]
        tree = self.cgroup_tree()
        memory_in_cgroup = tree is not None and tree.enforces("memory")
        shim += [a for k, v in self.settings.rlimits(agent.name, memory=not memory_in_cgroup)
                 .items() for a in ("--rlimit", f"{k}={v}")]
        describe = " ".join([config.command, *config.args] if argv is None else argv)
        return Launch(argv=[*shim, "--", *inner], env=env, cwd=str(p.state), describe=describe,
                      bwrap=bwrap, wait_for_port=config.wait_for_port)

    def _cgroups(self, agent: AgentSpec) -> list[Path]:
        """The agent's cgroup directories, made with its limits (none without a tree)."""
        tree = self.cgroup_tree()
        if tree is None:
            return []
        limits = self.settings.limits(agent.name)
        try:
            return tree.prepare(agent.name, limits.memory, limits.cpus)
        except OSError as exc:
            raise OperationFailed(f"{agent.name}: cannot set up its cgroup for the memory and "
                                  f"CPU limits: {exc.strerror or exc}") from None

    def exec_plan(self, agent: AgentSpec, argv: list[str], tty: bool) -> ExecPlan:
        """``hivekit exec``: ``argv`` in the agent's sandbox, limits and environment, with its
        credentials loaded by the shim (never put in the plan)."""
        try:
            config = spec.load(agent.paths.applied)
        except OperationFailed:
            config = spec.parse(spec.seed(agent.name))  # a broken agent.toml: still let the
            # operator in to look (only its env is taken from it)
        launch = self.launch_for(agent, config, argv=argv, tty=tty)
        return ExecPlan(argv=launch.argv, env=launch.env, cwd=launch.cwd)

    def log_lines(self, agent: AgentSpec, lines: int, follow: bool) -> Iterator[str | None]:
        """``hivekit logs``: the end of ``agent.log`` (with ``agent.log.1`` when that is too
        short), then with ``follow`` the live log's new lines of the agent (its output and the
        supervisor's), which the log file gets too."""
        # Subscribed before the file is read: a line written meanwhile may show twice, never
        # not at all.
        follower = actions.LiveLines(self.hive, agent.name, 0, follow) if follow else None
        try:
            path = agent.paths.state / LOG_NAME
            yield from _tail([path.with_name(path.name + ".1"), path], lines)
            if follower is not None:
                yield from follower
        finally:
            if follower is not None:
                follower.close()

    def extra_binds(self, agent: AgentSpec) -> list[tuple[str, Path]]:
        """What the sandbox shows beyond the agent's own dirs: the manager edits every agent's
        proposed repo and reads what was deployed."""
        if not agent.is_manager:
            return []
        paths = self.hive.paths
        return [("--bind", paths.agents_root), ("--ro-bind", paths.applied_root),
                ("--ro-bind-try", paths.meta)]

    def mounts(self, agent: AgentSpec) -> list[Mount] | None:
        """The sandbox's mount table (None without bubblewrap: the agent sees the host)."""
        if not self.bwrap():
            return None
        p = agent.paths
        shown = sandbox.mounts(applied=p.applied, notes=p.state, creds=p.creds,
                               shared=self.hive.paths.shared, runtime=p.runtime,
                               extra=self.extra_binds(agent))
        return [Mount(host, inside, read_only=option.startswith("--ro-bind"))
                for option, host, inside in shown]

    def child(self, agent: AgentSpec) -> Child:
        with self._lock:
            child = self.children.get(agent.name)
            if child is None:
                s = self.settings
                child = Child(
                    agent.name,
                    logfile=LogFile(agent.paths.state / LOG_NAME, s.log_max_bytes),
                    pidfile=self.hive.paths.runtime_dir / "process" / f"{agent.name}.pid",
                    log=lambda line, stream, n=agent.name: self.hive.log(n, line, stream),
                    report=lambda status, detail, code, output, n=agent.name: self._report(
                        n, status, detail, code, output),
                    stopping=self.hive.stopping, restart_delay=s.restart_delay,
                    restart_delay_max=s.restart_delay_max, restart_reset=s.restart_reset)
                self.children[agent.name] = child
            return child

    def _report(self, name: str, status: str, detail: str | None, exit_code: int | None,
                output: list[str]) -> None:
        """The supervisor learnt something: tell the hive's status channel (never raises: it
        runs on the supervising thread)."""
        try:
            self.hive.report_status(name, status, detail=detail, exit_code=exit_code,
                                    output=output)
        except Exception:
            log.exception("process: could not report %s's status", name)

    # --- lifecycle -----------------------------------------------------------------------------

    def get(self, name: str) -> Child | None:
        with self._lock:
            return self.children.get(name)

    def run(self, agent: AgentSpec, launch: Launch) -> None:
        """Start ``launch`` (the agent must be stopped) and wait until it is up; on failure the
        agent is left stopped and :class:`OperationFailed` says why, with its last output."""
        child = self.child(agent)
        if launch.bwrap is None:
            self.hive.log(agent.name, "no sandbox: running as a plain process that sees and can "
                                      "change everything the hive's user can", "hive")
        try:
            gen = child.start(launch)
        except OSError as exc:
            raise OperationFailed(f"{agent.name}: {exc}") from None
        problem = self._wait_ready(child, gen, agent.port) if launch.wait_for_port else None
        if problem is None:
            child.settled()
            self._started[agent.name] = (gen, time.monotonic())
            return
        child.stop(self.settings.stop_timeout)
        tail = "\n".join(child.tail()[-10:])
        raise OperationFailed(f"{agent.name}: {launch.describe!r} {problem}"
                              + (f"; its last output:\n{tail}" if tail else ""))

    def _wait_ready(self, child: Child, gen: int, port: int) -> str | None:
        deadline = time.monotonic() + self.settings.start_timeout
        while True:
            code = child.exit_of(gen)
            if code is not None:
                return f"ended ({describe_exit(code)}) before it listened on port {port}"
            pid = child.pid()
            listeners = _listeners(port)
            if pid is not None and listeners and _holds(pid, listeners):
                return None
            if self.hive.stopping.is_set():
                return "was interrupted: the hive is stopping"
            if time.monotonic() >= deadline:
                taken = " (another process holds that port)" if listeners else ""
                return (f"did not listen on port {port} within "
                        f"{self.settings.start_timeout:g}s{taken}; set wait_for_port = false "
                        "in agent.toml if it serves no page")
            time.sleep(0.05)

    def start(self, agent: AgentSpec) -> None:
        child = self.child(agent)
        if child.running():
            return
        child.stop(self.settings.stop_timeout)  # a crashed one waiting for its restart
        config = spec.load(agent.paths.applied)
        self.run(agent, self.launch_for(agent, config))

    def deploy(self, agent: AgentSpec) -> None:
        """Run what the applied repo's working tree now says, replacing what runs.

        The new ``agent.toml`` is parsed and its command found before anything is stopped; if
        the new process does not come up, the previous one is started again and the error
        raised, so a broken config never leaves the agent down.
        """
        config = spec.load(agent.paths.applied)
        launch = self.launch_for(agent, config)
        child = self.child(agent)
        previous = child.launch if child.running() or child.waiting_to_restart() else None
        child.stop(self.settings.stop_timeout)
        self._health.pop(agent.name, None)
        try:
            self.run(agent, launch)
            self._health[agent.name] = config.health
        except OperationFailed:
            if previous is not None:
                self.hive.log(agent.name, "the new config did not come up: starting the "
                                          "previous one again", "hive")
                try:
                    self.run(agent, previous)
                except OperationFailed as exc:
                    self.hive.log(agent.name, f"the previous config failed too: {exc}", "hive")
            raise

    # --- health (the deploy's verify step) -----------------------------------------------------

    def health(self, agent: AgentSpec) -> bool | str:
        """The process backend's ``health_check``: the process launched by the last build runs
        and has not restarted for the settle time; then the ``[health]`` probe of its
        ``agent.toml``, if any, answers. A string: not yet, and why.

        :raises OperationFailed: it ended or restarted since the build.
        """
        child, started = self.get(agent.name), self._started.get(agent.name)
        health = self._health.get(agent.name)
        if child is None or started is None or health is None:
            raise OperationFailed(f"{agent.name} was not started by its build")
        gen, since = started
        code = child.exit_of(gen)
        if code is not None or child.restarts:
            # Its last output reaches the deploy's note through the status channel.
            how = describe_exit(code) if code is not None else "it crashed and was restarted"
            raise OperationFailed(f"{agent.name} ended ({how}) after its build")
        settle = health.settle or self.settings.health_settle
        ran = time.monotonic() - since
        if ran < settle:
            return f"running for {ran:.1f}s of the {settle:g}s it must stay up"
        if health.http is not None:
            problem = http_probe(agent.port, health.http)
            if problem is not None:
                return problem
        if health.command is not None:
            return self._command_probe(agent, health)
        return True

    def _command_probe(self, agent: AgentSpec, health: Health) -> bool | str:
        from hivekit import CommandFailed, run

        assert health.command is not None
        config = spec.load(agent.paths.applied)
        probe = spec.AgentToml(command=health.command[0], args=health.command[1:],
                               env=config.env, wait_for_port=False)
        launch = self.launch_for(agent, probe)
        timeout = health.timeout or self.hive.config.hive.health_timeout
        try:
            run(launch.argv, env=launch.env, cwd=launch.cwd, timeout=timeout)
        except CommandFailed as exc:
            return f"its health command {launch.describe!r} failed: {exc}"
        return True

    def stop(self, agent: AgentSpec) -> None:
        child = self.get(agent.name)
        if child is not None:
            child.stop(self.settings.stop_timeout)
        if self._tree is not None:
            self._tree.remove(agent.name)

    def forget(self, agent: AgentSpec) -> None:
        self.stop(agent)
        with self._lock:
            child = self.children.pop(agent.name, None)
        if child is not None:
            child.logfile.close()

    def stop_all(self) -> None:
        """Stop every agent at once: SIGTERM to all, then wait out one shared timeout."""
        with self._lock:
            children = list(self.children.values())
        pending = [(c, c.request_stop()) for c in children]
        deadline = time.monotonic() + self.settings.stop_timeout
        for child, proc in pending:
            child.finish_stop(proc, max(0.1, deadline - time.monotonic()))
            child.logfile.close()
            if self._tree is not None:
                self._tree.remove(child.name)


def _tail(paths: list[Path], lines: int) -> list[str]:
    """The last ``lines`` lines of ``paths`` read as one file (missing ones skipped)."""
    if lines <= 0:
        return []
    kept: list[str] = []
    for path in reversed(paths):  # newest first: stop once there are enough
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 512 * 1024))  # the end is enough for 10k short lines
                text = f.read().decode(errors="replace")
        except OSError:
            continue
        part = text.splitlines()
        if size > 512 * 1024 and part:
            part = part[1:]  # the first one is cut
        kept = part + kept
        if len(kept) >= lines:
            break
    return kept[-lines:]


def _which(program: str) -> str:
    import shutil

    return shutil.which(program) or program


def _listeners(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (any address), from /proc/net/tcp{,6}."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is ADDR:PORT in hex; state 0A is LISTEN; field 9 is the inode.
            if len(fields) > 9 and fields[3] == "0A" and \
                    int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _holds(pgid: int, inodes: set[str]) -> bool:
    """Whether a process of the agent's group holds one of the listening sockets: a port
    answered by some other program does not count as the agent being up."""
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid in group_members(pgid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return True
            except OSError:
                continue
    return False


def backend(hive: Hive) -> Backend:
    """The :class:`Backend` of ``hive`` (made on first use)."""
    return hive.plugin_state("process", lambda: Backend(hive))


# --- hooks ---------------------------------------------------------------------------------------


@hookimpl
def config_schema() -> type:
    return ProcessConfig


@hookimpl
def initial_config_files(hive: Hive, agent: AgentSpec, template: str | None) -> dict[str, str]:
    if template == spec.CLAUDE:
        return {spec.FILE: spec.seed_claude(agent.name)}
    return {spec.FILE: spec.seed(agent.name)}


@hookimpl
def agent_templates(hive: Hive) -> dict[str, str]:
    # The turn loop and the MCP bridge are the agent_api plugin's (on by default).
    return {spec.CLAUDE: "Claude Code (`claude -p`) answering its messages turn by turn, with "
                         "the hive's MCP tools (hivekit turn-loop)"}


@hookimpl
def agent_mounts(hive: Hive, agent: AgentSpec) -> list[Mount] | None:
    return backend(hive).mounts(agent)


@hookimpl
def startup(hive: Hive) -> None:
    # Probe now: the warnings (or the refusals) belong to the start.
    backend(hive).bwrap()
    backend(hive).cgroup_tree()


@hookimpl
def shutdown(hive: Hive) -> None:
    backend(hive).stop_all()


@hookimpl
def spawn(hive: Hive, agent: AgentSpec) -> None:
    backend(hive).deploy(agent)


@hookimpl
def rebuild(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> None:
    backend(hive).deploy(agent)


@hookimpl
def start(hive: Hive, agent: AgentSpec) -> None:
    backend(hive).start(agent)


@hookimpl
def stop(hive: Hive, agent: AgentSpec) -> None:
    backend(hive).stop(agent)


@hookimpl
def destroy(hive: Hive, agent: AgentSpec, purge: bool) -> None:
    backend(hive).forget(agent)


@hookimpl
def agent_exec(hive: Hive, agent: AgentSpec, argv: list[str], tty: bool) -> ExecPlan:
    return backend(hive).exec_plan(agent, argv, tty)


@hookimpl
def agent_logs(hive: Hive, agent: AgentSpec, lines: int,
               follow: bool) -> Iterator[str | None]:
    return backend(hive).log_lines(agent, lines, follow)


@hookimpl
def health_check(hive: Hive, agent: AgentSpec) -> bool | str:
    return backend(hive).health(agent)


@hookimpl
def health_timeout(hive: Hive, agent: AgentSpec) -> float | None:
    return spec.load(agent.paths.applied).health.timeout


@hookimpl
def is_running(hive: Hive, agent: AgentSpec) -> bool:
    child = backend(hive).get(agent.name)
    return child is not None and child.running()


@hookimpl
def agent_badges(hive: Hive, agent: AgentSpec) -> list[Badge]:
    # A crash is not a badge: the supervisor reports it as the agent's status (``failing``,
    # with the exit code and the last output lines) through hive.report_status.
    b = backend(hive)
    child = b.get(agent.name)
    badges = []
    if b._probed and b._bwrap is None and child is not None:
        badges.append(Badge(label="no sandbox", level=BadgeLevel.WARNING,
                            detail="bubblewrap (bwrap) is not available: the agent runs as a "
                                   "plain process; install bubblewrap and restart it"))
    return badges
