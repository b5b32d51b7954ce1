"""The benchmarks in quick mode, so they cannot rot: each runs, writes the rows it promises, and
the correctness figures among them hold (messages lost, events out of order). Timings are never
asserted: speed is measured by ``python -m bench`` itself, on a quiet machine."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Every bench and (a prefix of) each metric its result must have.
EXPECTED: dict[str, list[str]] = {
    "deploy": ["request + approve -> deployed/<id>", "git subprocesses per deploy (hivekit)",
               "git commands hivekit ran that the floor does not"],
    "state": ["long history", "hivekit vs a bare handler", "4 dashboards polling vs 1",
              "the same polling against the bare handler", "hivekit's CPU, 4 dashboards",
              "POST /api/messages while", "payload size",
              "nixos_container, 10 agents: stand-in programs run per snapshot"],
    "broker": ["time per round trip", "server CPU per round trip", "delivery latency p50",
               "delivery latency p99", "messages sent", "messages lost",
               "messages handed out twice", "messages left unacknowledged",
               "messages stored"],
    "events": ["publish loop, one stuck subscriber vs none", "publisher thread's CPU",
               "publish to the last reader having every event",
               "reading subscribers with every event in seq order",
               "reading subscribers (all rounds)", "events missed by reading subscribers",
               "subscribers that saw events out of order",
               "stuck subscriber: events received", "stuck subscriber: events lost",
               "stuck subscriber: losses without a seq gap",
               "floor: readers with every event in order"],
    "coldstart": ["hivekit --help", "hivekit agents", "first run of hivekit --help"],
    "growth": ["spawn #", "the same, raw: spawn #", "the 1-agent hive's spawn"],
    "idle": ["0 agents: share of one core", "30 agents: share of one core",
             "90 agents: share of one core", "90 agents minus 0"],
    "meta": ["3 agents: deploy vs the Nix relock", "3 agents: spawn vs adding one input",
             "3 agents: destroy vs removing one input", "6 agents: deploy vs the Nix relock",
             "6 agents: other lock entries a deploy moved"],
}


def run_bench(name: str, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{name}.json"
    proc = subprocess.run([sys.executable, "-m", "bench", name, "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    results = json.loads(out.read_text())
    assert len(results) == 1
    return results[0]


def value(result: dict[str, Any], prefix: str) -> float:
    rows = [r for r in result["rows"] if r["metric"].strip().startswith(prefix)]
    assert len(rows) == 1, f"{prefix!r} in {[r['metric'] for r in result['rows']]}"
    return rows[0]["value"]


def test_every_bench_is_checked():
    listed = subprocess.run(
        [sys.executable, "-c", "from bench.__main__ import BENCHES; print(*BENCHES)"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert sorted(listed) == sorted(EXPECTED)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_quick_bench_writes_its_rows(name, short_tmp):
    result = run_bench(name, short_tmp)
    assert result["name"]
    for row in result["rows"]:
        assert isinstance(row["metric"], str) and row["unit"]
        assert isinstance(row["value"], int | float) and not math.isnan(row["value"])
        if "floor" in row:
            assert row["floor"] > 0 and row["ratio"] == pytest.approx(row["value"] / row["floor"])
        if "target" in row:
            assert isinstance(row["met"], bool)
    for prefix in EXPECTED[name]:
        value(result, prefix)  # present, once

    if name == "broker":
        sent = value(result, "messages sent")
        assert sent > 0
        assert value(result, "messages lost") == 0
        assert value(result, "messages handed out twice") == 0
        assert value(result, "messages left unacknowledged") == 0
        assert value(result, "messages stored") == sent
    if name == "deploy":
        assert value(result, "git commands hivekit ran that the floor does not") == 0
    if name == "state":
        assert value(result, "nixos_container, 10 agents: stand-in programs run per "
                             "snapshot") == 0
        assert value(result, "nixos_container, 10 agents: rows shown running") == 11
    if name == "meta":
        for size in (3, 6):
            assert value(result, f"{size} agents: other lock entries a deploy moved") == 0
    if name == "events":
        readers = value(result, "reading subscribers (all rounds)")
        assert readers > 0
        assert value(result, "reading subscribers with every event in seq order") == readers
        assert value(result, "events missed by reading subscribers") == 0
        assert value(result, "subscribers that saw events out of order") == 0
        # The stuck subscriber was made to overflow; what it lost shows as a gap or a cut.
        assert value(result, "stuck subscriber: events lost") > 0
        assert value(result, "stuck subscriber: losses without a seq gap") == 0
        assert value(result, "floor: readers with every event in order") == 1
