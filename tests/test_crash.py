"""Crash safety: SIGKILL a real daemon at every declared crash point; the restarted hive agrees
with itself (DESIGN.md: the store, the tags, the running container and every inbox agree, and
each party was told each outcome exactly once).

``test_every_crash_point`` walks :data:`hivekit.crashpoints.POINTS`: a point declared there is
tested here without editing this file, through the scenario of its ``operation``. The points
share one daemon per test worker (each point works on an agent of its own), so the walk costs a
restart per point rather than a hive.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from hivekit.client import ApiError
from hivekit.crashpoints import POINTS
from hivekit.deploy import INTERRUPTED
from hivekit.git import Repo
from hivekit.testing import HiveProcess, calls, control

TERMINAL = ("approved", "denied", "failed")


class Crashing:
    """One daemon for a worker's crash tests, with what each agent was owed beyond approvals."""

    def __init__(self, hive: HiveProcess) -> None:
        self.hive = hive
        #: agent → operator rebuilds asked (each owes the manager one `rebuilt`).
        self.rebuilds: Counter[str] = Counter()
        #: agent → destroys asked (each owes the manager one `destroyed`).
        self.destroys: Counter[str] = Counter()

    @property
    def state(self) -> Path:
        return self.hive.state_dir

    def applied(self, name: str) -> Repo:
        return Repo(self.state / "applied" / name)

    def proposal(self, name: str, content: str) -> int:
        """A pending apply of a new commit of ``name``'s config; returns its id."""
        sha = self.hive.commit(name, {"agent.conf": content}, content.strip())
        return self.hive.post("/api/requests/apply", {"agent": name, "commit": sha})["id"]

    def expect_crash(self, action: Callable[[], Any]) -> None:
        """Run ``action`` (it makes the daemon reach the armed point) and see the daemon die."""
        action()
        self.hive.proc.wait(60)
        assert self.hive.proc.returncode == -9, f"the daemon did not die:\n{self.hive.log()}"

    def cli_into_crash(self, *args: str) -> None:
        def run() -> None:
            result = self.hive.cli(*args, timeout=60)
            # The daemon died under it: the CLI says so, exits 1, and shows no traceback.
            assert result.returncode == 1, result
            assert "Traceback" not in result.stderr

        self.expect_crash(run)

    def restart(self) -> None:
        control(self.state)  # nothing armed, nothing failing: the recovery itself must work
        self.hive.start()
        self.hive.wait_for(lambda: (s := self.hive.get("/api/state"))["transients"] == {}
                           and not any(a["status"] == "running" for a in s["approvals"]),
                           what="recovery to finish")


@pytest.fixture(scope="module")
def crashing() -> Iterator[Crashing]:
    root = Path(tempfile.mkdtemp(prefix="hk", dir="/tmp"))
    hive = HiveProcess(root / "h")
    hive.start()
    hive.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                              for a in hive.get("/api/state")["agents"]),
                  what="the manager to come up")
    try:
        yield Crashing(hive)
    finally:
        try:
            hive.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


# --- one scenario per operation: arm the point, drive the operation into it ------------------


def _apply(c: Crashing, name: str, point: str, fail: str | None = None) -> None:
    c.hive.spawn(name)
    approval_id = c.proposal(name, "v = 2\n")
    control(c.state, crash={name: point}, fail={name: fail} if fail else {})
    c.cli_into_crash("approve", str(approval_id))


def _recovery(c: Crashing, name: str, point: str) -> None:
    # Killed after the build returned (the container runs the proposal, untagged); the point is
    # in the recovery that the next start runs.
    _apply(c, name, "apply.built")
    control(c.state, crash={name: point})
    c.expect_crash(lambda: c.hive.start(wait=False))


def _spawn(c: Crashing, name: str, point: str, fail: str | None = None) -> None:
    control(c.state, crash={name: point}, fail={name: fail} if fail else {})
    approval = c.hive.post("/api/requests/spawn", {"name": name})

    def approve() -> None:  # the spawn goes on in the background, or dies with the request
        with contextlib.suppress(ApiError):
            c.hive.post(f"/api/approvals/{approval['id']}/approve")

    c.expect_crash(approve)


def _deny(c: Crashing, name: str, point: str) -> None:
    c.hive.spawn(name)
    approval_id = c.proposal(name, "v = 2\n")
    control(c.state, crash={name: point})
    c.cli_into_crash("deny", str(approval_id), "--note", "not now")


def _destroy(c: Crashing, name: str, point: str, purge: bool = False) -> None:
    c.hive.spawn(name)
    c.proposal(name, "v = 2\n")  # left pending: the destroy fails it
    control(c.state, crash={name: point})
    c.destroys[name] += 1
    c.cli_into_crash("destroy", name, *(["--purge", "--yes"] if purge else []))


def _rebuild(c: Crashing, name: str, point: str) -> None:
    c.hive.spawn(name)
    control(c.state, crash={name: point})
    c.rebuilds[name] += 1
    c.cli_into_crash("rebuild", name)


SCENARIOS: dict[str, Callable[[Crashing, str, str], None]] = {
    "apply": _apply,
    "apply-failure": lambda c, n, p: _apply(c, n, p, fail="boom: the build broke"),
    "recovery": _recovery,
    "spawn": _spawn,
    "spawn-failure": lambda c, n, p: _spawn(c, n, p, fail="boom: no space left"),
    "deny": _deny,
    "destroy": _destroy,
    "purge": lambda c, n, p: _destroy(c, n, p, purge=True),
    "rebuild": _rebuild,
}

# Each point's agent: a name of its own, from its place in the table (names are 1-9 chars).
AGENTS = {name: f"k{i}" for i, name in enumerate(POINTS)}


def test_every_point_has_a_scenario():
    assert {p.operation for p in POINTS.values()} <= set(SCENARIOS)


@pytest.mark.parametrize("point", list(POINTS))
def test_every_crash_point(crashing: Crashing, point: str) -> None:
    name = AGENTS[point]
    SCENARIOS[POINTS[point].operation](crashing, name, point)
    crashing.restart()
    assert_agreed(crashing, name, "manager")
    # Every approval the operation touched has ended.
    ours = [a for a in approvals(crashing) if a["agent"] == name]
    assert ours and all(a["status"] in TERMINAL for a in ours), ours
    # And the hive works on: the agent (if it is still one) deploys a new commit.
    if name in agent_names(crashing):
        approval_id = crashing.proposal(name, f"v = {point}\n")
        assert crashing.hive.post(f"/api/approvals/{approval_id}/approve")["status"] == "approved"
        assert_agreed(crashing, name)


# --- what must hold after every restart --------------------------------------------------------


def approvals(c: Crashing) -> list[dict[str, Any]]:
    return c.hive.get("/api/approvals", all="true")


def agent_names(c: Crashing) -> set[str]:
    return {a["name"] for a in c.hive.get("/api/state")["agents"]}


def messages(c: Crashing) -> list[dict[str, Any]]:
    """Every message in the hive's database (read-only, beside the running daemon)."""
    db = apsw.Connection(str(c.state / "hive.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        cur = db.execute("SELECT id, sender, recipient, body FROM messages ORDER BY id")
        return [dict(zip(("id", "sender", "recipient", "body"), row, strict=True))
                for row in cur]
    finally:
        db.close()


def assert_agreed(c: Crashing, *names: str) -> None:
    """Everything the crash tests promise, for the whole hive's store, inboxes and folders, and
    for the repos and containers of ``names`` (the agents the test worked on; each point has
    its own, so checking every agent's repos each time would only repeat the earlier checks)."""
    state = c.hive.get("/api/state")
    everything = approvals(c)
    live = {a["name"] for a in state["agents"]}
    assert state["transients"] == {}
    # No approval running, none pending for an agent that is gone (a spawn's may wait).
    assert not [a for a in everything if a["status"] == "running"]
    assert not [a for a in everything if a["status"] == "pending" and a["kind"] == "apply"
                and a["agent"] not in live]
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for a in everything:
        by_agent.setdefault(a["agent"], []).append(a)
    for name in names:
        repo = c.applied(name)
        if repo.exists():
            assert_tags(repo, by_agent.get(name, []))
        if name in live:
            assert_deployed(c, name, by_agent.get(name, []))
    assert not [a["name"] for a in state["agents"]
                if any(b["label"] == "needs rebuild" for b in a["badges"])]
    for path in (c.state / "fake").glob("*.json"):  # no container for an agent that is gone
        if path.stem != "control":
            assert path.stem in live, f"container of {path.stem} outlived it"
    assert_told(c, everything)
    assert_no_orphans(c, live)


def assert_tags(repo: Repo, theirs: list[dict[str, Any]]) -> None:
    for a in theirs:
        if a["kind"] != "apply":
            continue
        i, status = a["id"], a["status"]
        terminal = {t for t in ("deployed", "failed", "denied") if repo.has_tag(f"{t}/{i}")}
        if status == "approved":
            assert (terminal, a["tag"]) == ({"deployed"}, f"deployed/{i}"), a
        elif status == "pending":
            assert terminal == set() and not repo.has_tag(f"approved/{i}"), a
        else:
            word = "failed" if status == "failed" else "denied"
            assert (terminal, a["tag"]) == ({word}, f"{word}/{i}"), a
            assert repo("cat-file", "-t", f"{word}/{i}").strip() == "tag"  # annotated
            assert repo.tag_message(f"{word}/{i}") == (a["note"] or ""), a


def assert_deployed(c: Crashing, name: str, theirs: list[dict[str, Any]]) -> None:
    repo = c.applied(name)
    approved = [a["id"] for a in theirs if a["kind"] == "apply" and a["status"] == "approved"]
    last = f"deployed/{max(approved)}" if approved else "deployed/0"
    main = repo.rev("main")
    assert main == repo.rev(last), f"{name}: main is not at {last}"
    assert repo("status", "--porcelain").strip() == ""
    assert repo("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    container = json.loads((c.state / "fake" / f"{name}.json").read_text())
    assert container["built_sha"] == main, f"{name}'s container runs another commit than main"


def assert_told(c: Crashing, everything: list[dict[str, Any]]) -> None:
    all_messages = messages(c)
    helpers = [json.loads(m["body"]) for m in all_messages
               if m["recipient"] == "manager" and m["sender"] == "system"]
    resolved = Counter(h["id"] for h in helpers if h["type"] == "approval_resolved")
    for a in everything:
        assert resolved[a["id"]] == (1 if a["status"] in TERMINAL else 0), a
    for kind, owed in (("spawned", lambda n: _ended(everything, n, "spawn")),
                       ("rebuilt", lambda n: _ended(everything, n, "apply") + c.rebuilds[n]),
                       ("destroyed", lambda n: c.destroys[n])):
        told = Counter(h["agent"] for h in helpers if h["type"] == kind)
        for name in {a["agent"] for a in everything} | set(told):
            assert told[name] == owed(name), f"{name}: {told[name]} {kind}, owed {owed(name)}"
    woken = Counter(m["body"].split(" deployed ")[0] for m in all_messages
                    if m["sender"] == "system" and m["body"].startswith("config update"))
    for a in everything:
        if a["kind"] == "apply":
            owed = 1 if a["status"] == "approved" else 0
            assert woken[f"config update applied: approval #{a['id']}"] == owed, a


def _ended(everything: list[dict[str, Any]], name: str, kind: str) -> int:
    """Approvals of ``name``'s ``kind`` that ran to an end (owing a spawned/rebuilt): failed by
    a destroy or purge, they never ran and owe only approval_resolved."""
    return sum(1 for a in everything if a["agent"] == name and a["kind"] == kind
               and a["status"] in ("approved", "failed")
               and a.get("note") not in ("agent destroyed", "agent purged"))


def assert_no_orphans(c: Crashing, live: set[str]) -> None:
    trash = c.state / "trash"
    assert not trash.exists() or not any(trash.iterdir())
    assert not list((c.state / "applied").glob("*.new"))
    assert not list((c.state / "agents").glob("*/config.new"))
    for applied in (c.state / "applied").iterdir():
        assert (c.state / "agents" / applied.name / "config").is_dir(), f"orphan {applied}"
    runtime = c.hive.runtime_dir / "agents"
    if runtime.exists():
        assert {d.name for d in runtime.iterdir()} <= live


# --- beyond the table ----------------------------------------------------------------------


def deploy_calls(hive: HiveProcess, approval_id: int) -> list[str]:
    return [c["call"] for c in calls(hive.state_dir)
            if c.get("approval") == approval_id and c["call"].endswith("_deploy")]


def test_crash_in_the_deploy_hooks(crashing: Crashing) -> None:
    """Killed inside prepare_deploy: recovery undoes it; inside finalize_deploy: it runs again
    (the hooks must be idempotent)."""
    c = crashing
    for name, hook in (("hp", "prepare_deploy"), ("hf", "finalize_deploy")):
        c.hive.spawn(name)
        approval_id = c.proposal(name, "v = 2\n")
        control(c.state, crash={name: hook})
        c.cli_into_crash("approve", str(approval_id))
        c.restart()
        a = c.hive.approval(approval_id)
        if hook == "prepare_deploy":
            assert (a["status"], a["note"]) == ("failed", INTERRUPTED)
            assert deploy_calls(c.hive, approval_id) == ["prepare_deploy", "abort_deploy"]
        else:
            assert a["status"] == "approved"
            assert deploy_calls(c.hive, approval_id) == ["prepare_deploy", "finalize_deploy",
                                                         "finalize_deploy"]
    assert_agreed(c, "hp", "hf")


def test_observers_are_told_again_after_a_crash_with_the_same_outbox_id(crashing) -> None:
    """Killed inside approval_resolved (the outbox entry not yet marked): the next start calls
    it again with the same outbox_id; the manager's inbox still has the outcome once."""
    c = crashing
    c.hive.spawn("ob")
    approval_id = c.proposal("ob", "v = 2\n")
    control(c.state, crash={"ob": "approval_resolved"})
    c.cli_into_crash("approve", str(approval_id))
    c.restart()
    told = [(x["approval"], x["outbox_id"]) for x in calls(c.state, "observed")
            if x["call"] == "approval_resolved" and x["approval"] == approval_id]
    assert len(told) == 2 and told[0] == told[1]
    assert c.hive.approval(approval_id)["status"] == "approved"
    assert_agreed(c, "ob")


def test_a_build_finishing_after_the_daemon_died(crashing: Crashing) -> None:
    """The backend's build outlives the daemon (nixos-container update does): whether it ends
    before the restart or during the recovery, the container ends at the restored main."""
    c = crashing
    marker = c.state / "fake"
    for name, finish_first in (("bg1", True), ("bg2", False)):
        c.hive.spawn(name)
        before = c.applied(name).rev("main")
        approval_id = c.proposal(name, "v = 2\n")
        proposal = c.applied(name).rev(f"proposal/{approval_id}")
        control(c.state, detach={name: 3.0})
        t = threading.Thread(target=c.hive.cli, args=("approve", str(approval_id)))
        t.start()
        building = marker / f"{name}.building"
        c.hive.wait_for(building.exists, what="the detached build to start")
        c.hive.kill()
        t.join()
        if finish_first:  # it finished alone: the container runs the proposal, now untagged
            c.hive.wait_for(lambda b=building: not b.exists(), what="the orphaned build to end")
            built = json.loads((marker / f"{name}.json").read_text())["built_sha"]
            assert built == proposal
        c.restart()
        a = c.hive.approval(approval_id)
        assert a["status"] == "failed"
        assert f"rolled back: {name} was rebuilt from main ({before[:12]})" in a["note"]
        assert json.loads((marker / f"{name}.json").read_text())["built_sha"] == before
        assert_agreed(c, name)


def test_a_crash_during_a_hanging_spawn(crashing: Crashing) -> None:
    c = crashing
    control(c.state, hang=["hs"])
    a = c.hive.post("/api/requests/spawn", {"name": "hs"})
    c.hive.post(f"/api/approvals/{a['id']}/approve")
    c.hive.wait_for(lambda: any(x["call"] == "spawn" and x["agent"] == "hs"
                                for x in calls(c.state)), what="the spawn to start")
    c.hive.kill()
    c.restart()
    approval = c.hive.approval(a["id"])
    assert approval["status"] == "failed" and "interrupted" in approval["note"]
    # The half-made container is destroyed, and a new agent's seeded repos go with it.
    assert [(x["call"], x.get("purge")) for x in calls(c.state) if x["agent"] == "hs"] == [
        ("spawn", None), ("destroy", True)]
    assert "hs" not in [t["name"] for t in c.hive.get("/api/state")["tombstones"]]
    assert not (c.state / "agents" / "hs").exists() and not c.applied("hs").exists()
    assert_agreed(c, "hs")


def test_an_unwritable_deployed_tag_fails_the_deploy_and_rolls_back(crashing: Crashing) -> None:
    """The build succeeded but deployed/<id> cannot be written: a clear failure (never left
    running), and the container rebuilt from main."""
    c = crashing
    c.hive.spawn("tg")
    before = c.applied("tg").rev("main")
    approval_id = c.proposal("tg", "v = 2\n")
    # A ref below where the tag's ref file must go (deployed/<id>/x): git cannot create it.
    blocker = c.applied("tg").path / ".git" / "refs" / "tags" / "deployed" / str(approval_id)
    blocker.mkdir(parents=True)
    (blocker / "x").write_text(before + "\n")
    result = c.hive.cli("approve", str(approval_id))
    assert result.returncode == 1
    a = c.hive.approval(approval_id)
    assert a["status"] == "failed" and a["tag"] == f"failed/{approval_id}"
    assert f"the build succeeded, but deployed/{approval_id} could not be tagged" in a["note"]
    assert "rolled back: tg was rebuilt from main" in a["note"]
    assert json.loads((c.state / "fake" / "tg.json").read_text())["built_sha"] == before
    shutil.rmtree(blocker)
    assert_agreed(c, "tg")


def test_a_failed_rollback_marks_the_agent_needs_rebuild(crashing: Crashing) -> None:
    """Killed after the build; the recovery's rebuild from main fails too: the agent shows
    `needs rebuild` (API, CLI) until an operator's rebuild succeeds."""
    c = crashing
    c.hive.spawn("nr")
    approval_id = c.proposal("nr", "v = 2\n")
    control(c.state, crash={"nr": "apply.built"})
    c.cli_into_crash("approve", str(approval_id))
    control(c.state, fail={"nr": "nix: cannot build"})
    c.hive.start()
    a = c.hive.approval(approval_id)
    assert a["status"] == "failed"
    assert "the rebuild from main" in a["note"] and "nix: cannot build" in a["note"]
    assert c.applied("nr").tag_message(f"failed/{approval_id}") == a["note"]
    [agent] = [x for x in c.hive.get("/api/state")["agents"] if x["name"] == "nr"]
    [badge] = [b for b in agent["badges"] if b["label"] == "needs rebuild"]
    assert badge["level"] == "error" and "hivekit rebuild nr" in badge["detail"]
    listed = c.hive.cli("agents")
    assert "needs rebuild" in listed.stdout and "hivekit rebuild nr" in listed.stdout
    # A failing operator rebuild leaves the mark; a good one clears it.
    assert c.hive.cli("rebuild", "nr").returncode == 1
    assert "needs rebuild" in c.hive.cli("agents").stdout
    control(c.state)
    assert c.hive.cli("rebuild", "nr").returncode == 0
    assert "needs rebuild" not in c.hive.cli("agents").stdout
    c.rebuilds["nr"] += 2
    assert_agreed(c, "nr")
