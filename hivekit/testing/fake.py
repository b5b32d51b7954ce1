"""The fake backend: no containers, every call recorded, and builds that fail, hang or crash on cue.

Enable it with ``[hive] backend = "fake"``. It runs no container: each agent is a JSON file under
``<state_dir>/fake/`` (so "containers" survive a daemon restart), and every call it receives is
appended to ``<state_dir>/fake/calls.jsonl``. It can be told, per agent, to misbehave, either in
its config table or, while the hive runs, in ``<state_dir>/fake/control.json`` (read at every
call), both with the same keys::

    [fake]
    fail = { coder = "nix: attribute 'foo' missing" }   # spawn/rebuild/start raise this
    delay = { coder = 3.0 }                             # spawn/rebuild/start take this long
    hang = ["coder"]                                    # spawn/rebuild/start wait until the
                                                        # agent leaves this list (or shutdown)
    crash = { coder = "main-moved" }                    # SIGKILL the daemon at that point
    detach = { coder = 2.0 }                            # builds outlive the daemon (seconds)
    unhealthy = { coder = "port 8080 refused" }         # its health check fails after a build
    health_hang = ["coder"]                             # its health check never answers
    health_timeout = { coder = 2.0 }                    # its own health timeout (seconds)

``crash`` names a crash point (any key of ``hivekit.crashpoints.POINTS``: the deploy steps
``tagged`` … ``finalized`` and the points of the spawn, deny, destroy, purge and rebuild paths)
or a hook (``prepare_deploy``, ``finalize_deploy``, ``approval_resolved``, after recording the
call): when an operation on that agent
reaches it, the fake kills the whole daemon with SIGKILL, once (the entry is removed from
control.json first), so crash recovery can be tested against a real process.

``detach`` makes a rebuild do its building in a child process (started through
``hivekit.proc.run``, in its own session, as a real backend's build program is) that takes that
many seconds and then records what it built in the container, whether or not the daemon that
started it is still alive: the case of ``nixos-container update`` finishing after hivekit died.
While it builds, ``<state_dir>/fake/<agent>.building`` holds the sha it builds. Every build of
an agent (spawn, rebuild, detached or not) first takes that agent's build lock, as the child
holds it, so a build started later waits for an orphaned one instead of racing it.

A build also fails when the applied tree holds a file named ``FAIL``: its content is the error.
That lets a test commit a broken config the way a manager would. The file is read without
following links (a ``FAIL`` that is a symbolic link fails the build, unread).

Like every backend it gives each agent its identity (``hive.agent_env``), kept in the container
file (:func:`environ` reads it back); :func:`kill` makes a container stop as if it crashed,
behind the hive's back, and :func:`crash` also has the fake report it, as a backend that sees
its agents die does. The conformance suite (:mod:`hivekit.testing.conformance`) uses them.

The fake reports every status it sets through the hive's status channel
(``hive.report_status``), as a real backend does when it learns one. A test makes it report
something else — a crash, say — with ``POST /api/fake/agents/<name>/status`` on the admin socket
(:func:`report`), body ``{"status", "detail", "exit_code", "output"}``: what a backend's
supervisor would say when the agent's process dies.

``files`` (config table only) adds files to every new agent's seeded repo, beside ``agent.conf``
and ``README.md``: a plugin test can seed what its plugin expects (a ``flake.nix``, say)::

    [fake]
    files = { "flake.nix" = "{ outputs = { self }: { }; }" }
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from hivekit import hookimpl
from hivekit.errors import OperationFailed

if TYPE_CHECKING:
    from collections.abc import Callable

    from hivekit.hive import Hive
    from hivekit.records import AgentSpec, Approval, Deploy, ExecPlan

#: The marker file whose presence in an applied tree fails the fake build.
FAIL_MARKER = "FAIL"


@frozen
class FakeConfig:
    #: agent name → error message its spawn/rebuild/start fail with.
    fail: dict[str, str] = field(factory=dict)
    #: agent name → seconds its spawn/rebuild take.
    delay: dict[str, float] = field(factory=dict)
    #: agents whose spawn/rebuild/start hang until they leave this list or the daemon stops.
    hang: list[str] = field(factory=list)
    #: agent name → crash point or hook at which the daemon SIGKILLs itself (once).
    crash: dict[str, str] = field(factory=dict)
    #: agent name → seconds its rebuild takes in a child process that outlives the daemon.
    detach: dict[str, float] = field(factory=dict)
    #: agent name → why its health check fails after a build (the ``verify`` step).
    unhealthy: dict[str, str] = field(factory=dict)
    #: agents whose health check hangs until they leave this list or the daemon stops.
    health_hang: list[str] = field(factory=list)
    #: agent name → its own health timeout, in seconds (the ``health_timeout`` hook).
    health_timeout: dict[str, float] = field(factory=dict)
    #: relative path → content: extra files every new agent's repo is seeded with.
    files: dict[str, str] = field(factory=dict)


def fake_dir(hive: Hive) -> Path:
    d = hive.paths.state_dir / "fake"
    d.mkdir(parents=True, exist_ok=True)
    return d


_lock = threading.Lock()


def _record(hive: Hive, call: str, agent: AgentSpec, *, log: str = "calls",
            **extra: Any) -> None:
    entry = {"call": call, "agent": agent.name, "time": time.time(), **extra}
    with _lock, open(fake_dir(hive) / f"{log}.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def calls(state_dir: Path, log: str = "calls") -> list[dict[str, Any]]:
    """Every call the fake backend received in the hive at ``state_dir``, oldest first: the
    lifecycle and deploy-phase hooks; with ``log="observed"``, the observer hooks it heard
    (``deploy_step``, ``approval_resolved``) instead."""
    path = Path(state_dir) / "fake" / f"{log}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def kill(state_dir: Path, name: str) -> None:
    """Make agent ``name``'s fake container stop as if it crashed, behind the hive's back."""
    path = Path(state_dir) / "fake" / f"{name}.json"
    data = json.loads(path.read_text())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**data, "running": False}))
    os.replace(tmp, path)


def crash(hive: Any, name: str, exit_code: int = 137) -> None:
    """Make agent ``name``'s fake container die on its own and the fake's "supervisor" report
    it (``stopped``, with ``exit_code``), as a real backend reports a death it sees; ``hive``
    is a :class:`hivekit.testing.HiveProcess`."""
    kill(hive.state_dir, name)
    report(hive, name, "stopped", detail=f"h-{name} died (killed)", exit_code=exit_code)


def environ(state_dir: Path, name: str) -> dict[str, str] | None:
    """The identity environment the fake gave agent ``name``'s container when it last ran it
    (None when it has no container)."""
    path = Path(state_dir) / "fake" / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("env")


def control(state_dir: Path, **settings: Any) -> None:
    """Tell a running fake backend how to misbehave (``fail=``, ``delay=``, ``hang=``,
    ``crash=``, ``detach=``, ``unhealthy=``, ``health_hang=``, ``health_timeout=``); replaces
    what it was told before."""
    d = Path(state_dir) / "fake"
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "control.json.tmp"
    tmp.write_text(json.dumps(settings))
    os.replace(tmp, d / "control.json")


def _settings(hive: Hive) -> FakeConfig:
    base: FakeConfig = hive.plugin_config("fake")
    path = fake_dir(hive) / "control.json"
    if not path.exists():
        return base
    from hivekit.convert import structure

    # The same keys as the table, as strictly: a test's typo is an error, not a no-op.
    told = structure(json.loads(path.read_text() or "{}"), FakeConfig)
    return FakeConfig(fail={**base.fail, **told.fail}, delay={**base.delay, **told.delay},
                      hang=[*base.hang, *told.hang], crash={**base.crash, **told.crash},
                      detach={**base.detach, **told.detach},
                      unhealthy={**base.unhealthy, **told.unhealthy},
                      health_hang=[*base.health_hang, *told.health_hang],
                      health_timeout={**base.health_timeout, **told.health_timeout})


def _maybe_crash(hive: Hive, agent: str, point: str) -> None:
    if _settings(hive).crash.get(agent) != point:
        return
    path = fake_dir(hive) / "control.json"
    raw = json.loads(path.read_text() or "{}") if path.exists() else {}
    raw.get("crash", {}).pop(agent, None)
    control(hive.paths.state_dir, **raw)  # one-shot: the restarted daemon must not crash again
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def _container(hive: Hive, name: str) -> Path:
    return fake_dir(hive) / f"{name}.json"


def _load(hive: Hive, name: str) -> dict[str, Any] | None:
    path = _container(hive, name)
    return json.loads(path.read_text()) if path.exists() else None


def _save(hive: Hive, name: str, data: dict[str, Any]) -> None:
    path = _container(hive, name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _misbehave(hive: Hive, agent: AgentSpec, what: str) -> None:
    settings = _settings(hive)
    if agent.name in settings.hang:
        hive.log(agent, f"fake: {what} hangs (told to)")
        while agent.name in _settings(hive).hang:  # until told otherwise, or the daemon stops
            if hive.stopping.wait(0.2):
                raise OperationFailed(f"fake: {what} of {agent.name} interrupted by shutdown")
    if delay := settings.delay.get(agent.name):
        hive.log(agent, f"fake: {what} takes {delay}s")
        hive.stopping.wait(delay)
    if message := settings.fail.get(agent.name):
        raise OperationFailed(message)


#: The most of a FAIL marker's content that becomes the error.
MAX_MARKER = 64 * 1024


def read_marker(path: Path) -> str | None:
    """A failure file's content (stripped), or None when there is none.

    Read without following links (``O_NOFOLLOW``, and only a regular file): the file comes from
    the applied tree, which the manager's commits fill. A link or anything else in its place
    fails the build too, saying so, and is never read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:  # ELOOP: a symbolic link
        return f"fake: {path.name} is a link; not followed"
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return f"fake: {path.name} is not a regular file; not read"
        return f.read(MAX_MARKER).decode(errors="replace").strip()


def _build(hive: Hive, agent: AgentSpec, what: str) -> str:
    from hivekit.git import read_ref

    _misbehave(hive, agent, what)
    failure = read_marker(agent.paths.applied / FAIL_MARKER)
    if failure is not None:
        raise OperationFailed(failure or "fake: build failed")
    sha = read_ref(agent.paths.applied) or ""
    hive.log(agent, f"fake: built {agent.name} at {sha[:12]}")
    return sha


@contextlib.contextmanager
def _build_lock(hive: Hive, name: str) -> Iterator[None]:
    """Wait for any other build of ``name`` (a detached one may outlive its daemon)."""
    with open(fake_dir(hive) / f"{name}.build.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# The detached build: takes the agent's build lock, says what it builds, takes its time, then
# records the container as built at that sha (whether or not its daemon still lives).
_DETACHED = """
import fcntl, json, os, sys, time
lock_path, marker, container, sha, seconds = sys.argv[1:]
with open(lock_path, "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    with open(marker + ".tmp", "w") as f:
        f.write(sha)
    os.replace(marker + ".tmp", marker)
    time.sleep(float(seconds))
    state = json.load(open(container)) if os.path.exists(container) else {}
    state.update(running=True, built_sha=sha)
    with open(container + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(container + ".tmp", container)
    os.unlink(marker)
"""


def _detached_build(hive: Hive, agent: AgentSpec, seconds: float) -> None:
    import sys

    from hivekit.proc import run

    sha = _build(hive, agent, "rebuild")
    d = fake_dir(hive)
    hive.log(agent.name, f"fake: building {agent.name} at {sha[:12]} in a child process")
    run([sys.executable, "-c", _DETACHED, str(d / f"{agent.name}.build.lock"),
         str(d / f"{agent.name}.building"), str(_container(hive, agent.name)), sha,
         str(seconds)], timeout=seconds + 60)


@hookimpl
def config_schema() -> type:
    return FakeConfig


@hookimpl
def initial_config_files(hive: Hive, agent: AgentSpec) -> dict[str, str]:
    return {
        "agent.conf": f"# {agent.name}'s config (fake backend: any content builds)\n",
        "README.md": f"# {agent.name}\n\nCommit here, then request an apply of the commit.\n",
        **hive.plugin_config("fake").files,
    }


@hookimpl
def spawn(hive: Hive, agent: AgentSpec) -> None:
    _record(hive, "spawn", agent)
    with _build_lock(hive, agent.name):
        sha = _build(hive, agent, "spawn")
        _save(hive, agent.name, {"running": True, "built_sha": sha, "port": agent.port,
                                 "env": hive.agent_env(agent)})
    hive.report_status(agent, "running")


@hookimpl
def rebuild(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> None:
    _record(hive, "rebuild", agent, approval=deploy.approval_id if deploy else None)
    seconds = _settings(hive).detach.get(agent.name)
    if seconds is not None:
        # The child takes the build lock itself (it must hold it after this daemon died).
        _detached_build(hive, agent, seconds)
    else:
        with _build_lock(hive, agent.name):
            sha = _build(hive, agent, "rebuild")
            _save(hive, agent.name, {**(_load(hive, agent.name) or {}), "running": True,
                                     "built_sha": sha, "env": hive.agent_env(agent)})
    hive.report_status(agent, "running")


@hookimpl
def health_check(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> bool | str:
    """Healthy when its container runs, unless told otherwise (``unhealthy``, ``health_hang``)."""
    _record(hive, "health_check", agent, log="health",
            approval=deploy.approval_id if deploy else None)
    if agent.name in _settings(hive).health_hang:
        hive.log(agent, "fake: the health check hangs (told to)")
        while agent.name in _settings(hive).health_hang and not hive.stopping.wait(0.2):
            pass
    if reason := _settings(hive).unhealthy.get(agent.name):
        raise OperationFailed(reason)
    state = _load(hive, agent.name)
    return True if state and state.get("running") else f"fake: h-{agent.name} is not running"


@hookimpl
def health_timeout(hive: Hive, agent: AgentSpec) -> float | None:
    return _settings(hive).health_timeout.get(agent.name)


@hookimpl
def start(hive: Hive, agent: AgentSpec) -> None:
    _record(hive, "start", agent)
    state = _load(hive, agent.name)
    if state is None:
        raise OperationFailed(f"fake: container h-{agent.name} does not exist")
    _misbehave(hive, agent, "start")
    _save(hive, agent.name, {**state, "running": True, "env": hive.agent_env(agent)})
    hive.report_status(agent, "running")


@hookimpl
def restart(hive: Hive, agent: AgentSpec) -> bool:
    """The fake restarts in one go (the process backend has no restart: stop, then start)."""
    _record(hive, "restart", agent)
    state = _load(hive, agent.name)
    if state is None:
        raise OperationFailed(f"fake: container h-{agent.name} does not exist")
    _save(hive, agent.name, {**state, "running": True, "env": hive.agent_env(agent)})
    hive.report_status(agent, "running")
    return True


@hookimpl
def stop(hive: Hive, agent: AgentSpec) -> None:
    _record(hive, "stop", agent)
    state = _load(hive, agent.name)
    if state is not None:
        _save(hive, agent.name, {**state, "running": False})
    hive.report_status(agent, "stopped")


@hookimpl
def destroy(hive: Hive, agent: AgentSpec, purge: bool) -> None:
    _record(hive, "destroy", agent, purge=purge)
    with _build_lock(hive, agent.name):  # an orphaned build must not bring it back
        _container(hive, agent.name).unlink(missing_ok=True)


@hookimpl
def deploy_step(hive: Hive, deploy: Deploy, step: str) -> None:
    _record(hive, "deploy_step", deploy.agent, log="observed", approval=deploy.approval_id,
            step=step)


@hookimpl
def checkpoint(hive: Hive, agent: str, point: str) -> None:
    _maybe_crash(hive, agent, point)


@hookimpl
def prepare_deploy(hive: Hive, deploy: Deploy) -> None:
    _record(hive, "prepare_deploy", deploy.agent, approval=deploy.approval_id)
    _maybe_crash(hive, deploy.agent.name, "prepare_deploy")


@hookimpl
def finalize_deploy(hive: Hive, deploy: Deploy) -> None:
    _record(hive, "finalize_deploy", deploy.agent, approval=deploy.approval_id)
    _maybe_crash(hive, deploy.agent.name, "finalize_deploy")


@hookimpl
def abort_deploy(hive: Hive, deploy: Deploy, reason: str) -> None:
    _record(hive, "abort_deploy", deploy.agent, approval=deploy.approval_id, reason=reason)


@hookimpl
def agent_exec(hive: Hive, agent: AgentSpec, argv: list[str], tty: bool) -> ExecPlan:
    """No container to enter: ``argv`` runs on the host, in the agent's notes dir, with its
    identity (``HIVE_LABEL``, ``HIVE_NOTES``, ``HIVE_CREDS``) and ``HOME`` at its creds dir."""
    from hivekit.records import ExecPlan

    _record(hive, "exec", agent, argv=argv, tty=tty)
    p = agent.paths
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(p.creds),
           "HIVE_LABEL": agent.name, "HIVE_NOTES": str(p.state), "HIVE_CREDS": str(p.creds)}
    return ExecPlan(argv=list(argv), env=env, cwd=str(p.state))


@hookimpl
def approval_resolved(hive: Hive, approval: Approval, outbox_id: int) -> None:
    _record(hive, "approval_resolved", hive.agent(approval.agent), log="observed",
            approval=approval.id, status=approval.status.value, outbox_id=outbox_id)
    _maybe_crash(hive, approval.agent, "approval_resolved")


@hookimpl
def is_running(hive: Hive, agent: AgentSpec) -> bool:
    state = _load(hive, agent.name)
    return bool(state and state.get("running"))


# --- a test's way to make the fake report a status -------------------------------------------


@frozen
class StatusReport:
    """The body of ``POST /api/fake/agents/<name>/status``: ``hive.report_status``'s arguments."""

    status: str
    detail: str | None = None
    exit_code: int | None = None
    output: list[str] | None = None


@hookimpl
def register_routes(hive: Hive, register: Callable[[Any], None]) -> None:
    from litestar import Request, Response, post

    from hivekit.api import HiveDep, PathStr, body
    from hivekit.errors import BadRequest, NotFound
    from hivekit.names import check_name

    # This module postpones annotations: Litestar resolves them in this namespace.
    @post("/api/fake/agents/{name:str}/status", status_code=200, opt={"body": StatusReport},
          signature_namespace={"HiveDep": HiveDep, "PathStr": PathStr, "Request": Request,
                               "Response": Response})
    async def fake_status(hive: HiveDep, request: Request, name: PathStr) -> Response:
        """Report ``status`` for agent ``name`` through the status channel, as the fake's
        supervisor would; returns the agent's row."""
        report: StatusReport = body(request)
        name = check_name(name)
        try:
            hive.report_status(name, report.status, detail=report.detail,
                               exit_code=report.exit_code, output=report.output)
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc)) from None
        row = hive.view.row(name)
        if row is None:
            raise NotFound(f"no agent named {name!r} (the report is kept for its row)")
        from hivekit.convert import converter

        return Response(converter.unstructure(row))

    register(fake_status)


def report(hive: Any, name: str, status: str, **fields: Any) -> Any:
    """Make a running fake backend report ``status`` for ``name``; ``hive`` is a
    :class:`hivekit.testing.HiveProcess`. Returns the agent's row."""
    return hive.post(f"/api/fake/agents/{name}/status", {"status": status, **fields})
