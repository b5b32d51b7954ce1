"""Deploy overhead: request + approve → ``deployed/<id>`` with the fake backend (zero build time),
against a floor that runs **exactly the git commands hivekit runs** for it (same commands, same
arguments, same environment), directly, on a pair of repos of its own. Interleaved: one deploy
of each in turn. The bench records the commands hivekit ran and checks that they are the
floor's, with only the repos, the shas and the approval id differing."""

from __future__ import annotations

import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.common import Result, interleaved, local_hive, ratio_range, short_tmp

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
           "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "PATH": "/usr/bin:/bin"}


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env=GIT_ENV, check=True, text=True,
                          capture_output=True, input=stdin).stdout


class Floor:
    """A deploy's git work, as hivekit does it (see the module docstring), and nothing else."""

    def __init__(self, root: Path) -> None:
        from hivekit.git import _ENV

        self.env = _ENV  # hivekit's git environment, so each command does the same work
        self.proposed, self.applied = root / "p", root / "a"
        for repo in (self.proposed, self.applied):
            repo.mkdir(parents=True)
            git(repo, "init", "-q", "--initial-branch=main")
        (self.proposed / "agent.conf").write_text("v = 0\n")
        git(self.proposed, "add", "-A")
        git(self.proposed, "commit", "-qm", "init")
        git(self.applied, "fetch", "-q", str(self.proposed), "main")
        git(self.applied, "update-ref", "refs/heads/main", "FETCH_HEAD")
        git(self.applied, "read-tree", "--reset", "-u", "main")
        self.n = 0
        self.calls: list[tuple[list[str], str | None]] = []

    def exec(self, argv: list[str], stdin: str | None = None) -> str:
        self.calls.append((argv, stdin))
        return subprocess.run(argv, env=self.env, check=True, text=True, capture_output=True,
                              input=stdin).stdout

    def run(self, repo: Path, *args: str, stdin: str | None = None) -> str:
        from hivekit.git import Repo

        # hivekit's argv (explicit --git-dir/--work-tree and its -c overrides): the same work
        return self.exec(Repo(repo)._argv(*args), stdin)

    def deploy(self) -> None:
        """request (read the proposed repo's config with git's parser, resolve the commit, fetch
        it, tag the proposal) + approve (two tags in one transaction, move main, sync the tree,
        tag deployed)."""
        self.n += 1
        n, a = self.n, self.applied
        self.exec(["git", "config", "--file", str(self.proposed / ".git" / "config"),
                   "--no-includes", "--name-only", "--list"])
        sha = self.run(self.proposed, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").strip()
        self.run(a, "fetch", "--quiet", "--no-tags", "--no-recurse-submodules",
                 str(self.proposed / ".git"), sha)
        self.run(a, "tag", f"proposal/{n}", sha)
        self.run(a, "update-ref", "--stdin", stdin=(
            f"start\ncreate refs/tags/approved/{n} {sha}\ncreate refs/tags/building/{n} {sha}\n"
            "prepare\ncommit\n"))
        self.run(a, "update-ref", "refs/heads/main", sha)
        self.run(a, "read-tree", "--reset", "-u", "refs/heads/main")
        self.run(a, "tag", f"deployed/{n}", sha)


def shapes(calls: list[tuple[list[str], str | None]], repos: dict[str, str]) -> list[str]:
    """Each command with its repos, shas and ids replaced by placeholders, for comparing."""
    out = []
    for argv, stdin in calls:
        text = " ".join(argv) + " <<" + (stdin or "")
        for path, name in repos.items():
            text = text.replace(path, name)
        text = re.sub(r"\b[0-9a-f]{40}\b", "<sha>", text)
        out.append(re.sub(r"/\d+\b", "/<id>", text))
    return out


def run(quick: bool = False) -> Result:
    from hivekit import actions
    from hivekit import git as hgit
    from hivekit.deploy import seed

    rounds = 5 if quick else 40
    result = Result("deploy overhead (fake backend, in process)")
    hive = local_hive(short_tmp() / "deploy")
    hive.store.add_agent("coder")
    spec = hive.agent("coder")
    seed(hive, spec)
    hive.hook.spawn(hive=hive, agent=spec)
    recorded: list[tuple[list[str], str | None]] = []
    original = hgit.run

    def recording(argv: list[str], **kwargs: Any) -> str:
        recorded.append((list(argv), kwargs.get("stdin")))
        return original(argv, **kwargs)

    hgit.run = recording
    floor = Floor(short_tmp() / "floor")
    step = {"i": 0}

    def hivekit_deploy() -> None:
        step["i"] += 1
        spec.paths.config.joinpath("agent.conf").write_text(f"v = {step['i']}\n")
        git(spec.paths.config, "commit", "-qam", f"v{step['i']}")  # the manager's commit
        recorded.clear()
        a = actions.request_apply(hive, "coder", "HEAD")
        done = actions.approve(hive, a.id)
        assert done.status.value == "approved", done.note

    fstep = {"i": 0}

    def floor_deploy() -> None:
        fstep["i"] += 1
        (floor.proposed / "agent.conf").write_text(f"v = {fstep['i']}\n")
        git(floor.proposed, "commit", "-qam", f"v{fstep['i']}")
        floor.calls.clear()
        floor.deploy()

    # The commits above are timed on both sides alike (one `git commit` each).
    try:
        times = interleaved({"hivekit": hivekit_deploy, "floor": floor_deploy}, rounds)
    finally:
        hgit.run = original
        hive.stopping.set()
        hive.hook.shutdown(hive=hive)
    hive_shapes = shapes(recorded, {str(spec.paths.config): "<proposed>",
                                    str(spec.paths.applied): "<applied>"})
    floor_shapes = shapes(floor.calls, {str(floor.proposed): "<proposed>",
                                        str(floor.applied): "<applied>"})
    t_hive, t_floor = statistics.median(times["hivekit"]), statistics.median(times["floor"])
    result.add("request + approve -> deployed/<id>", t_hive, t_floor, target=1.5)
    result.add("git subprocesses per deploy (hivekit)", len(recorded), unit="calls")
    result.add("git subprocesses per deploy (floor)", len(floor.calls), unit="calls")
    result.add("git commands hivekit ran that the floor does not", sum(
        a != b for a, b in zip(hive_shapes, floor_shapes, strict=False))
        + abs(len(hive_shapes) - len(floor_shapes)), unit="calls", target=0)
    result.notes.append(f"{rounds} interleaved rounds, medians; per-round ratios "
                        f"{ratio_range(times['hivekit'], times['floor'])}; both sides include "
                        "one `git commit` in the proposed repo per round")
    return result
