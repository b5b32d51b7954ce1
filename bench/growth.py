"""Growth: the cost of spawn number N must not grow with the number of agents already there,
up to a full hive (900 agents; fake backend, in process). The names are picked so that no two
share a port (see the README on sizing ``port_range``): a colliding name would be refused.

The early and late spawns are each paired with a spawn of the same name into a hive that stays
at one agent (spawned, timed, then destroyed; which of the two goes first alternates): the
machine's load drifts over the minutes a full hive takes to fill, and dividing by that
reference, measured at the same moment, takes the drift out. The raw figures are reported
too."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.common import Result, load_average, local_hive, short_tmp

#: The agents' port range of this bench's hive (ports of its own, wide enough for 900).
PORTS = "port_base = 10000\nport_range = 50000\n"


def names(count: int, base: int = 10000, span: int = 50000) -> list[str]:
    """``count`` agent names whose ports (``base + FNV-1a % span``) are all different."""
    from hivekit.names import agent_port

    taken: set[int] = set()
    out: list[str] = []
    i = 0
    while len(out) < count:
        name = f"g{i}"
        port = agent_port(name, manager="manager", manager_port=8000, base=base, span=span)
        if port not in taken:
            taken.add(port)
            out.append(name)
        i += 1
    return out


def spawn(hive: Any, name: str) -> float:
    """Request and approve a spawn of ``name``; the seconds until it is approved."""
    from hivekit import actions

    t = time.perf_counter()
    a = actions.request_spawn(hive, name)
    actions.approve(hive, a.id)
    while hive.store.approval(a.id).status.value == "running":
        time.sleep(0.001)
    assert hive.store.approval(a.id).status.value == "approved", hive.store.approval(a.id).note
    took = time.perf_counter() - t
    while hive.transients().get(name):  # its end's bookkeeping: not timed, but not overlapped
        time.sleep(0.001)
    return took


def run(quick: bool = False) -> Result:
    from hivekit import actions

    total = 30 if quick else 900
    result = Result(f"growth: {total} spawns (fake backend)")
    root = short_tmp()
    config = f'[hive]\nbackend = "fake"\n{PORTS}'
    hive = local_hive(root / "growth", config)
    ref = local_hive(root / "ref", config)
    costs: list[float] = []
    #: spawn number (0-based) → (its cost, the reference spawn's made beside it)
    paired: dict[int, tuple[float, float]] = {}
    try:
        for i, name in enumerate(names(total)):
            if 5 <= i < 15 or i >= total - 10:
                # Which goes first alternates: neither always follows the other's leftovers.
                if i % 2:
                    other = spawn(ref, name)
                    costs.append(spawn(hive, name))
                else:
                    costs.append(spawn(hive, name))
                    other = spawn(ref, name)
                paired[i] = (costs[-1], other)
                # Kept as a tombstone: an observer of its start may still be reading its repos.
                actions.destroy(ref, name)
            else:
                costs.append(spawn(hive, name))
    finally:
        for h in (hive, ref):
            h.stopping.set()
            h.hook.shutdown(hive=h)
    early = [c / r for i, (c, r) in paired.items() if i < 15]
    late = [c / r for i, (c, r) in paired.items() if i >= total - 10]
    result.add(f"spawn #{total - 9}..{total} vs #6..15, each over a 1-agent hive's spawn",
               statistics.median(late), statistics.median(early), target=1.2, unit="x")
    result.add(f"  the same, raw: spawn #{total - 9}..{total} vs #6..15",
               statistics.median(costs[-10:]), statistics.median(costs[5:15]))
    result.add("  the 1-agent hive's spawn, late vs early",
               statistics.median(r for i, (_, r) in paired.items() if i >= total - 10),
               statistics.median(r for i, (_, r) in paired.items() if i < 15))
    step = max(1, total // 10)
    result.notes.append(f"curve (median ms per window of {step}): " + ", ".join(
        f"{statistics.median(costs[i:i + step]) * 1000:.0f}" for i in range(0, total, step)))
    result.notes.append(f"load average at the end {load_average()}")
    return result
