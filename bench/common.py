"""Shared benchmark plumbing: an in-process hive, timing, tables and JSON results."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs


@attrs.define
class Result:
    """One benchmark's outcome: measured ratios against their targets, plus raw figures."""

    name: str
    rows: list[dict[str, Any]] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)

    def add(self, metric: str, value: float, floor: float | None = None,
            target: float | None = None, unit: str = "s") -> None:
        row: dict[str, Any] = {"metric": metric, "value": value, "unit": unit}
        if floor is not None:
            row["floor"] = floor
            row["ratio"] = value / floor if floor else float("inf")
        if target is not None:
            row["target"] = target
            row["met"] = row.get("ratio", value) <= target
        self.rows.append(row)

    def print(self) -> None:
        print(f"\n== {self.name}")
        for r in self.rows:
            line = f"  {r['metric']:<44} {_fmt(r['value'], r['unit'])}"
            if "floor" in r:
                line += f"  floor {_fmt(r['floor'], r['unit'])}  ratio {r['ratio']:.2f}"
            if "target" in r:
                line += f"  (target <= {r['target']}: {'met' if r['met'] else 'MISSED'})"
            print(line)
        for note in self.notes:
            print(f"  note: {note}")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "notes": self.notes}


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:9.2f} ms"
    return f"{value:9.2f} {unit}"


def median_time(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def short_tmp() -> Path:
    """A short temp dir (Unix socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="hkb", dir="/tmp"))


def interleaved(sides: dict[str, Callable[[], Any]], rounds: int,
                warmup: int = 1) -> dict[str, list[float]]:
    """Time each side once per round, the sides alternating (A B A B ...): a shared machine's
    load drifts, and both sides should see the same. ``warmup`` untimed rounds first."""
    for _ in range(warmup):
        for fn in sides.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def ratio_range(values: list[float], floors: list[float]) -> str:
    """The spread of the per-round ratios (round i of the one side against round i of the
    other), for the notes."""
    ratios = sorted(v / f for v, f in zip(values, floors, strict=True) if f)
    if not ratios:
        return "-"
    return f"{ratios[0]:.2f}-{ratios[-1]:.2f}"


def load_average() -> str:
    """The 1/5/15-minute load averages now (what the machine was doing meanwhile)."""
    import os

    return "/".join(f"{x:.1f}" for x in os.getloadavg())


#: Every bench hive's ports are its own: the dashboard on any free port (port 0), never the
#: operator's 7000, and the agents' range moved away from the default one.
OWN_PORTS = "\n[dashboard]\nport = 0\n"


def local_hive(root: Path, config: str = '[hive]\nbackend = "fake"\n') -> Any:
    """A started in-process hive (no HTTP server of its own), manager up; its dashboard (if
    enabled) on a free port of its own."""
    from hivekit import config as cfg
    from hivekit import plugins
    from hivekit.daemon import build_hive

    root.mkdir(parents=True, exist_ok=True)
    if "[dashboard]" not in config:
        config += OWN_PORTS
    (root / "hivekit.toml").write_text(
        config.replace("[hive]\n", '[hive]\nstate_dir = "state"\nruntime_dir = "run"\n', 1))
    config_obj = cfg.read(root / "hivekit.toml")
    hive = build_hive(config_obj, plugins.load(config_obj))
    hive.hook.startup(hive=hive)
    deadline = time.time() + 30
    while not hive.store.has_agent(hive.manager):
        if time.time() > deadline:
            raise TimeoutError("the manager did not come up")
        time.sleep(0.01)
    return hive


def write_json(results: list[Result], path: Path | None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.as_dict() for r in results], indent=2))


class Server:
    """A uvicorn server for ``app`` on a Unix socket, in a thread of this process."""

    def __init__(self, app: Any, path: Path) -> None:
        import asyncio
        import threading

        import uvicorn

        from hivekit.sockets import bind_unix

        self.sock = bind_unix(path)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.path = path

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
