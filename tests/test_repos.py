"""Repos are opened by hivekit's rules: a proposed repo that points the daemon elsewhere is
refused at request time, and nothing outside the agents' folders is ever read.

The manager can write its agents' proposed repos. Each attack below rewires ``coder``'s into a
repository outside the agents' folders holding a secret; the request is refused on every
surface (the manager's socket, the admin API, the CLI) with the reason, nothing is fetched, no
approval appears, and the secret is in no answer. The daemon itself runs with hostile ``GIT_*``
variables in its environment, which git must never see.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rawhttp import call

from hivekit.testing import HiveProcess

SECRET = "s3cr3t-0f-an0ther-repo-7f1c"
RULE = "hivekit only reads repositories inside the agent's folder"


def git(repo: Path, *args: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(repo), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


class World:
    def __init__(self, hive: HiveProcess, outside: Path, sha: str, marker: Path) -> None:
        self.hive, self.outside, self.secret_sha, self.marker = hive, outside, sha, marker
        self.config = hive.state_dir / "agents" / "coder" / "config"
        self.applied = hive.state_dir / "applied" / "coder"
        self.manager_sock = hive.runtime_dir / "agents" / "manager" / "hive.sock"

    def everything_shown(self) -> str:
        """Every answer an operator or the manager can get that could carry repo content."""
        texts = [call(self.hive.socket, "GET", "/api/state")[1],
                 call(self.hive.socket, "GET", "/api/approvals?all=true&limit=1000")[1],
                 call(self.manager_sock, "GET", "/approvals?all=true")[1],
                 call(self.hive.socket, "GET", "/api/agents/manager/inbox?limit=1000")[1]]
        for a in json.loads(texts[1]):
            texts.append(call(self.hive.socket, "GET", f"/api/approvals/{a['id']}")[1])
            texts.append(call(self.manager_sock, "GET", f"/approvals/{a['id']}")[1])
        return "\n".join(texts)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="hkr", dir="/tmp"))
    outside = root / "outside"
    outside.mkdir()
    git(outside, "init", "-q", "-b", "main")
    (outside / "secret.txt").write_text(SECRET + "\n")
    git(outside, "add", "secret.txt")
    git(outside, "commit", "-qm", "the secret")
    sha = git(outside, "rev-parse", "HEAD")
    marker = root / "ran"
    spy = root / "spy.sh"
    spy.write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\nexit 0\n")
    spy.chmod(0o755)
    hostile = {  # what a polluted service environment could carry; git must see none of it
        "GIT_DIR": str(outside / ".git"), "GIT_WORK_TREE": str(outside),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(outside / ".git" / "objects"),
        "GIT_EXTERNAL_DIFF": str(spy), "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "core.hooksPath", "GIT_CONFIG_VALUE_0": str(root),
        "GIT_CONFIG_PARAMETERS": f"'core.fsmonitor'='{spy}'"}
    hive = HiveProcess(root / "h", env=hostile)
    hive.start()
    try:
        hive.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                                  for a in hive.get("/api/state")["agents"]), what="manager")
        hive.spawn("coder")
        yield World(hive, outside, sha, marker)
    finally:
        hive.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- the attacks: each rewires coder's proposed repo, and returns how to undo it ---------------


def gitfile(w: World) -> Callable[[], None]:
    real = w.config.parent / "real.git"
    (w.config / ".git").rename(real)
    (w.config / ".git").write_text(f"gitdir: {w.outside / '.git'}\n")
    return lambda: ((w.config / ".git").unlink(), real.rename(w.config / ".git"))


def symlinked_git(w: World) -> Callable[[], None]:
    real = w.config.parent / "real.git"
    (w.config / ".git").rename(real)
    (w.config / ".git").symlink_to(w.outside / ".git")
    return lambda: ((w.config / ".git").unlink(), real.rename(w.config / ".git"))


def symlinked_repo(w: World) -> Callable[[], None]:
    real = w.config.parent / "real-config"
    w.config.rename(real)
    w.config.symlink_to(w.outside)
    return lambda: (w.config.unlink(), real.rename(w.config))


def alternates(w: World) -> Callable[[], None]:
    path = w.config / ".git" / "objects" / "info" / "alternates"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(w.outside / ".git" / "objects") + "\n")
    git(w.config, "update-ref", "refs/heads/stolen", w.secret_sha)
    return lambda: (git(w.config, "update-ref", "-d", "refs/heads/stolen"), path.unlink())


def include_path(w: World) -> Callable[[], None]:
    git(w.config, "config", "include.path", str(w.outside / ".git" / "config"))
    return lambda: git(w.config, "config", "--unset", "include.path")


def include_if(w: World) -> Callable[[], None]:
    git(w.config, "config", "includeIf.gitdir:/.path", str(w.outside / ".git" / "config"))
    return lambda: git(w.config, "config", "--remove-section", "includeIf.gitdir:/")


def worktree_elsewhere(w: World) -> Callable[[], None]:
    git(w.config, "config", "core.worktree", str(w.outside))
    return lambda: git(w.config, "config", "--unset", "core.worktree")


def fsmonitor(w: World) -> Callable[[], None]:
    git(w.config, "config", "core.fsmonitor", str(w.marker.parent / "spy.sh"))
    return lambda: git(w.config, "config", "--unset", "core.fsmonitor")


def linked_ref(w: World) -> Callable[[], None]:
    ref = w.config / ".git" / "refs" / "heads" / "stolen"
    ref.symlink_to(w.outside / ".git" / "refs" / "heads" / "main")
    return ref.unlink


def fifo_ref(w: World) -> Callable[[], None]:
    ref = w.config / ".git" / "refs" / "heads" / "stuck"
    os.mkfifo(ref)  # git reading it would hang the request
    return ref.unlink


ATTACKS = {
    gitfile: "its proposed repo's .git is a file pointing to another place (a gitfile)",
    symlinked_git: "its proposed repo's .git is a link to another place",
    symlinked_repo: "is a link to another place",
    alternates: "objects/info/alternates makes git read another repository's objects",
    include_path: "config sets include.path",
    include_if: "config sets includeif.gitdir:/.path",
    worktree_elsewhere: "config sets core.worktree",
    fsmonitor: "config sets core.fsmonitor",
    linked_ref: "refs/heads/stolen is a link to another place",
    fifo_ref: "refs/heads/stuck is not a regular file",
}


@pytest.mark.parametrize("attack", list(ATTACKS), ids=lambda a: a.__name__)
def test_a_proposed_repo_pointing_elsewhere_is_refused(world: World, attack: Any) -> None:
    w = world
    tags_before = sorted(git(w.applied, "tag").split())
    approvals_before = w.hive.get("/api/approvals", all=True, limit=1000)
    undo = attack(w)
    try:
        for commit in ("HEAD", w.secret_sha):
            body = {"agent": "coder", "commit": commit}
            answers = [call(w.manager_sock, "POST", "/requests/apply", body),
                       call(w.hive.socket, "POST", "/api/requests/apply", body)]
            cli = w.hive.cli("request", "apply", "coder", commit)
            answers.append((400 if cli.returncode == 1 else cli.returncode,
                            json.dumps({"error": cli.stderr.removeprefix("error: ").strip()})))
            for status, text in answers:
                error = json.loads(text)["error"]
                assert status == 400, (attack.__name__, status, text)
                assert error.startswith("agent 'coder': "), error
                assert ATTACKS[attack] in error and RULE in error, error
                assert SECRET not in text
            assert "Traceback" not in cli.stderr
    finally:
        undo()
    assert w.hive.get("/api/approvals", all=True, limit=1000) == approvals_before
    assert sorted(git(w.applied, "tag").split()) == tags_before
    fetched = subprocess.run(["git", "-C", str(w.applied), "cat-file", "-e", w.secret_sha],
                             capture_output=True)
    assert fetched.returncode != 0, "the secret commit was fetched into the applied repo"
    assert SECRET not in w.everything_shown()
    assert not w.marker.exists(), w.marker.read_text()
    assert "Traceback" not in w.hive.log()


def test_a_plain_repo_still_deploys_and_no_outside_git_setting_ran(world: World) -> None:
    # The refusals above are the rules, not a repo hivekit cannot read: the same repo, undone,
    # requests and shows its diff as before, despite the hostile GIT_* of the daemon's env.
    w = world
    sha = w.hive.commit("coder", {"agent.conf": "fine = true\n"})
    approval = w.hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    detail = w.hive.get(f"/api/approvals/{approval['id']}")
    assert "+fine = true" in detail["diff"]
    assert SECRET not in json.dumps(detail) and SECRET not in w.everything_shown()
    assert not w.marker.exists(), w.marker.read_text()
    w.hive.post(f"/api/approvals/{approval['id']}/deny", {"note": "test"})


def test_the_fake_backends_failure_file_is_never_followed(world: World) -> None:
    # A FAIL marker the manager commits as a link to a file outside: the build fails, unread.
    w = world
    link = w.config / "FAIL"
    link.symlink_to(w.outside / "secret.txt")
    git(w.config, "add", "FAIL")
    git(w.config, "commit", "-qm", "fail through a link")
    try:
        sha = git(w.config, "rev-parse", "HEAD")
        approval = w.hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
        result = w.hive.post(f"/api/approvals/{approval['id']}/approve")
        assert result["status"] == "failed"
        assert result["note"] == "fake: FAIL is a link; not followed"
        assert SECRET not in w.everything_shown()
    finally:
        git(w.config, "rm", "-q", "FAIL")
        git(w.config, "commit", "-qm", "no more FAIL")
