"""hivekit's own tests use the fixtures it offers third parties: ``short_tmp``, ``make_hive``
(real ``hivekit serve`` processes) and ``hive`` (one on the fake backend, its manager up); and,
below, process-backend hives of their own (``make_process_hive``, ``phive``, ``module_hive``)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hivekit.testing import HiveProcess

pytest_plugins = ["hivekit.testing.pytest_plugin"]


# --- process-backend hives (tests/test_process.py, tests/test_agent_ops.py) ----------------


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free right now (held together so they differ)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def page(port: int, path: str = "/api/status") -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def status(port: int) -> dict | None:
    text = page(port)
    return json.loads(text) if text else None


def wait_page(hive: Hive, port: int, name: str) -> dict:
    return hive.wait_for(lambda: (s := status(port)) and s["name"] == name and s,
                         timeout=30, what=f"{name}'s page on port {port}")


class Hive:
    """A process-backend hive: the daemon plus the ports its agents get."""

    def __init__(self, proc: HiveProcess, manager_port: int, agent_port: int) -> None:
        self.proc, self.manager_port, self.agent_port = proc, manager_port, agent_port

    def __getattr__(self, name: str):
        return getattr(self.proc, name)


@pytest.fixture
def make_process_hive(make_hive):
    def make(process: str = "", name: str = "h", start: bool = True,
             env: dict[str, str] | None = None) -> Hive:
        config, manager_port, agent_port = process_config(process)
        hive = Hive(make_hive(config, name=name, start=start, env=env), manager_port,
                    agent_port)
        if start:
            wait_page(hive, hive.manager_port, "manager")
        return hive

    return make


def process_config(process: str = "") -> tuple[str, int, int]:
    """A process-backend hive's config on free ports: ``(toml, manager_port, agent_port)``."""
    manager_port, agent_port = free_ports(2)
    # port_range = 1: every non-manager agent gets port_base, picked free for this test.
    defaults = "".join(f"{key} = {value}\n" for key, value in
                       (("restart_delay", 0.2), ("stop_timeout", 5)) if key not in process)
    config = (f'[hive]\nbackend = "process"\nmanager_port = {manager_port}\n'
              f"port_base = {agent_port}\nport_range = 1\n\n"
              f"[process]\n{defaults}{process}")
    return config, manager_port, agent_port


@contextlib.contextmanager
def module_hive(config: str | None = None, process: str | None = None) -> Iterator[Any]:
    """A hive for a module's tests to share (one daemon for checks that allow it): the fake
    backend with ``config``, or the process backend with ``process`` (its ``[process]`` keys);
    its manager up."""
    root = Path(tempfile.mkdtemp(prefix="hk", dir="/tmp"))
    try:
        if process is not None:
            toml, manager_port, agent_port = process_config(process)
            hive = Hive(HiveProcess(root / "h", toml), manager_port, agent_port)
        else:
            hive = HiveProcess(root / "h", config or '[hive]\nbackend = "fake"\n')
        hive.start()
        try:
            hive.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                                      for a in hive.get("/api/state")["agents"]),
                          what="the manager to come up")
            yield hive
        finally:
            try:
                hive.stop()
            except Exception:
                hive.kill()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def phive(make_process_hive) -> Hive:
    """A running process-backend hive whose manager answers on its port."""
    return make_process_hive()
