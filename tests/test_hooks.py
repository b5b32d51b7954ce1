"""The hooks a notifier and a gatekeeper need, in a real daemon: ``check_request`` (a refused
request leaves nothing), ``approval_requested`` and the lifecycle observers, ``hive.log`` with a
spec, a bad event that breaks no one's stream, and collisions refused at start."""

from __future__ import annotations

import json
import threading

import pytest

from hivekit.client import ApiError
from hivekit.errors import CommandFailed
from hivekit.git import Repo
from hivekit.testing import control, fake

NOTIFIER = '[hive]\nbackend = "fake"\nenable = ["notifier"]\n'


def heard(proc, hook=None):
    path = proc.state_dir / "notifier.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if hook is None or r["hook"] == hook]


def started(proc):
    proc.wait_for(lambda: any(a["name"] == "manager" for a in proc.get("/api/state")["agents"]),
                  what="the manager")
    return proc


def test_a_refused_spawn_leaves_no_approval_no_repo_no_tombstone(make_hive):
    proc = started(make_hive(NOTIFIER + '[notifier]\ndeny = ["evil"]\n'))
    with pytest.raises(ApiError) as err:
        proc.post("/api/requests/spawn", {"name": "evil"})
    assert err.value.status == 403
    assert str(err.value) == "the notifier's deny list refuses 'evil'"
    cli = proc.cli("request", "spawn", "evil")
    assert cli.returncode == 1 and "the notifier's deny list refuses 'evil'" in cli.stderr
    assert proc.get("/api/approvals", all="true") == []
    assert not (proc.state_dir / "agents" / "evil").exists()
    assert not (proc.state_dir / "applied" / "evil").exists()
    assert proc.get("/api/state")["tombstones"] == []
    assert heard(proc, "approval_requested") == []
    assert [r["agent"] for r in heard(proc, "check_request")] == ["evil", "evil"]


def test_a_refused_apply_fetches_and_tags_nothing(make_hive):
    proc = started(make_hive(NOTIFIER + '[notifier]\ndeny_files = ["FORBIDDEN"]\n'))
    proc.spawn("coder")
    applied = Repo(proc.state_dir / "applied" / "coder")
    tags = applied("tag", "--list")
    sha = proc.commit("coder", {"FORBIDDEN": "x\n"})
    with pytest.raises(ApiError) as err:
        proc.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    assert (err.value.status, str(err.value)) == (
        403, "the notifier refuses commits holding 'FORBIDDEN'")
    assert applied("tag", "--list") == tags
    with pytest.raises(CommandFailed):  # not even fetched
        applied("cat-file", "-e", sha)
    assert [a["kind"] for a in proc.get("/api/approvals", all="true")] == ["spawn"]
    # The hook saw the sha it was asked about, read from the proposed repo.
    assert heard(proc, "check_request")[-1] == {"hook": "check_request", "kind": "apply",
                                                "agent": "coder", "sha": sha}


def test_a_notifier_hears_every_request_and_lifecycle_change(make_hive):
    proc = started(make_hive(NOTIFIER))
    proc.wait_for(lambda: heard(proc, "agent_started"), what="the manager's start")
    approval = proc.spawn("coder")
    sha = proc.commit("coder", {"agent.conf": "x = 1\n"})
    apply = proc.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    assert proc.post(f"/api/approvals/{apply['id']}/approve")["status"] == "approved"
    for verb in ("stop", "start", "restart", "rebuild"):
        proc.post(f"/api/agents/coder/{verb}")
    control(proc.state_dir, fail={"broken": "no space left on device"})
    failed = proc.post("/api/requests/spawn", {"name": "broken"})
    proc.post(f"/api/approvals/{failed['id']}/approve")
    proc.wait_resolved(failed["id"])
    proc.post("/api/agents/coder/destroy", {"purge": False})
    proc.wait_for(lambda: len(heard(proc, "agent_destroyed")) == 2, what="both destroys")

    assert [(r["id"], r["kind"], r["agent"], r["status"])
            for r in heard(proc, "approval_requested")] == [
        (approval["id"], "spawn", "coder", "pending"), (apply["id"], "apply", "coder", "pending"),
        (failed["id"], "spawn", "broken", "pending")]
    assert [(r["agent"], r["reason"]) for r in heard(proc, "agent_started")] == [
        ("manager", "spawned"), ("coder", "spawned"),
        ("coder", f"deployed approval #{apply['id']}"), ("coder", "started by the operator"),
        ("coder", "restarted by the operator"), ("coder", "rebuilt by the operator")]
    assert [(r["agent"], r["reason"]) for r in heard(proc, "agent_stopped")] == [
        ("coder", "stopped by the operator")]
    assert sorted((r["agent"], r["purge"], r["reason"])
                  for r in heard(proc, "agent_destroyed")) == [
        ("broken", True, "its spawn failed: no space left on device"),
        ("coder", False, "destroyed by the operator")]

    # A daemon restart that brings an agent back says so; one still running is not told.
    proc.spawn("tester")
    proc.stop()
    assert heard(proc)[0] == {"hook": "startup"} and heard(proc)[-1] == {"hook": "shutdown"}
    container = proc.state_dir / "fake" / "tester.json"
    container.write_text(json.dumps({**json.loads(container.read_text()), "running": False}))
    proc.start()
    proc.wait_for(lambda: heard(proc, "agent_started")[-1]["agent"] == "tester"
                  and heard(proc, "agent_started")[-1]["reason"] == "the hive started",
                  what="tester brought back by the restart")
    assert [r["agent"] for r in heard(proc, "agent_started")
            if r["reason"] == "the hive started"] == ["tester"]


def test_a_notifier_hears_each_crash_once_and_no_operators_stop(make_hive):
    proc = started(make_hive(NOTIFIER))
    proc.spawn("coder")
    proc.spawn("tester")
    proc.post("/api/agents/tester/stop")  # an operation's own "stopped": not a crash
    fake.report(proc, "tester", "stopped", detail="still stopped")  # was not running
    fake.report(proc, "coder", "failing", detail="crashed, restarting (restart 1)")
    proc.wait_for(lambda: heard(proc, "agent_crashed"), what="the first crash")
    row = fake.report(proc, "coder", "failing", detail="crashed, restarting (restart 2)")
    assert row["status"] == "failing" and row["detail"] == "crashed, restarting (restart 2)"
    fake.report(proc, "coder", "running")  # it came up again, then dies
    fake.crash(proc, "coder")
    proc.wait_for(lambda: len(heard(proc, "agent_crashed")) == 2, what="the second crash")
    fake.report(proc, "manager", "failing")  # no detail: the core's words, with no exit code
    proc.wait_for(lambda: len(heard(proc, "agent_crashed")) == 3, what="the manager's crash")
    proc.stop()
    assert [(r["agent"], r["status"], r["reason"]) for r in heard(proc, "agent_crashed")] == [
        ("coder", "failing", "crashed, restarting (restart 1)"),
        ("coder", "stopped", "h-coder died (killed)"),
        ("manager", "failing", "it is failing")]
    assert [r["agent"] for r in heard(proc, "agent_stopped")] == ["tester"]


def test_hive_log_takes_a_spec_and_a_bad_event_breaks_no_stream(make_hive):
    proc = started(make_hive(NOTIFIER + "[notifier]\nbad_event = true\n"))
    seen: list[tuple[str, dict]] = []
    ready = threading.Event()

    def follow():
        for kind, data in proc.client().events(on_ready=ready.set):
            seen.append((kind, data))
            if kind == "message" and data["message"]["body"] == "after":
                return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert ready.wait(10)
    proc.spawn("coder")
    proc.wait_for(lambda: "cannot be encoded; dropped" in proc.log(), what="the dropped event")
    # An approve followed on the event stream while bad events are published reports the
    # outcome, not a lost connection.
    sha = proc.commit("coder", {"agent.conf": "y = 2\n"})
    apply = proc.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    result = proc.cli("approve", str(apply["id"]))
    assert result.returncode == 0, result.stderr
    proc.post("/api/messages", {"to": "coder", "body": "after"})
    reader.join(30)
    assert not reader.is_alive(), "the event stream ended or stalled after a bad event"
    lines = [d["line"] for k, d in seen if k == "log" and d["agent"] == "coder"]
    assert "notifier: coder started (spawned)" in lines  # hive.log took the AgentSpec
    assert "this event cannot be encoded" not in lines
    assert "(LogLine) cannot be encoded; dropped" in proc.log()  # logged, naming the event


@pytest.mark.parametrize(("extra", "says"), [
    ('enable = ["notifier", "example"]\n[notifier]\nstate_key = "example"\n',
     "plugins 'example' and 'notifier' both give /api/state key 'example'"),
    ('enable = ["notifier"]\n[notifier]\nstate_key = "agents"\n',
     "plugin 'notifier' gives /api/state key 'agents', which the core uses"),
    ('enable = ["notifier"]\n[notifier]\nroute = "/api/state"\n',
     "plugin 'notifier' registers GET /api/state, already served by the core"),
    ('enable = ["notifier", "meta_flake"]\n[notifier]\nroute = "/api/meta/log"\n',
     "plugin 'notifier' registers GET /api/meta/log, already served by plugin 'meta_flake'"),
])
def test_collisions_stop_the_start_naming_both_owners(make_hive, extra, says):
    proc = make_hive('[hive]\nbackend = "fake"\n' + extra, start=False)
    with pytest.raises(RuntimeError) as err:
        proc.start()
    assert says in str(err.value)
    assert "Traceback" not in proc.log()


#: The hooks a spawn, an apply, a deny and a destroy call, whoever implements them.
OPERATION_HOOKS = ("check_request", "approval_requested", "initial_config_files", "spawn",
                   "agent_started", "approval_resolved", "deploy_step", "prepare_deploy",
                   "rebuild", "finalize_deploy", "destroy", "agent_destroyed", "is_running",
                   "agent_badges", "state_extras")


def test_trace_plugins_shows_every_hook_call_with_each_plugin(make_hive):
    proc = started(make_hive(NOTIFIER.replace('"notifier"', '"notifier", "example"'),
                             env={"HIVEKIT_TRACE_PLUGINS": "1"}))
    proc.spawn("coder")
    sha = proc.commit("coder", {"agent.conf": "x = 1\n"})
    for decide in ("approve", "deny"):
        approval = proc.post("/api/requests/apply", {"agent": "coder", "commit": sha})
        proc.post(f"/api/approvals/{approval['id']}/{decide}")
    # A restart: the new daemon asks the backend whether each agent runs (is_running) as it
    # makes the rows; operations never need to, since the fake reports what it did.
    proc.restart()
    proc.post("/api/agents/coder/destroy", {"purge": False})
    proc.stop()

    calls: dict[str, set[str]] = {}
    for line in proc.log().splitlines():
        if not line.startswith("hivekit trace: "):
            continue
        call, _, outcome = line.removeprefix("hivekit trace: ").rpartition("): ")
        hook = call.split("(", 1)[0]
        plugin = outcome.split(" -> ")[0].split(" raised ")[0].removesuffix(" (wrapper)")
        calls.setdefault(hook, set()).add(plugin)
    rows = json.loads(proc.cli("plugins", "--json").stdout)
    for hook in OPERATION_HOOKS:
        implementers = {r["name"] for r in rows if r["enabled"] and hook in r["hooks"]}
        assert implementers, f"no enabled plugin implements {hook}: the check proves nothing"
        assert implementers <= calls.get(hook, set()), (hook, implementers, calls.get(hook))
    # The per-plugin observers are traced plugin by plugin, with their arguments.
    assert "approval_requested(approval=#1 spawn coder pending): notifier -> None" in proc.log()
    assert ("check_request(request=apply coder " + sha[:12] + "): port_check -> None"
            in proc.log())
    assert "deploy_step(deploy=#2 coder, step='build'): fake -> None" in proc.log()
    assert "spawn(agent=coder): port_check (wrapper) -> " in proc.log()
