"""Crash safety: SIGKILL a real daemon at every step of a deploy; the next start finishes the
approval honestly (DESIGN.md: nothing half-applied, no approval left running)."""

from __future__ import annotations

import pytest

from hivekit.deploy import INTERRUPTED
from hivekit.git import Repo
from hivekit.testing import calls, control


def deploy_calls(hive, approval_id: int) -> list[str]:
    return [c["call"] for c in calls(hive.state_dir)
            if c.get("approval") == approval_id and c["call"].endswith("_deploy")]


def prepare(hive):
    hive.spawn("coder")
    repo = Repo(hive.state_dir / "applied" / "coder")
    before = repo.rev("main")
    sha = hive.commit("coder", {"agent.conf": "v = 2\n"}, "v2")
    approval = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    return repo, before, sha, approval["id"]


def approve_into_a_crash(hive, approval_id: int) -> None:
    result = hive.cli("approve", str(approval_id), timeout=60)
    assert result.returncode == 1  # the daemon died under it; the CLI says so, no traceback
    assert "Traceback" not in result.stderr
    hive.proc.wait(30)
    assert hive.proc.returncode == -9


def assert_rolled_back(hive, repo, before, approval_id):
    approval = hive.approval(approval_id)
    assert approval["status"] == "failed"
    assert approval["note"] == INTERRUPTED
    assert approval["tag"] == f"failed/{approval_id}"
    assert repo("cat-file", "-t", f"failed/{approval_id}").strip() == "tag"
    assert repo.tag_message(f"failed/{approval_id}") == INTERRUPTED
    assert not repo.has_tag(f"deployed/{approval_id}")
    assert repo.rev("main") == before
    assert (repo.path / "agent.conf").read_text() != "v = 2\n"  # working tree back too
    assert repo("status", "--porcelain").strip() == ""
    assert repo("symbolic-ref", "HEAD").strip() == "refs/heads/main"


@pytest.mark.parametrize("point", ["tagged", "main-moved", "prepare_deploy", "build"])
def test_crash_before_the_build_finished_rolls_back(hive, point):
    repo, before, sha, approval_id = prepare(hive)
    control(hive.state_dir, crash={"coder": point})
    approve_into_a_crash(hive, approval_id)
    # Left as the crash left it: running, and (past "tagged") main possibly moved.
    hive.start()
    assert_rolled_back(hive, repo, before, approval_id)
    assert repo.has_tag(f"approved/{approval_id}") and repo.has_tag(f"building/{approval_id}")
    ran = deploy_calls(hive, approval_id)
    assert "finalize_deploy" not in ran
    assert ran[-1] == "abort_deploy"  # recovery undid whatever prepare did
    assert ("prepare_deploy" in ran) == (point in ("prepare_deploy", "build"))
    # The manager heard how it ended.
    assert any(f'"id":{approval_id}' in m["body"] and '"failed"' in m["body"]
               for m in hive.get("/api/agents/manager/inbox"))
    # And the hive works on: the same commit deploys when asked again.
    again = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    assert hive.post(f"/api/approvals/{again['id']}/approve")["status"] == "approved"


def test_crash_during_a_hanging_build_rolls_back(hive):
    repo, before, _sha, approval_id = prepare(hive)
    control(hive.state_dir, hang=["coder"])
    import threading

    t = threading.Thread(target=lambda: hive.cli("approve", str(approval_id), timeout=60))
    t.start()
    hive.wait_for(lambda: any(c["call"] == "rebuild" and c.get("approval") == approval_id
                              for c in calls(hive.state_dir)), what="the build to start")
    assert repo.rev("main") != before  # mid-deploy: main is at the proposal
    hive.kill()
    t.join()
    control(hive.state_dir)  # no more hanging
    hive.start()
    assert_rolled_back(hive, repo, before, approval_id)


def test_crash_after_deployed_tag_finishes_as_approved(hive):
    repo, _before, sha, approval_id = prepare(hive)
    control(hive.state_dir, crash={"coder": "deployed"})
    approve_into_a_crash(hive, approval_id)
    hive.start()
    approval = hive.approval(approval_id)
    assert approval["status"] == "approved"
    assert approval["tag"] == f"deployed/{approval_id}"
    assert repo.rev("main") == sha
    assert (repo.path / "agent.conf").read_text() == "v = 2\n"
    assert deploy_calls(hive, approval_id) == ["prepare_deploy", "finalize_deploy"]


def test_crash_during_finalize_finishes_it_again(hive):
    repo, _before, sha, approval_id = prepare(hive)
    control(hive.state_dir, crash={"coder": "finalize_deploy"})
    approve_into_a_crash(hive, approval_id)
    hive.start()
    assert hive.approval(approval_id)["status"] == "approved"
    # finalize_deploy ran twice: hooks must be idempotent.
    assert deploy_calls(hive, approval_id) == ["prepare_deploy", "finalize_deploy",
                                               "finalize_deploy"]
    assert repo.rev("main") == sha


def test_crash_during_a_spawn_fails_it_and_cleans_up(hive):
    control(hive.state_dir, hang=["coder"])
    a = hive.post("/api/requests/spawn", {"name": "coder"})
    hive.post(f"/api/approvals/{a['id']}/approve")
    hive.wait_for(lambda: any(c["call"] == "spawn" and c["agent"] == "coder"
                              for c in calls(hive.state_dir)), what="the spawn to start")
    hive.kill()
    control(hive.state_dir)
    hive.start()
    approval = hive.approval(a["id"])
    assert approval["status"] == "failed" and "interrupted" in approval["note"]
    assert [c["call"] for c in calls(hive.state_dir) if c["agent"] == "coder"] == [
        "spawn", "destroy"]
    state = hive.get("/api/state")
    assert "coder" not in [x["name"] for x in state["agents"]]
    assert [t["name"] for t in state["tombstones"]] == ["coder"]
    # No approval is left running anywhere.
    assert hive.get("/api/approvals", status="running") == []


def test_crash_between_deny_and_its_tag_is_repaired(hive):
    # deny writes the status first, then the tag: recovery plants a missing denied/<id>.
    repo, _before, _sha, approval_id = prepare(hive)
    hive.post(f"/api/approvals/{approval_id}/deny", {"note": "too risky"})
    repo("tag", "-d", f"denied/{approval_id}")  # as if the daemon died before tagging
    hive.restart()
    assert repo.tag_message(f"denied/{approval_id}") == "too risky"
