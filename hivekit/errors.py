"""Errors an operator may see.

Every error the domain raises on purpose is a :class:`HiveError`: its message is written for the
operator (what went wrong and what to do), and the surfaces print it without a traceback. The
``status`` is the HTTP status the API answers with; the domain itself knows nothing of HTTP beyond
this one number per kind of error.
"""

from __future__ import annotations


class HiveError(Exception):
    """An expected failure with an operator-facing message."""

    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadRequest(HiveError):
    """The request itself is wrong (bad name, missing field): fixing the input fixes it."""

    status = 400


class Forbidden(HiveError):
    """The caller may not do this (an agent's socket asking for what only the manager may)."""

    status = 403


class NotFound(HiveError):
    """The named agent, approval, question or commit does not exist."""

    status = 404


class Conflict(HiveError):
    """The request is valid but the hive's state refuses it (not pending, already exists, busy)."""

    status = 409


class ConfigError(HiveError):
    """The configuration is invalid. ``problems`` holds one line per problem."""

    status = 400

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class PluginError(HiveError):
    """A plugin could not be loaded or validated; the message names the plugin."""

    status = 500


class OperationFailed(HiveError):
    """A lifecycle or deploy operation ran and failed (a build error, a backend failure)."""

    status = 500


class CommandFailed(Exception):
    """An external program failed: what ran, how it ended, and the end of what it said.

    Raised by :func:`hivekit.proc.run` and everything built on it (git, nix, nixos-container...).
    ``str()`` gives one readable paragraph: the command line, the exit code (or the timeout) and
    the last lines of stderr, where tools like nix put the actual error.
    """

    # A plain class, not attrs: every CLI run imports this module, and attrs only for this.
    def __init__(self, argv: tuple[str, ...], exit_code: int | None, stderr_tail: str,
                 timed_out: bool = False, cancelled: bool = False) -> None:
        super().__init__(argv, exit_code, stderr_tail, timed_out, cancelled)
        self.argv, self.exit_code = tuple(argv), exit_code
        self.stderr_tail, self.timed_out = stderr_tail, timed_out
        #: Killed because the caller gave up (``run(cancel=...)``: the hive is stopping).
        self.cancelled = cancelled

    def __repr__(self) -> str:
        return (f"CommandFailed(argv={self.argv!r}, exit_code={self.exit_code!r}, "
                f"stderr_tail={self.stderr_tail!r}, timed_out={self.timed_out!r}, "
                f"cancelled={self.cancelled!r})")

    def __str__(self) -> str:
        cmd = " ".join(self.argv)
        how = ("was cancelled (the hive is stopping)" if self.cancelled else
               "timed out" if self.timed_out else f"exited {self.exit_code}")
        tail = self.stderr_tail.strip()
        return f"`{cmd}` {how}" + (f":\n{tail}" if tail else "")


def describe(exc: BaseException) -> str:
    """An exception as the operator reads it (and as a failed/<id> tag body records it): a
    :class:`HiveError`'s or :class:`CommandFailed`'s message as is, anything else as
    ``<ExceptionType>: <message>``."""
    if isinstance(exc, HiveError | CommandFailed):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
