"""Growth: the cost of spawn number N must not grow with the number of agents already there,
up to a full hive (900 agents; fake backend, in process). The names are picked so that no two
share a port (see the README on sizing ``port_range``): a colliding name would be refused."""

from __future__ import annotations

import statistics
import time

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


def run(quick: bool = False) -> Result:
    from hivekit import actions

    total = 30 if quick else 900
    result = Result(f"growth: {total} spawns (fake backend)")
    hive = local_hive(short_tmp() / "growth", f'[hive]\nbackend = "fake"\n{PORTS}')
    costs = []
    try:
        for name in names(total):
            t = time.perf_counter()
            a = actions.request_spawn(hive, name)
            actions.approve(hive, a.id)
            while hive.store.approval(a.id).status.value == "running":
                time.sleep(0.001)
            assert hive.store.approval(a.id).status.value == "approved", \
                hive.store.approval(a.id).note
            costs.append(time.perf_counter() - t)
    finally:
        hive.stopping.set()
        hive.hook.shutdown(hive=hive)
    early = statistics.median(costs[5:15])
    late = statistics.median(costs[-10:])
    result.add(f"spawn #{total - 9}..{total} vs #6..15", late, early, target=1.2)
    step = max(1, total // 10)
    result.notes.append(f"curve (median ms per window of {step}): " + ", ".join(
        f"{statistics.median(costs[i:i + step]) * 1000:.0f}" for i in range(0, total, step)))
    result.notes.append(f"load average at the end {load_average()}")
    return result
