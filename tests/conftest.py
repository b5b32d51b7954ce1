"""Shared fixtures: a real ``hivekit serve`` process (``hive``), and an in-process hive for the
domain tests that don't need a process (``local_hive``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hivekit.testing import HiveProcess


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir: Unix socket paths must stay under 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="hk", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_hive(short_tmp: Path) -> Iterator:
    """Start real daemons: ``make_hive(config_toml)`` → a started :class:`HiveProcess`."""
    started: list[HiveProcess] = []

    def make(config: str = '[hive]\nbackend = "fake"\n', name: str = "h",
             start: bool = True, **kwargs) -> HiveProcess:
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
def hive(make_hive) -> HiveProcess:
    """A running hive on the fake backend, its manager up."""
    proc = make_hive()
    proc.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                              for a in proc.get("/api/state")["agents"]),
                  what="the manager to come up")
    return proc
