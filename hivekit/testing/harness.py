"""A real ``hivekit serve`` in a child process, for end-to-end tests of hivekit and of plugins.

:class:`HiveProcess` starts the daemon on a config of the test's, talks to it over the admin
socket, and runs the ``hivekit`` CLI against it. Use it with any backend; the fake backend
(:mod:`hivekit.testing.fake`) lets a test steer builds (fail, delay, hang, crash).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def _installed(plugin: str, env: dict[str, str] | None) -> bool:
    """Whether a daemon started with ``env`` would find ``plugin`` (HIVEKIT_LOAD_PLUGINS too)."""
    from importlib.metadata import entry_points

    allow = {**os.environ, **(env or {})}.get("HIVEKIT_LOAD_PLUGINS")
    if allow is not None and plugin not in {n.strip() for n in allow.split(",")}:
        return False
    return any(ep.name == plugin for ep in entry_points(group="hivekit"))


class HiveProcess:
    """A real ``hivekit serve`` in a child process, for end-to-end tests of hivekit and plugins.

    ``root`` should be a short path (socket paths are limited to 107 bytes). ``config`` is the
    TOML text; its ``[hive]`` table gets ``state_dir``/``runtime_dir`` under ``root`` unless it
    sets them. Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Tests run many hives at once, so the dashboard (on by default) gets ``[dashboard] port = 0``
    (any free port) unless the config sets ``[dashboard]`` or ``[hive] dashboard_port`` itself:
    no test hive takes the operator's port 7000 or collides with another.
    """

    def __init__(self, root: Path, config: str = "[hive]\nbackend = \"fake\"\n",
                 env: dict[str, str] | None = None) -> None:
        import tomllib

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        raw = tomllib.loads(config)
        hive = raw.get("hive", {})
        extra = ""
        if "state_dir" not in hive:
            extra += 'state_dir = "state"\n'
        if "runtime_dir" not in hive:
            extra += 'runtime_dir = "run"\n'
        if "[hive]" in config:
            config = config.replace("[hive]\n", "[hive]\n" + extra, 1)
        else:
            config = "[hive]\n" + extra + config
        if "dashboard" not in raw and "dashboard_port" not in hive and _installed("dashboard",
                                                                                  env):
            config += "\n[dashboard]\nport = 0\n"
        self.config_path = self.root / "hivekit.toml"
        self.config_path.write_text(config)
        self.env = {**os.environ, "HIVEKIT_CONFIG": str(self.config_path), **(env or {})}
        self.state_dir = self.root / (hive.get("state_dir") or "state")
        self.runtime_dir = self.root / (hive.get("runtime_dir") or "run")
        self.socket = self.runtime_dir / "admin.sock"
        self.log_path = self.root / "serve.log"
        self.proc: Any = None

    def __enter__(self) -> HiveProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, wait: bool = True, timeout: float = 30.0) -> None:
        import subprocess
        import sys

        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([sys.executable, "-m", "hivekit", "serve"], cwd=self.root,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hivekit serve exited {self.proc.returncode}:\n{self.log()}")
            if self.socket.exists():
                try:
                    self.get("/api/state")
                    return
                except Exception:  # not answering yet
                    pass
            time.sleep(0.05)
        raise TimeoutError(f"hivekit serve did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, sig: int | None = None, timeout: float = 15.0) -> int | None:
        """Stop with ``sig`` (default SIGTERM) and return the exit code."""
        import signal
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig or signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        """SIGKILL: the crash a test of recovery needs."""
        import signal

        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    # --- talking to it -----------------------------------------------------------------------

    def client(self) -> Any:
        from hivekit.client import Client

        return Client(self.socket)

    def get(self, path: str, **params: Any) -> Any:
        return self.client().get(path, **params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.client().post(path, body)

    def cli(self, *args: str, input: str | None = None, timeout: float = 120.0) -> Any:
        """Run the ``hivekit`` CLI against this hive; returns the CompletedProcess (text)."""
        import subprocess
        import sys

        return subprocess.run([sys.executable, "-m", "hivekit", *args], cwd=self.root,
                              env=self.env, capture_output=True, text=True, input=input,
                              timeout=timeout)

    def wait_for(self, predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
        """Poll ``predicate()`` until it returns something truthy; return that."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"timed out waiting for {what}:\n{self.log()[-4000:]}")

    def approval(self, approval_id: int) -> dict[str, Any]:
        return self.get(f"/api/approvals/{approval_id}")["approval"]

    def wait_resolved(self, approval_id: int, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_for(
            lambda: (a := self.approval(approval_id))["status"] in ("approved", "denied",
                                                                  "failed") and a,
            timeout, f"approval #{approval_id} to resolve")

    def spawn(self, name: str) -> dict[str, Any]:
        """Request and approve a spawn of ``name``; wait until it is approved and its row has
        settled (no longer ``spawning``: the approval's status moves a moment before)."""
        approval = self.post("/api/requests/spawn", {"name": name})
        self.post(f"/api/approvals/{approval['id']}/approve")
        result = self.wait_resolved(approval["id"])
        if result["status"] != "approved":
            raise RuntimeError(f"spawn of {name} {result['status']}: {result['note']}")
        self.wait_for(lambda: any(a["name"] == name and a.get("transient") is None
                                  for a in self.get("/api/agents")),
                      what=f"{name}'s row to settle after its spawn")
        return result

    def commit(self, agent: str, files: dict[str, str], message: str = "change") -> str:
        """Commit ``files`` in ``agent``'s proposed repo (as the manager would); returns the sha."""
        from hivekit.git import Repo

        repo = Repo(self.state_dir / "agents" / agent / "config")
        for rel, content in files.items():
            (repo.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo.path / rel).write_text(content)
        return repo.commit_all(message)
