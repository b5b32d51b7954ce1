"""The git-audited deploy through a real daemon and the real CLI (issue 3's scripted session)."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from hivekit.git import Repo
from hivekit.testing import calls, control


def tags(hive, agent: str) -> dict[str, str]:
    """tag name → the commit it points at, in the agent's applied repo."""
    out = Repo(hive.state_dir / "applied" / agent)("for-each-ref", "refs/tags",
                                                   "--format=%(refname:short) %(*objectname)"
                                                   " %(objectname)")
    result = {}
    for line in out.splitlines():
        name, *shas = line.split()
        result[name] = shas[0]  # peeled sha for annotated tags, else the tag's own
    return result


def applied(hive, agent: str) -> Repo:
    return Repo(hive.state_dir / "applied" / agent)


def helper_events(hive) -> list[dict]:
    inbox = hive.get("/api/agents/manager/inbox", limit=1000)
    return [json.loads(m["body"]) for m in inbox if m["sender"] == "system"]


def cli_ok(hive, *args: str) -> str:
    result = hive.cli(*args)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def test_scripted_session(hive):
    # --- spawn requested and approved
    out = cli_ok(hive, "request", "spawn", "coder", "--json")
    spawn_id = json.loads(out)["id"]
    out = cli_ok(hive, "approve", str(spawn_id), "--json")
    assert json.loads(out)["status"] == "approved"
    agents = {a["name"]: a for a in json.loads(cli_ok(hive, "agents", "--json"))}
    assert agents["coder"]["status"] == "running"
    config_dir = hive.state_dir / "agents" / "coder" / "config"
    assert (config_dir / ".git").is_dir()
    assert stat.S_IMODE(os.stat(hive.state_dir / "agents" / "coder" / "creds").st_mode) == 0o700
    assert (hive.state_dir / "agents" / "coder" / "state").is_dir()
    init_sha = Repo(config_dir).rev("main")
    assert Repo(config_dir)("log", "-1", "--format=%s").strip() == "hivekit init"
    # the applied repo's git dir as the manager sees it: the fake's agents see the host's paths
    assert Repo(config_dir)("remote", "get-url", "applied").strip() == str(
        hive.state_dir / "applied" / "coder" / ".git")
    assert tags(hive, "coder")["deployed/0"] == init_sha
    assert agents["coder"]["deployed_sha"] == init_sha

    # --- a commit requested, shown with its diff, approved
    sha = hive.commit("coder", {"agent.conf": "model = 'big'\n"}, "bigger model")
    out = cli_ok(hive, "request", "apply", "coder", sha, "--description", "bigger", "--json")
    apply_id = json.loads(out)["id"]
    shown = cli_ok(hive, "show", str(apply_id))
    assert "+model = 'big'" in shown and "bigger" in shown
    # Amending the proposed repo now changes nothing about what gets deployed.
    hive.commit("coder", {"agent.conf": "model = 'evil'\n"}, "sneaky")
    result = hive.cli("approve", str(apply_id))
    assert result.returncode == 0, result.stderr
    assert "-- build" in result.stderr  # the steps were shown as they came
    t = tags(hive, "coder")
    assert t[f"deployed/{apply_id}"] == sha
    assert t[f"approved/{apply_id}"] == t[f"building/{apply_id}"] == t[f"proposal/{apply_id}"]
    assert applied(hive, "coder").rev("main") == sha
    assert (hive.state_dir / "applied" / "coder" / "agent.conf").read_text() == "model = 'big'\n"
    assert applied(hive, "coder")("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert applied(hive, "coder")("status", "--porcelain").strip() == ""

    # --- a commit the fake backend is told to fail
    bad = hive.commit("coder", {"FAIL": "error: attribute 'nope' missing\n"}, "broken")
    fail_id = json.loads(cli_ok(hive, "request", "apply", "coder", bad, "--json"))["id"]
    result = hive.cli("approve", str(fail_id))
    assert result.returncode == 1
    assert "attribute 'nope' missing" in result.stderr
    repo = applied(hive, "coder")
    assert repo("cat-file", "-t", f"failed/{fail_id}").strip() == "tag"  # annotated
    assert repo.tag_message(f"failed/{fail_id}") == "error: attribute 'nope' missing"
    assert repo.rev("main") == sha  # unchanged
    assert not (hive.state_dir / "applied" / "coder" / "FAIL").exists()  # tree restored
    failed = hive.approval(fail_id)
    assert failed["status"] == "failed"
    assert failed["note"] == "error: attribute 'nope' missing"
    assert failed["tag"] == f"failed/{fail_id}"

    # --- a deny with a note
    deny_id = json.loads(cli_ok(hive, "request", "apply", "coder", bad, "--json"))["id"]
    cli_ok(hive, "deny", str(deny_id), "--note", "not <b>now</b>")
    assert repo("cat-file", "-t", f"denied/{deny_id}").strip() == "tag"
    assert repo.tag_message(f"denied/{deny_id}") == "not <b>now</b>"
    assert hive.approval(deny_id)["note"] == "not <b>now</b>"

    # --- the manager's inbox holds every outcome, in order
    got = [(e["type"], e.get("id") or e.get("agent"), e.get("status") or e.get("ok"))
           for e in helper_events(hive)]
    assert got == [
        ("approval_resolved", spawn_id, "approved"),
        ("spawned", "coder", True),
        ("approval_resolved", apply_id, "approved"),
        ("rebuilt", "coder", True),
        ("approval_resolved", fail_id, "failed"),
        ("rebuilt", "coder", False),
        ("approval_resolved", deny_id, "denied"),
    ]
    resolved = helper_events(hive)[2]
    assert resolved["sha"] == sha and resolved["tag"] == f"deployed/{apply_id}"
    # ...and the agent was woken after its successful apply.
    coder_inbox = hive.get("/api/agents/coder/inbox")
    assert any("config update applied" in m["body"] for m in coder_inbox)

    # --- destroy --purge: folders gone, pending approvals failed
    pending_id = json.loads(cli_ok(hive, "request", "apply", "coder", sha, "--json"))["id"]
    refused = hive.cli("destroy", "coder", "--purge")  # no terminal to ask on: --yes needed
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert (hive.state_dir / "agents" / "coder" / "config").is_dir()
    assert hive.approval(pending_id)["status"] == "pending"
    cli_ok(hive, "destroy", "coder", "--purge", "--yes")
    assert not (hive.state_dir / "agents" / "coder").exists()
    assert not (hive.state_dir / "applied" / "coder").exists()
    assert not (hive.runtime_dir / "agents" / "coder").exists()
    gone = hive.approval(pending_id)
    assert (gone["status"], gone["note"]) == ("failed", "agent purged")
    assert helper_events(hive)[-1] == {"type": "destroyed", "agent": "coder", "purge": True}
    state = hive.get("/api/state")
    assert [a["name"] for a in state["agents"]] == ["manager"] and state["tombstones"] == []


def test_empty_proposal_says_so(hive):
    hive.spawn("coder")
    same = Repo(hive.state_dir / "agents" / "coder" / "config").rev("main")
    a = hive.post("/api/requests/apply", {"agent": "coder", "commit": same})
    assert hive.get(f"/api/approvals/{a['id']}")["diff"] == \
        "(proposal matches currently-deployed tree)"


@pytest.mark.parametrize("name", ["../x", "UPPER", "way-too-long-name", "", "a/b", "é", "9lives"])
def test_bad_names_are_refused_and_change_nothing(hive, name):
    result = hive.cli("request", "spawn", name)
    assert result.returncode == 2  # bad usage, refused before anything is sent
    assert "invalid agent name" in result.stderr and "lowercase letter" in result.stderr
    assert hive.get("/api/approvals", all=True) == []
    assert sorted(p.name for p in (hive.state_dir / "agents").iterdir()) == ["manager"]


def test_unknown_ids_and_double_transitions(hive):
    for args in (["approve", "99"], ["deny", "99"], ["show", "99"]):
        result = hive.cli(*args)
        assert result.returncode == 1 and "no approval #99" in result.stderr
    result = hive.cli("approve", "abc")
    assert result.returncode == 2 and "'abc' is not an id" in result.stderr
    a = hive.post("/api/requests/spawn", {"name": "coder"})
    cli_ok(hive, "deny", str(a["id"]))
    for verb in ("approve", "deny"):
        result = hive.cli(verb, str(a["id"]))
        assert result.returncode == 1
        assert f"approval #{a['id']} is denied, not pending" in result.stderr
    # A denied spawn has no tag and changed nothing on disk.
    assert hive.approval(a["id"])["tag"] is None
    assert not (hive.state_dir / "agents" / "coder").exists()


def test_double_approve_races_resolve_once(hive):
    a = hive.post("/api/requests/spawn", {"name": "coder"})
    results = []

    def go() -> None:
        results.append(hive.cli("approve", str(a["id"]), "-q").returncode)

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1, 1]
    assert [c["call"] for c in calls(hive.state_dir) if c["agent"] == "coder"] == ["spawn"]


def test_request_errors_leave_nothing_pending(hive):
    hive.spawn("coder")
    for body, status, text in [
        ({"agent": "ghost", "commit": "HEAD"}, 404, "no agent named 'ghost'"),
        ({"agent": "coder", "commit": "deadbeef"}, 404, "not found in coder's proposed repo"),
        ({"agent": "coder", "commit": "--upload-pack=x"}, 400, "not a valid commit"),
        ({"agent": "coder"}, 400, "commit"),
        ({"agent": "coder", "commit": "HEAD", "extra": 1}, 400, "extra"),
    ]:
        with pytest.raises(Exception) as info:
            hive.post("/api/requests/apply", body)
        assert getattr(info.value, "status", None) == status, (body, info.value)
        assert text in str(info.value)
    assert [a["kind"] for a in hive.get("/api/approvals", all=True)] == ["spawn"]
    result = hive.cli("request", "spawn", "coder")
    assert result.returncode == 1 and "already exists" in result.stderr
    hive.post("/api/requests/spawn", {"name": "other"})
    result = hive.cli("request", "spawn", "other")
    assert result.returncode == 1 and "already requested" in result.stderr
    result = hive.cli("request", "spawn", "manager")
    assert result.returncode == 1 and "reserved" in result.stderr


def test_malformed_json_is_a_400(hive):
    import httpx

    with httpx.Client(transport=httpx.HTTPTransport(uds=str(hive.socket))) as client:
        resp = client.post("http://hive/api/requests/spawn", content=b"{not json")
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]


def test_destroy_keeps_a_tombstone_that_respawns_with_its_history(hive):
    hive.spawn("coder")
    sha = hive.commit("coder", {"notes.md": "remember\n"}, "notes")
    a = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    hive.post(f"/api/approvals/{a['id']}/approve")
    (hive.state_dir / "agents" / "coder" / "creds" / "token").write_text("secret")
    pending = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    cli_ok(hive, "destroy", "coder")
    state = hive.get("/api/state")
    assert [t["name"] for t in state["tombstones"]] == ["coder"]
    assert state["tombstones"][0]["deployed_sha"] == sha
    gone = hive.approval(pending["id"])
    assert (gone["status"], gone["note"], gone["tag"]) == (
        "failed", "agent destroyed", f"failed/{pending['id']}")
    result = hive.cli("destroy", "coder")
    assert result.returncode == 1 and "already destroyed" in result.stderr
    hive.spawn("coder")
    assert applied(hive, "coder").rev("main") == sha  # history kept
    assert (hive.state_dir / "agents" / "coder" / "creds" / "token").read_text() == "secret"
    assert hive.get("/api/state")["tombstones"] == []


def test_manager_cannot_be_destroyed(hive):
    result = hive.cli("destroy", "manager", "--purge", "--yes")
    assert result.returncode == 1 and "refusing to destroy the manager" in result.stderr
    assert (hive.state_dir / "agents" / "manager" / "config").is_dir()


def test_lifecycle_commands_and_transients(hive):
    hive.spawn("coder")
    assert json.loads(cli_ok(hive, "stop", "coder", "--json"))["status"] == "stopped"
    assert json.loads(cli_ok(hive, "start", "coder", "--json"))["status"] == "running"
    assert json.loads(cli_ok(hive, "restart", "coder", "--json"))["status"] == "running"
    out = hive.cli("rebuild", "coder")
    assert out.returncode == 0 and "fake: built coder" in out.stderr
    # The transient shows for exactly the duration of the work, and blocks a second operation.
    # Long enough that the refusal below is seen even on a loaded machine (a CLI call there
    # can take seconds); the rebuild then finishes on its own.
    control(hive.state_dir, delay={"coder": 10})
    t = threading.Thread(target=lambda: hive.cli("rebuild", "coder", "-q"))
    t.start()
    hive.wait_for(lambda: hive.get("/api/state")["transients"].get("coder") == "rebuilding",
                  what="the rebuilding transient")
    busy = hive.cli("stop", "coder")
    assert busy.returncode == 1 and "is busy (rebuilding)" in busy.stderr
    t.join()
    assert hive.get("/api/state")["transients"] == {}
    # A failing start clears its transient too, and says why.
    control(hive.state_dir, fail={"coder": "boom: no such image"})
    cli_ok(hive, "stop", "coder")
    result = hive.cli("start", "coder")
    assert result.returncode == 1 and "boom: no such image" in result.stderr
    assert hive.get("/api/state")["transients"] == {}
    result = hive.cli("start", "ghost")
    assert result.returncode == 1 and "no agent named 'ghost'" in result.stderr


def test_different_agents_deploy_concurrently(hive):
    for name in ("aa", "bb"):
        hive.spawn(name)
    control(hive.state_dir, delay={"aa": 2, "bb": 2})
    ids = {}
    for name in ("aa", "bb"):
        sha = hive.commit(name, {"x": name}, "x")
        ids[name] = hive.post("/api/requests/apply", {"agent": name, "commit": sha})["id"]
    results = {}
    threads = [threading.Thread(target=lambda n=n: results.update(
        {n: hive.cli("approve", str(ids[n]), "-q").returncode})) for n in ids]
    for t in threads:
        t.start()
    # Both are building at the same time (different agents don't wait for each other).
    hive.wait_for(lambda: hive.get("/api/state")["transients"] == {"aa": "rebuilding",
                                                                    "bb": "rebuilding"},
                  what="both deploys in flight")
    for t in threads:
        t.join()
    assert results == {"aa": 0, "bb": 0}


def test_failed_spawn_is_failed_with_the_reason_and_leaves_nothing(hive):
    control(hive.state_dir, fail={"coder": "no space left on device"})
    a = hive.post("/api/requests/spawn", {"name": "coder"})
    hive.post(f"/api/approvals/{a['id']}/approve")
    result = hive.wait_resolved(a["id"])
    assert (result["status"], result["note"]) == ("failed", "no space left on device")
    assert helper_events(hive)[-1]["type"] == "spawned"
    assert helper_events(hive)[-1]["ok"] is False
    # The backend was told to remove what it half-made; the seeded repos are gone with it.
    assert [c["call"] for c in calls(hive.state_dir) if c["agent"] == "coder"] == [
        "spawn", "destroy"]
    assert next(c for c in calls(hive.state_dir) if c["call"] == "destroy")["purge"] is True
    state = hive.get("/api/state")
    assert state["tombstones"] == [] and "coder" not in {a["name"] for a in state["agents"]}
    assert not (hive.state_dir / "agents" / "coder" / "config").exists()
    assert not (hive.state_dir / "applied" / "coder").exists()


def test_a_failed_respawn_of_a_tombstone_keeps_the_tombstone(hive):
    hive.spawn("coder")
    hive.post("/api/agents/coder/destroy", {"purge": False})
    control(hive.state_dir, fail={"coder": "no space left on device"})
    a = hive.post("/api/requests/spawn", {"name": "coder"})
    hive.post(f"/api/approvals/{a['id']}/approve")
    assert hive.wait_resolved(a["id"])["status"] == "failed"
    assert [t["name"] for t in hive.get("/api/state")["tombstones"]] == ["coder"]
    assert (hive.state_dir / "applied" / "coder").is_dir()


def test_approvals_failed_by_a_destroy_or_purge_tell_resolved_then_destroyed_only(hive):
    """Neither a pending apply of a destroyed agent nor a pending re-spawn of a purged one ran:
    the manager hears approval_resolved (with the note) and destroyed, no rebuilt/spawned."""
    hive.spawn("coder")
    sha = hive.commit("coder", {"notes.md": "x\n"})
    pending = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    before = len(helper_events(hive))
    cli_ok(hive, "destroy", "coder")
    told = helper_events(hive)[before:]
    assert [(e["type"], e.get("id"), e.get("status"), e.get("note")) for e in told] == [
        ("approval_resolved", pending["id"], "failed", "agent destroyed"),
        ("destroyed", None, None, None)]
    respawn = hive.post("/api/requests/spawn", {"name": "coder"})
    before = len(helper_events(hive))
    cli_ok(hive, "destroy", "coder", "--purge", "--yes")
    told = helper_events(hive)[before:]
    assert [(e["type"], e.get("id"), e.get("status"), e.get("note")) for e in told] == [
        ("approval_resolved", respawn["id"], "failed", "agent purged"),
        ("destroyed", None, None, None)]
    assert told[-1] == {"type": "destroyed", "agent": "coder", "purge": True}
