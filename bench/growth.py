"""Growth: the cost of spawn number N must not grow with the number of agents already there."""

from __future__ import annotations

import statistics
import time

from bench.common import Result, local_hive, short_tmp


def run(quick: bool = False) -> Result:
    from hivekit import actions

    total = 30 if quick else 200
    result = Result(f"growth: {total} spawns (fake backend)")
    hive = local_hive(short_tmp() / "growth")
    costs = []
    for i in range(total):
        t = time.perf_counter()
        a = actions.request_spawn(hive, f"g{i}")
        actions.approve(hive, a.id)
        while hive.store.approval(a.id).status.value == "running":
            time.sleep(0.001)
        costs.append(time.perf_counter() - t)
    early = statistics.median(costs[5:15])
    late = statistics.median(costs[-10:])
    result.add(f"spawn #{total - 9}..{total} vs #6..15", late, early, target=1.2)
    step = max(1, total // 10)
    result.notes.append(f"curve (median ms per window of {step}): " + ", ".join(
        f"{statistics.median(costs[i:i + step]) * 1000:.0f}" for i in range(0, total, step)))
    return result
