"""pytest fixtures for testing hivekit plugins against a real daemon (as pytest's ``pytester``).

Enable them in a ``conftest.py``::

    pytest_plugins = ["hivekit.testing.pytest_plugin"]

* ``short_tmp``: a short temp dir (Unix socket paths must stay under 107 bytes), removed after.
* ``make_hive``: ``make_hive(config_toml, name="h", start=True, env=None)`` starts a real
  ``hivekit serve`` (:class:`~hivekit.testing.HiveProcess`) under ``short_tmp``; every hive it
  made is stopped after the test (killed if it does not stop).
* ``hive``: a running hive on the fake backend, its manager up.

The backend contract (:mod:`hivekit.testing.conformance`) needs none of them: it makes its own
daemon per test class.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hivekit.testing.harness import HiveProcess


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir: Unix socket paths must stay under 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="hk", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_hive(short_tmp: Path) -> Iterator[Callable[..., HiveProcess]]:
    """Start real daemons: ``make_hive(config_toml)`` → a started :class:`HiveProcess`."""
    started: list[HiveProcess] = []

    def make(config: str = '[hive]\nbackend = "fake"\n', name: str = "h",
             start: bool = True, **kwargs: Any) -> HiveProcess:
        proc = HiveProcess(short_tmp / name, config, **kwargs)
        if start:
            proc.start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        try:
            proc.stop()
        except Exception:
            proc.kill()


@pytest.fixture
def hive(make_hive: Callable[..., HiveProcess]) -> HiveProcess:
    """A running hive on the fake backend, its manager up."""
    proc = make_hive()
    proc.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                              for a in proc.get("/api/state")["agents"]),
                  what="the manager to come up")
    return proc
