"""One agent's supervised process: launch, output, restart with backoff, stop.

A :class:`Child` owns a thread that starts the agent's process and waits for it. Everything that
creates the process happens on that thread, because the parent-death signal (and bubblewrap's
``--die-with-parent``) fires when the *thread* that forked the child ends: a child started from
a short-lived request thread would be killed as soon as that request finished.

The agent is its process group: it starts in a session of its own, a stop sends SIGTERM to the
group (sparing bubblewrap's own processes, which would otherwise tear the sandbox down before
the agent could finish), SIGKILL to the whole group after the stop timeout, and whatever is left
of the group when the agent's main process ends is killed, so nothing of a crashed agent lingers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

from attrs import frozen

#: Lines of output kept to explain a failed start or a crash.
TAIL_LINES = 20

#: ``report(status, detail, exit_code, output)``: see :class:`Child`.
Report = Callable[[str, "str | None", "int | None", list[str]], None]


@frozen
class Launch:
    """Everything needed to start one agent's process."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    #: How the start is described in the logs (the agent's own command line).
    describe: str
    #: The bubblewrap program when sandboxed (its processes are spared the SIGTERM of a stop).
    bwrap: str | None = None
    #: Whether a start counts only once the process listens on the agent's port.
    wait_for_port: bool = True


class LogFile:
    """``agent.log``: appended line by line from two threads, rotated to ``.1`` past a size."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path, self.max_bytes = path, max_bytes
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None

    def write(self, line: str) -> None:
        data = (line + "\n").encode(errors="replace")
        with self._lock:
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = open(self.path, "ab")  # noqa: SIM115 - kept open
                if self._file.tell() + len(data) > self.max_bytes:
                    self._file.close()
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                    self._file = open(self.path, "ab")  # noqa: SIM115 - kept open
                self._file.write(data)
                self._file.flush()
            except OSError:
                # The agent may have removed its notes dir; the live log still has the line.
                self._file = None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def group_members(pgid: int) -> list[int]:
    """Pids whose process group is ``pgid`` (read from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Child:
    """One agent's process, kept running while it is wanted.

    :param log: ``log(line, stream)`` for every line of output and every supervision message.
    :param report: ``report(status, detail, exit_code, output)``, called on the supervising
        thread whenever the process came up, ended (asked to or not) or failed to start: the
        hive's status channel (``hive.report_status``).
    """

    def __init__(self, name: str, *, logfile: LogFile, pidfile: Path,
                 log: Callable[[str, str], None], report: Report,
                 stopping: threading.Event, restart_delay: float, restart_delay_max: float,
                 restart_reset: float) -> None:
        self.name = name
        self.logfile, self.pidfile = logfile, pidfile
        self._log, self._report, self._stopping = log, report, stopping
        self.restart_delay, self.restart_delay_max = restart_delay, restart_delay_max
        self.restart_reset = restart_reset
        self._cond = threading.Condition()
        self._want = False
        self._launch: Launch | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        #: Launches so far; the current process is launch number ``_gen``.
        self._gen = 0
        self._exits: dict[int, int] = {}
        self._error: str | None = None
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        #: Restarts after crashes since the last start the operator (or a deploy) asked for.
        self.restarts = 0
        #: False from a start until its caller saw the process come up: an exit before that
        #: is a failed start (the caller reports it), not a crash to restart.
        self._settled = False
        #: The supervising thread has finished.
        self._ended = False
        #: The exit code of the last crash (reported with the restart that followed it).
        self._last_crash: int | None = None

    # --- what callers see ----------------------------------------------------------------------

    @property
    def launch(self) -> Launch | None:
        """What the child runs (or last ran)."""
        return self._launch

    def running(self) -> bool:
        # Not proc.poll(): that would reap the process behind the supervising thread's back.
        with self._cond:
            return self._proc is not None

    def waiting_to_restart(self) -> bool:
        """Wanted, but between a crash and the restart."""
        with self._cond:
            return self._want and self._proc is None and self._gen > 0

    def pid(self) -> int | None:
        with self._cond:
            return self._proc.pid if self._proc is not None else None

    def exit_of(self, gen: int) -> int | None:
        """The exit code of launch ``gen`` if it has ended, else None."""
        with self._cond:
            return self._exits.get(gen)

    def tail(self) -> list[str]:
        with self._cond:
            return list(self._tail)

    # --- start and stop --------------------------------------------------------------------------

    def start(self, launch: Launch) -> int:
        """Start the process (the child must be stopped); returns its launch number.

        :raises OSError: the process could not be created at all (its message says why).
        """
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError(f"{self.name}: start while still supervised")
            self._launch, self._want, self._error = launch, True, None
            self.restarts, self._settled = 0, False
            self._tail.clear()
            target = self._gen + 1
            self._ended = False
            self._thread = threading.Thread(target=self._supervise, name=f"agent-{self.name}",
                                            daemon=True)
            self._thread.start()
            self._cond.wait_for(lambda: self._gen >= target or self._error is not None
                                or self._ended)
            if self._error is not None:
                raise OSError(self._error)
            if self._gen < target:
                raise OSError("not started: the hive is stopping")
            return target

    def settled(self) -> None:
        """The process started by :meth:`start` is up: from now on an exit is a crash."""
        with self._cond:
            self._settled = True

    def request_stop(self) -> subprocess.Popen[bytes] | None:
        """Stop wanting the process and send it SIGTERM; returns it (None if none ran)."""
        with self._cond:
            self._want = False
            proc = self._proc
            launch = self._launch
            self._cond.notify_all()
        if proc is not None:
            self._say(f"stopping pid {proc.pid} (SIGTERM)")
            self._terminate(proc.pid, launch.bwrap if launch else None)
        return proc

    def finish_stop(self, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
        """Wait up to ``timeout`` for a requested stop, then SIGKILL the group; join the thread."""
        if proc is not None:
            with self._cond:
                ended = self._cond.wait_for(lambda: self._proc is not proc, timeout)
            if not ended:
                self._say(f"pid {proc.pid} did not stop within {timeout:g}s: SIGKILL")
                _killpg(proc.pid, signal.SIGKILL)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; returns once the process is gone."""
        self.finish_stop(self.request_stop(), timeout)

    @staticmethod
    def _terminate(pgid: int, bwrap: str | None) -> None:
        if bwrap is None:
            _killpg(pgid, signal.SIGTERM)
            return
        # bubblewrap's outer process dies of SIGTERM and takes the sandbox with it at once;
        # signal everything else in the group so the agent can shut down cleanly.
        spare = os.path.realpath(bwrap)
        for pid in group_members(pgid):
            if _exe(pid) != spare:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)

    def _say(self, message: str) -> None:
        """A supervision message: into agent.log (marked and timed) and the live log."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.logfile.write(f"[hivekit {stamp}] {message}")
        self._log(message, "hive")

    # --- the supervising thread ------------------------------------------------------------------

    def _supervise(self) -> None:
        try:
            self._supervise_loop()
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _supervise_loop(self) -> None:
        delay = self.restart_delay
        while True:
            with self._cond:
                if not self._want or self._stopping.is_set():
                    break
                launch = self._launch
            assert launch is not None
            proc = self._spawn(launch)
            if proc is None:
                break
            started = time.monotonic()
            code = self._wait(proc)
            ran = time.monotonic() - started
            with self._cond:
                wanted = self._want and not self._stopping.is_set()
                failed_start = wanted and not self._settled
                if failed_start:
                    self._want = False
            if failed_start:
                self._say(f"pid {proc.pid} ended while starting ({describe_exit(code)})")
                self._report("stopped", f"ended while starting ({describe_exit(code)})", code,
                             self.tail())
                break
            if not wanted:
                self._say(f"pid {proc.pid} stopped ({describe_exit(code)})")
                self._report("stopped", None, code, [])
                break
            if ran >= self.restart_reset:
                delay = self.restart_delay
            self.restarts += 1
            self._say(f"pid {proc.pid} exited unexpectedly ({describe_exit(code)}) after "
                      f"{ran:.1f}s; restarting in {delay:g}s (restart {self.restarts})")
            self._last_crash = code
            self._report("failing", f"crashed ({describe_exit(code)}), restarting in "
                                    f"{delay:g}s (restart {self.restarts})", code, self.tail())
            with self._cond:
                self._cond.wait_for(lambda: not self._want or self._stopping.is_set(), delay)
            delay = min(delay * 2, self.restart_delay_max)

    def _spawn(self, launch: Launch) -> subprocess.Popen[bytes] | None:
        try:
            proc = subprocess.Popen(launch.argv, env=launch.env, cwd=launch.cwd,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            message = f"cannot start {launch.describe}: {exc.strerror or exc}"
            self._say(message)
            self._report("stopped", message, None, [])
            with self._cond:
                self._error, self._want = message, False
                self._cond.notify_all()
            return None
        with self._cond:
            self._proc = proc
            self._gen += 1
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            self.pidfile.parent.mkdir(parents=True, exist_ok=True)
            self.pidfile.write_text(f"{proc.pid}\n")
        self._say(f"started pid {proc.pid}: {launch.describe}")
        if self.restarts:
            self._report("running", f"running again after a crash (restart {self.restarts})",
                         self._last_crash, self.tail())
        else:
            self._report("running", None, None, [])
        return proc

    def _wait(self, proc: subprocess.Popen[bytes]) -> int:
        pumps = [threading.Thread(target=self._pump, args=(stream, name), daemon=True,
                                  name=f"agent-{self.name}-{name}")
                 for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
        for pump in pumps:
            pump.start()
        # Wait without reaping: while the zombie holds its pid, the group id cannot be reused,
        # so the SIGKILL for the group's leftovers reaches only them.
        while True:
            try:
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
        _killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
        for pump in pumps:
            pump.join(timeout=2)
        with contextlib.suppress(OSError):
            self.pidfile.unlink()
        with self._cond:
            self._exits[self._gen] = code
            self._exits.pop(self._gen - 8, None)  # only recent launches are ever asked about
            self._proc = None
            self._cond.notify_all()
        return code

    def _pump(self, stream: IO[bytes] | None, name: str) -> None:
        if stream is None:
            return
        with stream:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip("\r\n")
                with self._cond:
                    self._tail.append(line)
                self.logfile.write(line)
                self._log(line, name)
