"""Stopping the daemon: SIGTERM and SIGINT end it cleanly (shutdown hooks run, socket removed)."""

from __future__ import annotations

import signal

import pytest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_daemon_cleanly(make_hive, sig: int) -> None:
    hive = make_hive()
    assert hive.stop(sig) == 0, hive.log()
    assert not hive.socket.exists()
