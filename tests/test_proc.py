"""External programs: output, failures with the command line and stderr's end, timeouts."""

from __future__ import annotations

import time

import pytest

from hivekit.errors import CommandFailed
from hivekit.proc import ProgramMissing, follow, run


def test_stdout_is_returned():
    assert run(["git", "--version"]).startswith("git version")


def test_failure_carries_command_and_stderr_tail():
    script = "for i in $(seq 1 100); do echo line$i >&2; done; exit 3"
    with pytest.raises(CommandFailed) as info:
        run(["sh", "-c", script])
    exc = info.value
    assert exc.exit_code == 3 and not exc.timed_out
    lines = exc.stderr_tail.splitlines()
    assert lines[0] == "line69" and lines[-1] == "line100"  # the last 32: where nix's error is
    assert str(exc).startswith("`sh -c for i in")


def test_timeout_kills_and_says_so():
    started = time.monotonic()
    with pytest.raises(CommandFailed) as info:
        run(["sleep", "30"], timeout=0.5)
    assert info.value.timed_out and "timed out" in str(info.value)
    assert time.monotonic() - started < 10


def test_missing_program_names_it():
    with pytest.raises(ProgramMissing, match="'no-such-prog' was not found on PATH"):
        run(["no-such-prog", "x"])


def test_lines_stream_as_they_come():
    seen = []
    out = run(["sh", "-c", "echo one; echo two >&2; echo three"],
              on_line=lambda stream, line: seen.append((stream, line)))
    assert out == "one\nthree\n"
    assert ("stderr", "two") in seen
    assert [line for stream, line in seen if stream == "stdout"] == ["one", "three"]


def test_follow_streams_lines_says_when_it_waits_and_kills_on_close():
    lines = follow(["sh", "-c", "echo one; echo two; exec sleep 30"], idle=0.05)
    assert [next(lines), next(lines)] == ["one", "two"]
    assert next(lines) is None  # nothing for a while: the reader may stop now
    started = time.monotonic()
    lines.close()  # the sleep is killed with its group, not waited for
    assert time.monotonic() - started < 5


def test_follow_reports_a_failure_with_stderr():
    with pytest.raises(CommandFailed) as info:
        list(follow(["sh", "-c", "echo partial; echo broken >&2; exit 4"]))
    assert info.value.exit_code == 4 and "broken" in info.value.stderr_tail


def test_a_cancelled_run_kills_its_program_and_says_so():
    import threading

    from hivekit.proc import run

    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    began = time.monotonic()
    with pytest.raises(CommandFailed) as err:
        run(["sh", "-c", "sleep 30 & sleep 30"], timeout=60, cancel=cancel)
    assert time.monotonic() - began < 30  # it did not wait for the program to end
    assert err.value.cancelled and not err.value.timed_out
    assert "was cancelled (the hive is stopping)" in str(err.value)
    assert run(["echo", "ok"], cancel=threading.Event()) == "ok\n"  # not set: runs as usual
