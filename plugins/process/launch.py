"""The exec shim between the hive and an agent's program (or its bubblewrap).

``python -m hivekit_plugins.process.launch --parent PID [--rlimit NAME=N]... -- ARGV...``

It asks the kernel to SIGKILL it when the hive's supervising thread dies (``PR_SET_PDEATHSIG``,
which survives ``execve``), checks that the hive did not die before that took effect, sets the
rlimits, and ``execve``s ``ARGV`` in place (same pid, nothing left behind). It does this in a
process of its own rather than in ``subprocess``'s ``preexec_fn`` because the daemon is
multi-threaded, where a ``preexec_fn`` may deadlock. Standard library only: it runs before every
agent start.

Exit codes when it cannot launch: 126 (a limit or the death signal could not be set), 127 (the
program could not be executed).
"""

from __future__ import annotations

import ctypes
import os
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
        _die(126, f"bad --rlimit {spec!r} (want NAME=N, e.g. AS=2147483648)")
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


def main(argv: list[str]) -> None:
    parent: int | None = None
    limits: list[str] = []
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] == "--parent" and i + 1 < len(argv):
            parent = int(argv[i + 1])
            i += 2
        elif argv[i] == "--rlimit" and i + 1 < len(argv):
            limits.append(argv[i + 1])
            i += 2
        else:
            _die(126, f"unknown argument {argv[i]!r}")
    program = argv[i + 1:]
    if not program:
        _die(126, "nothing to run (usage: launch --parent PID [--rlimit NAME=N]... -- ARGV...)")
    if parent is not None:
        _pdeathsig(parent)
    for spec in limits:
        _rlimit(spec)
    try:
        os.execvp(program[0], program)
    except OSError as exc:
        _die(127, f"cannot execute {program[0]!r}: {exc.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
