"""Running external programs: every call has a timeout, and every failure says what ran.

All of hivekit's subprocesses (git, nix, nixos-container, systemctl, forgejo...) go through
:func:`run`, built on ``sh``. A non-zero exit or a timeout becomes one
:class:`~hivekit.errors.CommandFailed` carrying the command line and the *end* of stderr (nix and
friends put the actual error last); a missing program becomes a :class:`ProgramMissing` that says
which program to install.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import sh

from hivekit.errors import CommandFailed, HiveError

#: How many stderr lines a failure keeps.
TAIL_LINES = 32
DEFAULT_TIMEOUT = 120.0


class ProgramMissing(HiveError):
    status = 500


def tail(text: str | bytes, lines: int = TAIL_LINES) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    on_line: Callable[[str, str], None] | None = None,
) -> str:
    """Run ``argv`` and return its stdout (text).

    :param env: the *whole* environment (``sh``'s ``_env`` replaces it); default: inherited.
    :param on_line: called as ``on_line(stream, line)`` for each stdout/stderr line as it comes
        ("stdout"/"stderr"), for live logs of long builds; stdout is still returned.
    :raises CommandFailed: non-zero exit or timeout.
    :raises ProgramMissing: ``argv[0]`` is not found.
    """
    args = [os.fspath(a) for a in argv]
    try:
        cmd = sh.Command(args[0])
    except sh.CommandNotFound:
        raise ProgramMissing(
            f"program {args[0]!r} was not found on PATH; install it (or configure its path)"
        ) from None
    # Not sh's own `_timeout`: its watcher thread polls every 100 ms and every call waits for it
    # (110 ms per `git rev-parse` instead of 7). A timer that kills the child costs nothing.
    kwargs: dict = {"_cwd": str(cwd) if cwd else None, "_truncate_exc": False,
                    "_tty_out": False, "_bg": True, "_bg_exc": False}
    if env is not None:
        kwargs["_env"] = dict(env)
    if stdin is not None:
        kwargs["_in"] = stdin
    out_lines: list[str] = []
    err_tail: deque[str] = deque(maxlen=TAIL_LINES)
    if on_line is not None:
        def _out(line: str) -> None:
            out_lines.append(line)
            on_line("stdout", line.rstrip("\n"))

        def _err(line: str) -> None:
            err_tail.append(line.rstrip("\n"))
            on_line("stderr", line.rstrip("\n"))

        kwargs.update(_out=_out, _err=_err)
    timed_out = threading.Event()
    result = cmd(*args[1:], **kwargs)
    timer = None
    if timeout is not None:
        def expire() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                result.kill()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
    try:
        result.wait()
    except sh.ErrorReturnCode as exc:
        stderr = "\n".join(err_tail) if on_line else tail(exc.stderr)
        raise CommandFailed(tuple(args), None if timed_out.is_set() else exc.exit_code, stderr,
                            timed_out.is_set()) from None
    finally:
        if timer is not None:
            timer.cancel()
    if on_line is not None:
        return "".join(out_lines)
    return str(result)
