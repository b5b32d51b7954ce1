"""Idle CPU: what a ``hivekit serve`` (fake backend) with 0, 300 and 900 agents spends doing
nothing, as a share of one core. The three daemons run at once and are measured over the same
windows (so the machine's load is the same for each). Every agent has its socket served (one
server for all of them) and is watched like any agent (its creds dir, its row)."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from bench.broker import cpu_seconds
from bench.common import Result, load_average, short_tmp
from bench.state import start_hive


def sockets_ready(hive: object, count: int) -> bool:
    run = Path(hive.runtime_dir) / "agents"  # type: ignore[attr-defined]
    try:
        return sum(1 for d in os.scandir(run) if (Path(d.path) / "hive.sock").exists()) >= count
    except FileNotFoundError:
        return count == 0


def run(quick: bool = False) -> Result:
    sizes = (0, 30, 90) if quick else (0, 300, 900)
    window = 2.0 if quick else 20.0
    windows = 1 if quick else 3
    result = Result(f"idle daemon CPU at {', '.join(map(str, sizes))} agents")
    root = short_tmp()
    hives = {}
    try:
        for size in sizes:
            hive = hives[size] = start_hive(root / f"n{size}", size, (0, 0))
            hive.wait_for(lambda h=hive, n=size: sockets_ready(h, n + 1), timeout=300,
                          what=f"{size} agents' sockets")
        time.sleep(3.0 if quick else 10.0)  # startup's work done (reconcile, first looks)
        shares: dict[int, list[float]] = {size: [] for size in sizes}
        for _ in range(windows):
            before = {s: cpu_seconds(h.proc.pid) for s, h in hives.items()}
            t = time.monotonic()
            time.sleep(window)
            elapsed = time.monotonic() - t
            for size, hive in hives.items():
                shares[size].append((cpu_seconds(hive.proc.pid) - before[size]) / elapsed * 100)
    finally:
        for hive in hives.values():
            hive.stop()
    med = {size: statistics.median(v) for size, v in shares.items()}
    small, big = sizes[0], sizes[-1]
    for size in sizes:
        result.add(f"{size} agents: share of one core", med[size], unit="%",
                   target=1.0 if size == big else None)
    result.add(f"{big} agents minus {small}", med[big] - med[small], unit="%", target=0.5)
    result.notes.append(f"{windows} window(s) of {window:g} s, medians; all three daemons "
                        f"measured at once; per window: " + "; ".join(
                            f"{s}: " + ", ".join(f"{x:.2f}" for x in v)
                            for s, v in shares.items()) + f"; load average {load_average()}")
    return result
