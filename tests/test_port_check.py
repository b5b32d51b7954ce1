"""The port_check plugin: deterministic ports, the collision veto, and the conflict report."""

from __future__ import annotations

import pytest

from hivekit import testing
from hivekit.client import ApiError
from hivekit.names import agent_port, fnv1a_32

# FNV-1a-32 of "", "a" and "foobar" are the published test vectors of the FNV reference
# (isthe.com/chongo/tech/comp/fnv, test suite); "a" checked by hand:
#   (0x811c9dc5 ^ 0x61) = 0x811c9da4;  0x811c9da4 * 0x01000193 mod 2**32
#   = (0xa4 << 24) + (0x811c9da4 * 0x193 mod 2**32) = 0xa4000000 + 0x400c292c = 0xe40c292c
# Ports: 8100 + h % 900 (defaults) and 9100 + h % 3 (the collision test's config), by hand:
#   0xe40c292c = 3826002220 = 900 * 4251113 + 520 = 3 * 1275334073 + 1
#   0xbf9cf968 = 3214735720 = 900 * 3571928 + 520 = 3 * 1071578573 + 1
#   0xcecdd6f2 = 3469596402 = 900 * 3855107 + 102 = 3 * 1156532134 + 0
TABLE = [
    # name,     fnv1a_32,   default port, port (base 9100, range 3)
    ("", 0x811C9DC5, None, None),
    ("a", 0xE40C292C, 8620, 9101),
    ("foobar", 0xBF9CF968, 8620, 9101),
    ("coder", 0xCECDD6F2, 8202, 9100),
]


@pytest.mark.parametrize(("name", "digest", "port", "small_port"), TABLE)
def test_port_values_match_precomputed_fnv1a(name, digest, port, small_port):
    assert fnv1a_32(name.encode()) == digest
    if port is not None:
        assert agent_port(name, manager="manager", manager_port=8000, base=8100,
                          span=900) == port
        assert agent_port(name, manager="manager", manager_port=8000, base=9100,
                          span=3) == small_port


def test_manager_has_its_fixed_port():
    assert agent_port("manager", manager="manager", manager_port=8000, base=8100,
                      span=900) == 8000
    assert agent_port("boss", manager="boss", manager_port=7777, base=8100, span=900) == 7777


SMALL = '[hive]\nbackend = "fake"\nport_base = 9100\nport_range = 3\n'


def _state(proc):
    return proc.get("/api/state")


def test_colliding_spawn_is_refused_and_the_conflict_is_reported(make_hive):
    proc = make_hive(SMALL)
    proc.wait_for(lambda: any(a["name"] == "manager" for a in _state(proc)["agents"]),
                  what="the manager")
    proc.spawn("a")
    ports = {a["name"]: a["port"] for a in _state(proc)["agents"]}
    assert ports == {"manager": 8000, "a": 9101}

    # "foobar" hashes to a's port while a runs: the request itself is refused, and nothing
    # of it exists (no approval, no repo, no tombstone, no backend call).
    with pytest.raises(ApiError) as err:
        proc.post("/api/requests/spawn", {"name": "foobar"})
    assert err.value.status == 409
    assert str(err.value).startswith(
        "port 9101 is already taken by 'a' — rename one of them and retry; ports come from")
    assert not [a for a in proc.get("/api/approvals", all="true") if a["agent"] == "foobar"]
    assert not (proc.state_dir / "agents" / "foobar").exists()
    assert not (proc.state_dir / "applied" / "foobar").exists()
    assert _state(proc)["tombstones"] == []
    assert not [c for c in testing.calls(proc.state_dir) if c["agent"] == "foobar"]
    assert _state(proc)["port_conflicts"] == []

    # Requested while a is stopped, approved once a runs again: refused when the spawn starts,
    # before the backend builds anything, and cleaned up: still no repo, no tombstone.
    proc.post("/api/agents/a/stop")
    approval = proc.post("/api/requests/spawn", {"name": "foobar"})
    proc.post("/api/agents/a/start")
    proc.post(f"/api/approvals/{approval['id']}/approve")
    result = proc.wait_resolved(approval["id"])
    assert result["status"] == "failed"
    assert result["note"] == (
        "port 9101 is already taken by 'a' — rename one of them and retry; ports come from "
        "the names: with 3 agents and [hive] port_range = 3, expect about 1.0 pairs of names to "
        "share a port (n*(n-1)/2 / port_range); a larger port_range makes that rarer (README: "
        '"Sizing port_range")')
    assert [c["call"] for c in testing.calls(proc.state_dir)
            if c["agent"] == "foobar"] == ["destroy"]
    assert not (proc.state_dir / "agents" / "foobar").exists()
    assert _state(proc)["tombstones"] == []
    assert "foobar" not in {a["name"] for a in _state(proc)["agents"]}

    # With a stopped, the spawn goes through; both are registered, so the report shows them.
    proc.post("/api/agents/a/stop")
    proc.spawn("foobar")
    assert _state(proc)["port_conflicts"] == [{"port": 9101, "agents": ["a", "foobar"]}]

    # A rebuild is vetoed the same way, through the API and the CLI.
    proc.post("/api/agents/foobar/stop")
    proc.post("/api/agents/a/start")
    with pytest.raises(ApiError) as err:
        proc.post("/api/agents/foobar/rebuild")
    assert err.value.status == 409
    assert "port 9101 is already taken by 'a'" in str(err.value)
    cli = proc.cli("rebuild", "foobar")
    assert cli.returncode == 1
    assert "port 9101 is already taken by 'a' — rename one of them and retry" in cli.stderr
    assert [c["call"] for c in testing.calls(proc.state_dir)
            if c["agent"] == "foobar"] == ["destroy", "spawn", "stop"]

    # The agent that holds the port rebuilds fine: only *other* running agents count.
    proc.post("/api/agents/a/rebuild")


def test_no_conflicts_without_collisions(hive):
    hive.spawn("coder")
    assert hive.get("/api/state")["port_conflicts"] == []
