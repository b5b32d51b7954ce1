"""The hive view kept in memory (hivekit.view) and the snapshot encoded once per seq
(hivekit.state), in process on the fake backend: what makes a row, what a report changes, what
every change publishes, and that reading never calls a plugin."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hivekit import actions, config, events, hookimpl, plugins, state
from hivekit.bus import SyncSubscription
from hivekit.convert import converter
from hivekit.hive import Hive
from hivekit.records import AgentStatus, Badge
from hivekit.testing import fake


class Counter:
    """Counts the calls a snapshot must not make; its badge is whatever ``label`` says."""

    def __init__(self) -> None:
        self.badges = 0
        self.extras = 0
        self.label: str | None = None

    @hookimpl
    def agent_badges(self, agent: Any) -> list[Badge]:
        self.badges += 1
        return [Badge(label=self.label)] if self.label else []

    @hookimpl
    def state_extras(self, agents: list[Any]) -> dict[str, Any]:
        self.extras += 1
        return {"counted": len(agents)}


class RunningCalls:
    """Counts the backend's is_running calls (a wrapper: it sees every call)."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(wrapper=True)
    def is_running(self) -> Any:
        self.calls += 1
        return (yield)


@pytest.fixture
def local(short_tmp: Path) -> Iterator[tuple[Hive, Counter, RunningCalls]]:
    path = short_tmp / "hivekit.toml"
    path.write_text('[hive]\nbackend = "fake"\nstate_dir = "state"\nruntime_dir = "run"\n'
                    'disable = ["dashboard", "agent_api"]\n')
    cfg = config.read(path)
    cfg.state_dir.mkdir()
    counter, running = Counter(), RunningCalls()
    loaded = plugins.load(cfg, extra={"counter": counter})
    # Registered after the backend check (a wrapper of is_running is no second backend).
    loaded.pm.register(running, name="running")
    hive = Hive(cfg, loaded)
    hive.ensure_dirs()
    yield hive, counter, running
    hive.stopping.set()


def spawn(hive: Hive, name: str) -> None:
    approval = actions.request_spawn(hive, name)
    actions.approve(hive, approval.id)
    deadline = time.monotonic() + 30

    def busy() -> bool:
        # The status is written under the agent's lock; its row is made once that is released.
        row = hive.view.row(name)
        return hive.store.approval(approval.id).status.value == "running" or \
            name in hive.transients() or row is None or row.transient is not None

    while busy():
        assert time.monotonic() < deadline, "the spawn did not finish"
        time.sleep(0.01)


def changes(sub: SyncSubscription) -> list[events.AgentChanged]:
    out = []
    while (env := sub.get(timeout=0)) is not None:
        if isinstance(env.event, events.AgentChanged):
            out.append(env.event)
    return out


def test_a_snapshot_calls_no_plugin_and_is_the_same_bytes_until_the_next_event(local):
    hive, counter, running = local
    for name in ("alpha", "beta"):
        spawn(hive, name)
    first = state.encoded_snapshot(hive)
    badges, extras, calls = counter.badges, counter.extras, running.calls
    for _ in range(5):
        assert state.encoded_snapshot(hive) is first  # the same bytes, not made again
    assert (counter.badges, counter.extras, running.calls) == (badges, extras, calls)
    # A broker message moves the seq: the snapshot is encoded anew, but no plugin runs.
    actions.send(hive, "alpha", "hello")
    second = state.encoded_snapshot(hive)
    assert second is not first and json.loads(second)["seq"] > json.loads(first)["seq"]
    assert (counter.badges, counter.extras, running.calls) == (badges, extras, calls)
    assert {k: v for k, v in json.loads(second).items() if k != "seq"} == \
        {k: v for k, v in json.loads(first).items() if k != "seq"}
    # The snapshot's rows are the view's, as the agent_changed events carried them.
    rows = json.loads(second)["agents"]
    assert rows == converter.unstructure(hive.view.rows())
    assert [r["name"] for r in rows] == ["alpha", "beta"]
    assert json.loads(second)["counted"] == 2


def test_every_change_publishes_the_whole_row(local):
    hive, _counter, running = local
    sub = hive.bus.subscribe_sync()
    spawn(hive, "alpha")
    seen = changes(sub)
    # spawning (a row before the agent is registered), then the made row.
    assert seen[0].agent is not None and seen[0].agent.status == AgentStatus.SPAWNING
    assert seen[0].agent.transient is not None
    assert seen[-1].agent == hive.view.row("alpha")
    assert seen[-1].agent.status == "running" and seen[-1].agent.transient is None
    assert seen[-1].agent.deployed_sha
    calls = running.calls
    actions.stop(hive, "alpha")
    seen = changes(sub)
    assert seen[0].agent.transient == "stopping" and seen[0].agent.status == "running"
    assert seen[-1].agent.status == "stopped" and seen[-1].agent.transient is None
    # The fake reported what its stop left behind: the core did not need to ask.
    assert running.calls == calls
    actions.destroy(hive, "alpha")
    last = changes(sub)[-1]
    assert last.agent is None and last.tombstone is not None
    assert last.tombstone.name == "alpha" and last.tombstone.deployed_sha
    assert [t.name for t in hive.view.tombstones()] == ["alpha"]
    actions.destroy(hive, "alpha", purge=True)
    last = changes(sub)[-1]
    assert (last.name, last.agent, last.tombstone) == ("alpha", None, None)
    assert hive.view.tombstones() == []


def test_a_respawned_tombstone_is_a_spawning_row_not_a_tombstone(local):
    hive, _counter, _running = local
    spawn(hive, "alpha")
    actions.destroy(hive, "alpha")
    fake.control(hive.paths.state_dir, delay={"alpha": 1.0})
    approval = actions.request_spawn(hive, "alpha")
    actions.approve(hive, approval.id)
    row = hive.view.row("alpha")
    assert row is not None and row.status == "spawning" and row.deployed_sha
    assert hive.view.tombstones() == []
    snap = state.snapshot(hive)
    assert [a["status"] for a in snap["agents"]] == ["spawning"] and snap["tombstones"] == []
    deadline = time.monotonic() + 30
    while hive.view.row("alpha").status == "spawning":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert hive.view.row("alpha").status == "running"


def test_a_report_updates_the_row_until_an_operation_learns_anew(local):
    hive, counter, _running = local
    spawn(hive, "alpha")
    sub = hive.bus.subscribe_sync()
    badges = counter.badges
    lines = [f"line {i}" for i in range(30)]
    hive.report_status("alpha", "failing", detail="crashed, restarting (restart 1)",
                       exit_code=3, output=lines)
    [changed] = changes(sub)
    row = hive.view.row("alpha")
    assert changed.agent == row
    assert (row.status, row.detail, row.exit_code) == ("failing",
                                                       "crashed, restarting (restart 1)", 3)
    assert row.output == lines[-20:]  # the last lines only
    assert counter.badges == badges  # a report changes the status, and runs no badges
    # The same report again changes nothing, and says nothing.
    hive.report_status(hive.agent("alpha"), "failing", detail="crashed, restarting (restart 1)",
                       exit_code=3, output=lines)
    assert changes(sub) == []
    # An operation's outcome supersedes what was reported before it began.
    actions.start(hive, "alpha")
    row = hive.view.row("alpha")
    assert (row.status, row.detail, row.exit_code, row.output) == ("running", None, None, [])


def test_a_report_replaces_the_last_as_a_whole_and_takes_the_enum(local):
    # docs/plugin-hooks.md promises both: an AgentStatus member is a status, and a report
    # without a detail clears the one before it.
    hive, _counter, _running = local
    spawn(hive, "alpha")
    hive.report_status("alpha", AgentStatus.FAILING, detail="restarting", exit_code=1)
    hive.report_status("alpha", AgentStatus.FAILING)
    row = hive.view.row("alpha")
    assert (row.status, row.detail, row.exit_code) == ("failing", None, None)
    [encoded] = [a for a in json.loads(state.encoded_snapshot(hive))["agents"]
                 if a["name"] == "alpha"]
    assert (encoded["status"], encoded["detail"]) == ("failing", None)


@pytest.mark.parametrize(("args", "error"), [
    (("alpha", "crashed"), ValueError),
    (("alpha", None), ValueError),
    (("alpha", "running", {"detail": 5}), TypeError),
    (("alpha", "running", {"exit_code": "3"}), TypeError),
    (("alpha", "running", {"exit_code": True}), TypeError),
    (("alpha", "running", {"output": "one line"}), TypeError),
    (("alpha", "running", {"output": [1, 2]}), TypeError),
    (("../x", "running"), Exception),
])
def test_a_bad_report_is_refused_and_changes_nothing(local, args, error):
    hive, _counter, _running = local
    spawn(hive, "alpha")
    before = hive.view.row("alpha")
    seq = hive.bus.seq
    name, status, *rest = args
    with pytest.raises(error) as exc:
        hive.report_status(name, status, **(rest[0] if rest else {}))
    assert "report_status" in str(exc.value) or "name" in str(exc.value)
    assert hive.view.row("alpha") == before and hive.bus.seq == seq


def test_refresh_runs_the_badges_again(local):
    hive, counter, _running = local
    spawn(hive, "alpha")
    sub = hive.bus.subscribe_sync()
    counter.label = "needs update"
    assert hive.view.row("alpha").badges == []  # badges run when the row is made, only
    hive.refresh("alpha")
    [changed] = changes(sub)
    assert [b.label for b in changed.agent.badges] == ["needs update"]
    hive.refresh("alpha")  # nothing changed: no event
    assert changes(sub) == []
    hive.refresh("nobody")  # an unknown name: nothing at all
    assert changes(sub) == []


def test_the_view_is_seeded_from_reports_and_asks_only_the_silent(local):
    hive, _counter, running = local
    for name in ("alpha", "beta"):
        hive.store.add_agent(name)
    hive.report_status("alpha", "running")  # as a backend's startup would
    hive.view.seed()
    assert running.calls == 1  # beta only
    assert {r.name: r.status for r in hive.view.rows()} == {"alpha": "running",
                                                            "beta": "stopped"}


def test_a_report_through_a_real_daemon(hive):
    """The status channel end to end: the fake's route stands for a backend's supervisor."""
    hive.spawn("coder")
    row = fake.report(hive, "coder", "failing", detail="crashed (exit code 2)", exit_code=2,
                      output=["Traceback ...", "SystemExit: 2"])
    assert (row["status"], row["exit_code"], row["output"]) == ("failing", 2,
                                                                 ["Traceback ...",
                                                                  "SystemExit: 2"])
    snap = hive.get("/api/state")
    assert {a["name"]: a for a in snap["agents"]}["coder"] == row
    assert hive.get("/api/agents") == snap["agents"]
    result = hive.cli("agents")
    assert "failing" in result.stdout
    for body, says in [({"status": "exploded"}, "status must be one of"),
                       ({"status": "running", "exit_code": "2"}, "exit_code"),
                       ({"status": "running", "colour": "red"}, "colour")]:
        with pytest.raises(Exception, match=says):
            hive.post("/api/fake/agents/coder/status", body)
    assert {a["name"]: a for a in hive.get("/api/state")["agents"]}["coder"] == row
