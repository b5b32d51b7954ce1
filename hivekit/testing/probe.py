"""The conformance probe (plugin ``conformance_probe``): what :mod:`.conformance` watches a
backend through, from inside the daemon.

It surrounds every lifecycle hook (``spawn``, ``rebuild``, ``start``, ``stop``, ``restart``,
``destroy``) with a wrapper that records, one JSON line each in
``<state_dir>/conformance/calls.jsonl``, the call, the applied repo's ``main`` when it began,
and how it ended (returned, or raised what: a :class:`~hivekit.errors.HiveError` or not); it
records every line of the live log (``hive.log``) in ``logs.jsonl``, every status an agent's
row took (``agent_changed``) in ``statuses.jsonl`` and every ``agent_crashed`` in
``crashes.jsonl``; it serves
``GET /api/conformance/is_running`` (ask the backend from many threads at once); and, told so
in ``control.json``, it refuses a spawn before or after the backend's own ``spawn`` ran, as a
plugin might, to see the backend clean up.

Enable it only in tests: ``[hive] enable = ["conformance_probe"]`` (the suite does).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import field, frozen
from litestar import Request  # resolved by name when the route is registered

from hivekit import hookimpl
from hivekit.errors import HiveError, OperationFailed
from hivekit.git import read_ref

if TYPE_CHECKING:
    from hivekit.hive import Hive
    from hivekit.records import AgentSpec, Deploy

PLUGIN = "conformance_probe"
_lock = threading.Lock()


def probe_dir(state_dir: Path) -> Path:
    path = Path(state_dir) / "conformance"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _append(state_dir: Path, file: str, entry: dict[str, Any]) -> None:
    with _lock, open(probe_dir(state_dir) / file, "a") as f:
        f.write(json.dumps(entry) + "\n")


def _read(state_dir: Path, file: str) -> list[dict[str, Any]]:
    path = Path(state_dir) / "conformance" / file
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def calls(state_dir: Path, agent: str | None = None) -> list[dict[str, Any]]:
    """The lifecycle hook calls the probe saw end, oldest first (of ``agent`` only, if given)."""
    return [c for c in _read(state_dir, "calls.jsonl") if agent is None or c["agent"] == agent]


def begun(state_dir: Path, agent: str) -> list[dict[str, Any]]:
    """The lifecycle hook calls on ``agent`` that began, ended or not."""
    return [c for c in _read(state_dir, "begun.jsonl") if c["agent"] == agent]


def log_lines(state_dir: Path, agent: str) -> list[str]:
    """The live log's lines about ``agent`` (everything given to ``hive.log``)."""
    return [e["line"] for e in _read(state_dir, "logs.jsonl") if e["agent"] == agent]


def statuses(state_dir: Path, agent: str) -> list[str | None]:
    """Every status ``agent``'s row took, oldest first (None: it had no row)."""
    return [e["status"] for e in _read(state_dir, "statuses.jsonl") if e["agent"] == agent]


def crashes(state_dir: Path, agent: str) -> list[dict[str, Any]]:
    """The ``agent_crashed`` calls about ``agent``: ``{"status", "reason"}`` each."""
    return [e for e in _read(state_dir, "crashes.jsonl") if e["agent"] == agent]


def control(state_dir: Path, *, refuse_spawn: dict[str, str] | None = None) -> None:
    """Tell the running probe to refuse the spawn of an agent: ``{"name": "before"}`` (before
    the backend's ``spawn`` runs) or ``{"name": "after"}`` (after it succeeded)."""
    path = probe_dir(state_dir) / "control.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"refuse_spawn": refuse_spawn or {}}))
    tmp.replace(path)


def _refusal(hive: Hive, agent: str) -> str | None:
    path = probe_dir(hive.paths.state_dir) / "control.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("refuse_spawn", {}).get(agent)


@frozen
class IsRunningQuery:
    name: str
    threads: int = field(default=8)
    calls: int = field(default=20)


def _observe(hive: Hive, hook: str, agent: AgentSpec) -> Generator[None, Any, Any]:
    entry: dict[str, Any] = {"hook": hook, "agent": agent.name,
                             "main": read_ref(agent.paths.applied),
                             "thread": threading.current_thread().name, "began": time.time()}
    _append(hive.paths.state_dir, "begun.jsonl", entry)
    try:
        result = yield
    except BaseException as exc:
        entry.update(ok=False, error=str(exc), hive_error=isinstance(exc, HiveError),
                     type=type(exc).__name__, ended=time.time())
        _append(hive.paths.state_dir, "calls.jsonl", entry)
        raise
    entry.update(ok=True, ended=time.time())
    _append(hive.paths.state_dir, "calls.jsonl", entry)
    return result


@hookimpl
def startup(hive: Hive) -> None:
    sub = hive.bus.subscribe_sync()

    def follow() -> None:  # every live log line and row change, as the operator sees them
        from hivekit.events import AgentChanged, LogLine

        for env in sub:
            if isinstance(env.event, LogLine):
                _append(hive.paths.state_dir, "logs.jsonl",
                        {"agent": str(env.event.agent), "line": env.event.line})
            elif isinstance(env.event, AgentChanged):
                row = env.event.agent
                _append(hive.paths.state_dir, "statuses.jsonl",
                        {"agent": env.event.name, "status": row.status if row else None})

    threading.Thread(target=follow, name="conformance-log", daemon=True).start()


@hookimpl(wrapper=True, tryfirst=True)
def spawn(hive: Hive, agent: AgentSpec) -> Generator[None, Any, Any]:
    refusal = _refusal(hive, agent.name)
    if refusal == "before":
        raise OperationFailed(f"conformance: a plugin refused the spawn of {agent.name} "
                              "before the backend ran")
    result = yield from _observe(hive, "spawn", agent)
    if refusal == "after":
        raise OperationFailed(f"conformance: a plugin refused the spawn of {agent.name} "
                              "after the backend ran")
    return result


@hookimpl(wrapper=True, tryfirst=True)
def rebuild(hive: Hive, agent: AgentSpec, deploy: Deploy | None) -> Generator[None, Any, Any]:
    return (yield from _observe(hive, "rebuild", agent))


@hookimpl(wrapper=True, tryfirst=True)
def start(hive: Hive, agent: AgentSpec) -> Generator[None, Any, Any]:
    return (yield from _observe(hive, "start", agent))


@hookimpl(wrapper=True, tryfirst=True)
def stop(hive: Hive, agent: AgentSpec) -> Generator[None, Any, Any]:
    return (yield from _observe(hive, "stop", agent))


@hookimpl(wrapper=True, tryfirst=True)
def restart(hive: Hive, agent: AgentSpec) -> Generator[None, Any, Any]:
    return (yield from _observe(hive, "restart", agent))


@hookimpl(wrapper=True, tryfirst=True)
def destroy(hive: Hive, agent: AgentSpec, purge: bool) -> Generator[None, Any, Any]:
    return (yield from _observe(hive, "destroy", agent))


@hookimpl
def agent_crashed(hive: Hive, agent: AgentSpec, status: str, reason: str) -> None:
    _append(hive.paths.state_dir, "crashes.jsonl",
            {"agent": agent.name, "status": status, "reason": reason})


@hookimpl
def register_routes(hive: Hive, register: Any) -> None:
    from litestar import get

    from hivekit.api import query

    @get("/api/conformance/is_running", opt={"query": IsRunningQuery})
    async def is_running(request: Request) -> dict[str, Any]:
        """Ask the backend ``calls`` times from each of ``threads`` threads at once."""
        import anyio.to_thread

        q = query(request)
        return await anyio.to_thread.run_sync(lambda: ask(hive, q.name, q.threads, q.calls))

    register(is_running)


def ask(hive: Hive, name: str, threads: int, calls: int) -> dict[str, Any]:
    """``is_running`` for ``name``, ``calls`` times on each of ``threads`` threads at once:
    the distinct answers, the errors, and the slowest call's seconds."""
    agent = hive.agent(name)
    start = threading.Barrier(threads)

    def one() -> list[tuple[Any, str | None, float]]:
        start.wait()
        out = []
        for _ in range(calls):
            began = time.monotonic()
            try:
                out.append((hive.hook.is_running(hive=hive, agent=agent), None,
                            time.monotonic() - began))
            except Exception as exc:
                out.append((None, f"{type(exc).__name__}: {exc}", time.monotonic() - began))
        return out

    with ThreadPoolExecutor(threads) as pool:
        results = [r for f in [pool.submit(one) for _ in range(threads)] for r in f.result()]
    return {"answers": sorted({repr(a) for a, e, _ in results if e is None}),
            "errors": sorted({e for _, e, _ in results if e}),
            "slowest": max(t for _, _, t in results)}
