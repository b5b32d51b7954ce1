"""File modes do not depend on the umask: a daemon started under ``umask 000`` still keeps its
state dir, database (every message is in it), tokens and sockets to itself."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hivekit.testing import HiveProcess


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_modes_under_a_permissive_umask(short_tmp: Path) -> None:
    hive = HiveProcess(short_tmp / "h")
    old = os.umask(0)  # the daemon inherits it
    try:
        hive.start()
    finally:
        os.umask(old)
    try:
        hive.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                                  for a in hive.get("/api/state")["agents"]), what="manager")
        hive.spawn("coder")
        hive.post("/api/messages", {"to": "coder", "body": "into the WAL"})
        state, run = hive.state_dir, hive.runtime_dir
        expected = {
            state: 0o700, run: 0o700,
            state / "hive.db": 0o600, state / "hive.db-wal": 0o600,
            state / "hive.db-shm": 0o600, state / "hive.lock": 0o600,
            state / "dashboard-token": 0o600,
            run / "admin.sock": 0o600, run / "agents" / "coder": 0o700,
            run / "agents" / "coder" / "hive.sock": 0o600,
            state / "agents" / "coder" / "creds": 0o700,
        }
        assert {str(p): oct(mode(p)) for p in expected} == {
            str(p): oct(m) for p, m in expected.items()}
        # Nothing in the runtime dir is open to others: the sockets are the agents' identity.
        for path in [run, *run.rglob("*")]:
            assert mode(path) & 0o077 == 0, (path, oct(mode(path)))
    finally:
        hive.stop()


def test_an_existing_state_dir_open_to_others_is_tightened(short_tmp: Path) -> None:
    hive = HiveProcess(short_tmp / "h")
    hive.state_dir.mkdir(parents=True)
    os.chmod(hive.state_dir, 0o777)
    (hive.state_dir / "hive.db").touch()
    os.chmod(hive.state_dir / "hive.db", 0o666)
    hive.runtime_dir.mkdir(parents=True)
    os.chmod(hive.runtime_dir, 0o750)  # an operator group may look: kept
    with hive:
        assert mode(hive.state_dir) == 0o750
        assert mode(hive.state_dir / "hive.db") == 0o600
        assert mode(hive.runtime_dir) == 0o750
        assert "was open to others (mode 777); set to 750" in hive.log()
