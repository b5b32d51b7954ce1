"""Deploy overhead: request + approve → ``deployed/<id>`` with the fake backend (zero build time),
against the floor of the same git plumbing run directly in one process."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.common import Result, local_hive, median_time, short_tmp

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
           "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "PATH": "/usr/bin:/bin"}


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env=GIT_ENV, check=True, text=True,
                          capture_output=True, input=stdin).stdout


def floor_deploy(proposed: Path, applied: Path, n: int) -> None:
    """What a deploy fundamentally must do in git, with nothing around it."""
    sha = git(proposed, "rev-parse", "--verify", "HEAD^{commit}").strip()
    git(applied, "fetch", "--quiet", "--no-tags", str(proposed), sha)
    git(applied, "tag", f"proposal/{n}", sha)
    prev = git(applied, "rev-parse", "--verify", "refs/heads/main").strip()
    git(applied, "tag", f"approved/{n}", sha)
    git(applied, "tag", f"building/{n}", sha)
    git(applied, "update-ref", "refs/heads/main", sha)
    git(applied, "read-tree", "--reset", "-u", "refs/heads/main")
    git(applied, "tag", f"deployed/{n}", sha)
    del prev


def run(quick: bool = False) -> Result:
    from hivekit import actions
    from hivekit import git as hgit

    repeat = 5 if quick else 40
    result = Result("deploy overhead (fake backend, in process)")
    hive = local_hive(short_tmp() / "deploy")
    hive.store.add_agent("coder")
    from hivekit.deploy import seed

    seed(hive, hive.agent("coder"))
    hive.hook.spawn(hive=hive, agent=hive.agent("coder"))
    proposed = hive.agent("coder").paths.config
    counter = {"n": 0}
    original = hgit.run

    def counting(*args, **kwargs):
        counter["n"] += 1
        return original(*args, **kwargs)

    hgit.run = counting
    step = {"i": 0}

    def hivekit_deploy() -> None:
        step["i"] += 1
        proposed.joinpath("agent.conf").write_text(f"v = {step['i']}\n")
        git(proposed, "commit", "-qam", f"v{step['i']}")  # as the floor does: not measured work
        counter["n"] = 0
        a = actions.request_apply(hive, "coder", "HEAD")
        done = actions.approve(hive, a.id)
        assert done.status.value == "approved", done.note

    # The floor works on its own pair of repos, same sizes.
    root = short_tmp()
    fp, fa = root / "p", root / "a"
    for repo in (fp, fa):
        repo.mkdir()
        git(repo, "init", "-q", "--initial-branch=main")
    (fp / "agent.conf").write_text("v = 0\n")
    git(fp, "add", "-A")
    git(fp, "commit", "-qm", "init")
    git(fa, "fetch", "-q", str(fp), "main")
    git(fa, "update-ref", "refs/heads/main", "FETCH_HEAD")
    git(fa, "read-tree", "--reset", "-u", "main")
    fstep = {"i": 0}

    def floor() -> None:
        fstep["i"] += 1
        (fp / "agent.conf").write_text(f"v = {fstep['i']}\n")
        git(fp, "commit", "-qam", f"v{fstep['i']}")
        floor_deploy(fp, fa, fstep["i"])

    t_hive = median_time(hivekit_deploy, repeat)
    git_calls = counter["n"]
    t_floor = median_time(floor, repeat)
    hgit.run = original
    result.add("request + approve -> deployed/<id>", t_hive, t_floor, target=1.5)
    result.add("git subprocesses per deploy (hivekit)", git_calls, unit="calls")
    result.add("git subprocesses per deploy (floor)", 10, unit="calls")
    result.notes.append("both sides include one commit in the proposed repo per iteration")
    return result
