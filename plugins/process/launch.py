"""The exec shim between the hive and an agent's program (or its bubblewrap).

``python -I launch.py [--parent PID] [--cgroup DIR]... [--env-dir DIR] [--rlimit NAME=N]...
-- ARGV...``

It asks the kernel to SIGKILL it when the hive's supervising thread dies (``PR_SET_PDEATHSIG``,
which survives ``execve``; not for ``hivekit exec``, which has no ``--parent``), checks that the
hive did not die before that took effect, moves itself into the agent's cgroups (so everything
the agent runs is counted there from its first instruction), adds the agent's credentials to
its environment (one variable per file of ``--env-dir``; a variable already set wins, so a
credential never replaces the identity the hive set), sets the rlimits, and ``execve``s
``ARGV`` in place (same pid, nothing left behind). The credentials are read here, not by the
daemon, so their values never pass through the daemon's memory or its API (``hivekit exec``
gets this command line). It does this in a
process of its own rather than in ``subprocess``'s ``preexec_fn`` because the daemon is
multi-threaded, where a ``preexec_fn`` may deadlock. Standard library only: it runs before every
agent start.

Exit codes when it cannot launch: 126 (a limit or the death signal could not be set), 127 (the
program could not be executed).
"""

from __future__ import annotations

import ctypes
import os
import re
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1


def _die(code: int, message: str) -> None:
    print(f"hivekit launch: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _pdeathsig(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        _die(126, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    # The hive may have died between fork and prctl: then nobody would ever kill us.
    if os.getppid() != parent:
        _die(126, f"the hive (pid {parent}) is gone; not starting")


def _rlimit(spec: str) -> None:
    name, _, value = spec.partition("=")
    which = getattr(resource, f"RLIMIT_{name}", None)
    if which is None or not value.isdigit():
        _die(126, f"bad --rlimit {spec!r} (want NAME=N, e.g. DATA=2147483648)")
    limit = int(value)
    soft, hard = limit, limit
    if name == "CPU":
        # SIGXCPU at the soft limit lets a program notice; SIGKILL follows at the hard one.
        hard = limit + 5
    current = resource.getrlimit(which)[1]
    if current != resource.RLIM_INFINITY:  # an unprivileged hive cannot raise its own ceiling
        hard = min(hard, current)
        soft = min(soft, hard)
    try:
        resource.setrlimit(which, (soft, hard))
    except (ValueError, OSError) as exc:
        _die(126, f"cannot set RLIMIT_{name} to {limit}: {exc}")


def _join(cgroup: str) -> None:
    try:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    except OSError as exc:
        _die(126, f"cannot join the agent's cgroup {cgroup}: {exc.strerror}")


#: The names a credential file may have (hivekit.creds checks them when they are set).
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _credentials(directory: str) -> None:
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    except OSError as exc:
        _die(126, f"cannot read the agent's credentials in {directory}: {exc.strerror}")
    for name in names:
        path = os.path.join(directory, name)
        if not _KEY.fullmatch(name) or name.startswith(("HIVE_", "LD_")) or \
                os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as f:
                value = f.read().decode(errors="replace")
        except OSError:
            continue
        if "\0" not in value:
            os.environ.setdefault(name, value)


def main(argv: list[str]) -> None:
    parent: int | None = None
    limits: list[str] = []
    cgroups: list[str] = []
    env_dir: str | None = None
    i = 0
    while i < len(argv) and argv[i] != "--":
        if i + 1 >= len(argv):
            _die(126, f"{argv[i]!r} needs a value")
        if argv[i] == "--parent":
            parent = int(argv[i + 1])
        elif argv[i] == "--rlimit":
            limits.append(argv[i + 1])
        elif argv[i] == "--cgroup":
            cgroups.append(argv[i + 1])
        elif argv[i] == "--env-dir":
            env_dir = argv[i + 1]
        else:
            _die(126, f"unknown argument {argv[i]!r}")
        i += 2
    program = argv[i + 1:]
    if not program:
        _die(126, "nothing to run (usage: launch [--parent PID] [--cgroup DIR]... "
                  "[--env-dir DIR] [--rlimit NAME=N]... -- ARGV...)")
    if parent is not None:
        _pdeathsig(parent)
    for cgroup in cgroups:
        _join(cgroup)
    if env_dir is not None:
        _credentials(env_dir)
    for spec in limits:
        _rlimit(spec)
    try:
        os.execvp(program[0], program)
    except OSError as exc:
        _die(127, f"cannot execute {program[0]!r}: {exc.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
