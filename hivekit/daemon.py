"""``hivekit serve``: open the store, load plugins, recover, and serve the API on the admin socket.

One daemon per state dir, enforced by an flock on ``<state_dir>/hive.lock`` (held for the
daemon's life; the kernel drops it however the process dies, so a stale lock never blocks a
restart). SIGINT/SIGTERM stop it cleanly: event streams are ended first so open dashboards never
hold the stop up, then ``shutdown`` hooks run and the socket is removed.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import signal
import threading
from pathlib import Path
from typing import IO, Any

import uvicorn

from hivekit import deploy, hookimpl
from hivekit.badges import Badges
from hivekit.config import Config
from hivekit.errors import HiveError
from hivekit.hive import Hive
from hivekit.paths import private_dir, private_file
from hivekit.plugins import Loaded, register
from hivekit.questions import Watchdog
from hivekit.records import AgentStatus, Transient
from hivekit.remotes import Remotes
from hivekit.serving import QuietServer
from hivekit.sockets import bind_unix

log = logging.getLogger("hivekit")

#: Seconds open connections get to finish when the daemon stops.
GRACEFUL_SECONDS = 2


class StateDirLock:
    """An exclusive flock on ``path``; the holder's pid is written into it for the refusal."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        private_dir(self.path.parent)
        # Held open for the daemon's life; 0600 whatever the umask (it holds a pid only, but
        # nobody else may take the lock away by rewriting it).
        f = os.fdopen(os.open(private_file(self.path), os.O_RDWR | os.O_NOFOLLOW), "r+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise HiveError(
                f"another hivekit is already serving {self.path.parent} (pid {holder}); "
                "stop it first, or use another state_dir") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


class Server(QuietServer):
    """uvicorn's server, ending the hive's event streams as soon as a stop is asked for."""

    def __init__(self, config: uvicorn.Config, hive: Hive) -> None:
        super().__init__(config)
        self.hive = hive

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.hive.stopping.set()
        self.hive.bus.close()
        # Not super(): uvicorn would re-raise the signal once serving ends, killing the process
        # before the shutdown hooks run and the socket is removed. A second SIGINT forces.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


class Reconcile:
    """The core's last startup step (plugin ``core-reconcile``): bring the declared hive up.

    The manager is spawned without an approval the first time; afterwards every agent the
    operator last wanted running and that is not is started. Runs in the background so the API
    answers at once; failures are logged (and visible as stopped agents).
    """

    @hookimpl(trylast=True)
    def startup(self, hive: Hive) -> None:
        # Every other plugin has started (a backend may have reported its agents' status):
        # make the rows now, before the first request.
        hive.view.seed()
        threading.Thread(target=self.bring_up, args=(hive,), name="reconcile",
                         daemon=True).start()

    @staticmethod
    def bring_up(hive: Hive) -> None:
        try:
            if not hive.store.has_agent(hive.manager):
                deploy.spawn_manager(hive)
        except Exception as exc:
            log.error("could not bring up the manager %r: %s", hive.manager, deploy.describe(exc))
        for name, wanted in hive.store.wanted().items():
            if wanted != "running" or hive.stopping.is_set():
                continue
            agent = hive.agent(name)
            try:
                row = hive.view.row(name)
                if row is not None and row.status == AgentStatus.RUNNING:
                    continue
                with hive.begin(name, Transient.STARTING):
                    hive.hook.start(hive=hive, agent=agent)
                hive.call_each("agent_started", hive=hive, agent=agent,
                               reason="the hive started")
            except Exception as exc:
                log.error("could not start %r: %s", name, deploy.describe(exc))


def build_hive(config: Config, loaded: Loaded) -> Hive:
    """A :class:`Hive` with the core's own plugins registered beside the enabled ones."""
    register(loaded.pm, "core", deploy.Recovery())
    register(loaded.pm, "core-reconcile", Reconcile())
    register(loaded.pm, "core-questions", Watchdog())
    register(loaded.pm, "core-badges", Badges())
    register(loaded.pm, "core-remotes", Remotes())
    return Hive(config, loaded)


def operator_group(hive: Hive) -> int | None:
    """The operator group's gid, with the runtime dir made theirs to enter (0750); None if the
    config names none.

    :raises HiveError: the group does not exist, or the daemon cannot give it the dir.
    """
    import grp

    name = hive.config.hive.operator_group
    if name is None:
        return None
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        raise HiveError(f"[hive] operator_group {name!r}: there is no such group on this host; "
                        "create it (the NixOS module's services.hivekit.operatorGroup does) or "
                        "remove the key") from None
    runtime = hive.paths.runtime_dir
    runtime.mkdir(parents=True, exist_ok=True)
    try:
        os.chown(runtime, -1, gid)
        os.chmod(runtime, 0o750)
    except OSError as exc:
        raise HiveError(f"[hive] operator_group {name!r}: cannot give {runtime} to the group "
                        f"({exc.strerror}): the daemon's user must be a member of it") from None
    return gid


#: Open files the daemon wants: a socket per agent (up to 900), an agent's connections to it
#: (a long-poll each), the dashboards', the store's, the backend's pipes.
WANTED_OPEN_FILES = 8192


def raise_open_files() -> None:
    """Raise the soft limit on open files towards the hard one (the usual soft default, 1024,
    is less than a full hive's sockets and connections); say so if it stays short."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WANTED_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard,
                                                                          WANTED_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft != resource.RLIM_INFINITY and soft < WANTED_OPEN_FILES:
        log.warning("open files are limited to %d (hard limit): a hive of many agents needs "
                    "~2 per agent; raise it (LimitNOFILE= in the service, ulimit -n)", soft)


def serve(config: Config, loaded: Loaded) -> int:
    """Run the daemon until SIGINT/SIGTERM; returns the exit code."""
    lock = StateDirLock(config.state_dir / "hive.lock")
    lock.acquire()
    raise_open_files()
    hive = None
    sock_path = None
    try:
        hive = build_hive(config, loaded)
        from hivekit import state
        from hivekit.api import create_app

        # Built first: a route two plugins claim stops the start before any plugin started.
        app = create_app(hive)
        # Before any plugin starts: a missing operator group stops the start with nothing begun.
        group = operator_group(hive)
        hive.hook.startup(hive=hive)
        state.check_extras(hive)
        sock_path = hive.paths.admin_socket
        sock = bind_unix(sock_path, group=group)
        uv_config = uvicorn.Config(app, log_level="warning", lifespan="off",
                                   timeout_graceful_shutdown=GRACEFUL_SECONDS)
        server = Server(uv_config, hive)
        log.info("hivekit serving %s (backend %s, plugins: %s)", sock_path, loaded.backend,
                 ", ".join(loaded.enabled))
        asyncio.run(server.serve(sockets=[sock]))
        return 0
    finally:
        if hive is not None:
            hive.stopping.set()
            hive.bus.close()
            hive.doorbell.close()  # long-polling receivers answer now, not at their timeout
            hive.call_each("shutdown", hive=hive)
        if sock_path is not None:
            sock_path.unlink(missing_ok=True)
        lock.release()
