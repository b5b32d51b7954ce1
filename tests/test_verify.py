"""The deploy's ``verify`` step on the fake backend, against a real ``hivekit serve``: after a
build the deploy waits until every ``health_check`` says the agent is healthy, or fails and
rolls back (``main`` back, the container rebuilt from it, ``failed/<id>`` saying why). The real
process backend's checks are in tests/test_process.py; the crash at ``verify`` is one of
tests/test_crash.py's points."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from hivekit.git import Repo
from hivekit.testing import HiveProcess, calls, control


def _proposal(hive: HiveProcess, name: str, content: str = "v = 2\n") -> int:
    sha = hive.commit(name, {"agent.conf": content}, content.strip())
    return hive.post("/api/requests/apply", {"agent": name, "commit": sha})["id"]


def _built(hive: HiveProcess, name: str) -> str:
    return json.loads((hive.state_dir / "fake" / f"{name}.json").read_text())["built_sha"]


def _helpers(hive: HiveProcess, kind: str) -> list[dict[str, Any]]:
    inbox = hive.get("/api/agents/manager/inbox", limit=1000)
    events = [json.loads(m["body"]) for m in inbox if m["sender"] == "system"]
    return [e for e in events if e["type"] == kind]


@contextlib.contextmanager
def _held_at_verify(hive: HiveProcess, name: str, run: Callable[[], Any]) -> Iterator[dict]:
    """Run ``run()`` (an approve) on a thread while ``name``'s health check hangs; yield once the
    deploy is verifying, with the dict that receives ``run()``'s answer under ``"answer"`` after
    the block (the check is released and the thread joined on the way out)."""
    control(hive.state_dir, health_hang=[name])
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(answer=run()))
    t.start()
    try:
        hive.wait_for(lambda: hive.get("/api/state")["transients"].get(name) == "verifying",
                      what="the deploy to verify")
        yield result
    finally:
        control(hive.state_dir)
        t.join()


def test_an_unhealthy_build_is_rolled_back(hive: HiveProcess) -> None:
    hive.spawn("alpha")
    applied = Repo(hive.state_dir / "applied" / "alpha")
    before = applied.rev("main")
    approval_id = _proposal(hive, "alpha")
    control(hive.state_dir, unhealthy={"alpha": "port 8080 refused"})
    result = hive.cli("approve", str(approval_id))
    assert result.returncode == 1
    assert "-- verify" in result.stderr
    assert "deployed, then rolled back: fake: port 8080 refused" in result.stderr
    a = hive.approval(approval_id)
    assert (a["status"], a["tag"]) == ("failed", f"failed/{approval_id}")
    body = applied.tag_message(f"failed/{approval_id}")
    assert body.startswith("deployed, then rolled back: fake: port 8080 refused")
    assert f"rolled back: alpha was rebuilt from main ({before[:12]})" in body
    # main, the tree and the container are back at the previous deployed commit.
    assert applied.rev("main") == before and _built(hive, "alpha") == before
    assert applied("status", "--porcelain").strip() == ""
    [told] = [e for e in _helpers(hive, "rebuilt") if e["agent"] == "alpha" and not e["ok"]]
    assert "port 8080 refused" in told["note"]
    [row] = [r for r in hive.get("/api/state")["agents"] if r["name"] == "alpha"]
    assert row["deployed_sha"] == before and row["transient"] is None


def test_verifying_is_shown_and_a_healthy_agent_deploys(hive: HiveProcess) -> None:
    """While the health check has not answered, the agent's row and the transients say
    ``verifying``; once it answers healthy, the deploy succeeds."""
    hive.spawn("alpha")
    approval_id = _proposal(hive, "alpha")
    with _held_at_verify(hive, "alpha", lambda: hive.cli("approve", str(approval_id))) as result:
        [row] = [r for r in hive.get("/api/state")["agents"] if r["name"] == "alpha"]
        assert row["transient"] == "verifying"
        assert hive.approval(approval_id)["status"] == "running"
    assert result["answer"].returncode == 0, result["answer"].stderr
    a = hive.approval(approval_id)
    assert (a["status"], a["tag"]) == ("approved", f"deployed/{approval_id}")
    assert _built(hive, "alpha") == a["sha"]
    checked = [c for c in calls(hive.state_dir, "health") if c["agent"] == "alpha"]
    assert checked and checked[-1]["approval"] == approval_id


def test_a_hanging_health_check_is_bounded_by_the_deadline(hive: HiveProcess) -> None:
    hive.spawn("alpha")
    before = Repo(hive.state_dir / "applied" / "alpha").rev("main")
    approval_id = _proposal(hive, "alpha")
    control(hive.state_dir, health_hang=["alpha"], health_timeout={"alpha": 1.0})
    started = time.monotonic()
    result = hive.post(f"/api/approvals/{approval_id}/approve")
    took = time.monotonic() - started
    control(hive.state_dir)
    assert result["status"] == "failed"
    assert "not healthy within 1s (fake: its health check did not answer)" in result["note"]
    # Bounded: the deadline plus the rollback, far from the hang's forever.
    assert took < 30, took
    assert _built(hive, "alpha") == before


def test_a_spawn_that_never_becomes_healthy_fails_and_leaves_nothing(hive: HiveProcess) -> None:
    control(hive.state_dir, unhealthy={"beta": "never came up"})
    approval = hive.post("/api/requests/spawn", {"name": "beta"})
    hive.post(f"/api/approvals/{approval['id']}/approve")
    done = hive.wait_resolved(approval["id"])
    assert done["status"] == "failed"
    assert done["note"].startswith("spawned, then removed: fake: never came up")
    assert [c["call"] for c in calls(hive.state_dir) if c["agent"] == "beta"] == [
        "spawn", "destroy"]
    state = hive.get("/api/state")
    assert "beta" not in [r["name"] for r in state["agents"]]
    assert "beta" not in [t["name"] for t in state["tombstones"]]
    assert not (hive.state_dir / "agents" / "beta").exists()
    [told] = [e for e in _helpers(hive, "spawned") if e["agent"] == "beta"]
    assert not told["ok"] and "never came up" in told["note"]


def test_a_failing_report_ends_the_verification_at_once(hive: HiveProcess) -> None:
    """The core's own check, from the status channel: a backend that reports the agent failing
    after the build fails the deploy without waiting for the deadline or a hung check."""
    hive.spawn("alpha")
    approval_id = _proposal(hive, "alpha")
    with _held_at_verify(hive, "alpha", lambda: hive.post(
            f"/api/approvals/{approval_id}/approve")) as result:
        hive.post("/api/fake/agents/alpha/status", {
            "status": "failing", "detail": "crashed, restarting (restart 1)", "exit_code": 2,
            "output": ["loading model", "error: no such model"]})
        # Well before the hung check's deadline: the report alone ends the verification.
        hive.wait_for(lambda: "answer" in result, timeout=30, what="the deploy to end")
    a = result["answer"]
    assert a["status"] == "failed"
    assert a["note"].startswith("deployed, then rolled back: its backend reports it failing: "
                                "crashed, restarting (restart 1) (exit code 2)")
    assert "its last output:\nloading model\nerror: no such model" in a["note"]


def test_a_rollback_whose_rebuild_fails_marks_the_agent_needs_rebuild(hive: HiveProcess) -> None:
    hive.spawn("alpha")
    approval_id = _proposal(hive, "alpha")
    with _held_at_verify(hive, "alpha", lambda: hive.post(
            f"/api/approvals/{approval_id}/approve")) as result:
        # From here the check answers unhealthy, and the rollback's rebuild fails.
        control(hive.state_dir, unhealthy={"alpha": "sick"}, fail={"alpha": "nix: no space"})
        hive.wait_for(lambda: "answer" in result, timeout=60, what="the deploy to end")
    a = result["answer"]
    assert a["status"] == "failed"
    assert a["note"].startswith("deployed, then rolled back: fake: sick")
    assert "nix: no space" in a["note"] and "`needs rebuild`" in a["note"]
    [row] = [r for r in hive.get("/api/state")["agents"] if r["name"] == "alpha"]
    assert [b["label"] for b in row["badges"] if b["level"] == "error"] == ["needs rebuild"]
    assert hive.cli("rebuild", "alpha").returncode == 0
    [row] = [r for r in hive.get("/api/state")["agents"] if r["name"] == "alpha"]
    assert not [b for b in row["badges"] if b["label"] == "needs rebuild"]
