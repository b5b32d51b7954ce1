"""The meta flake at 10, 100 and 300 agents, with real Nix: deploy, spawn and destroy through
hivekit (fake backend, ``meta_flake`` enabled) against what Nix itself must do for each, on a
copy of the same meta flake, interleaved in one run; what the floor locks is as new to Nix's
fetcher cache as what hivekit locks (see :class:`Floor`):

* deploy (request + approve of a commit) vs the **Nix relock** of an agent's input moved to a new
  commit (``nix flake update agent-<n>``, or ``flake lock --update-input`` before Nix 2.19);
* spawn vs **adding one input**: ``flake.nix`` with one more agent (a new repo), ``git add``,
  ``nix flake lock``;
* destroy vs **removing one input**: the same with that agent gone.

Everything is local and offline: the agents' applied repos, and the test suite's stub of the
hivekit flake (``tests/meta_flake/hivekit-stub``, whose ``lib.mkAgent`` returns its arguments).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.common import Result, load_average, local_hive, ratio_range, short_tmp

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "tests" / "meta_flake" / "hivekit-stub" / "flake.nix"
AGENT_FLAKE = (ROOT / "tests" / "meta_flake" / "agent-flake.nix").read_text()
#: Nix single-user and offline: no build users, no registry download.
NIX_CONFIG = "build-users-group =\nflake-registry =\n"
FEATURES = ["--extra-experimental-features", "nix-command flakes"]
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
           "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env=GIT_ENV, check=True, text=True,
                          capture_output=True).stdout


def nix(flake: Path, *args: str) -> None:
    subprocess.run(["nix", *FEATURES, *args], cwd=flake, check=True, capture_output=True,
                   text=True, timeout=600)


def config(stub: Path) -> str:
    return ('[hive]\nbackend = "fake"\nenable = ["meta_flake"]\nport_range = 50000\n'
            'port_base = 10000\n\n'
            f'[meta_flake]\nhivekit_flake = "git+file://{stub}"\n\n'
            f"[fake.files]\n\"flake.nix\" = '''\n{AGENT_FLAKE}'''\n")


def populate(hive: Any, count: int) -> list[str]:
    """``count`` agents as spawns leave them (their repos copied from one seeded agent, so the
    setup takes seconds, not minutes), then one sync locks them all."""
    from hivekit_plugins.meta_flake.meta import meta_for

    from hivekit.deploy import seed

    template = hive.agent("t0")
    seed(hive, template)
    names = [f"a{i}" for i in range(count)]
    for name in names:
        spec = hive.agent(name)
        shutil.copytree(template.paths.root, spec.paths.root)
        shutil.copytree(template.paths.applied, spec.paths.applied)
        hive.store.add_agent(name)
    shutil.rmtree(template.paths.root)
    shutil.rmtree(template.paths.applied)
    meta_for(hive).sync()
    return names


class Floor:
    """A copy of the hive's meta flake, changed by hand the way hivekit changes the real one.

    Every input the floor locks is new to Nix, as hivekit's are (a spawned agent's repo, a
    deployed commit): Nix keeps what it fetched in its cache, so relocking a commit hivekit
    has just fetched, or adding the same repo every round, would time a cache hit. The new
    repo or commit is made before the timed part (:meth:`fresh_agent`, :meth:`fresh_commit`).
    """

    def __init__(self, hive: Any, path: Path) -> None:
        from hivekit_plugins.meta_flake.meta import meta_for

        self.hive = hive
        self.meta = meta_for(hive)
        self.path = path
        shutil.copytree(self.meta.path, path)
        self.base = list(self.meta.agent_names())
        self.relock_args = self.meta.nix.update_args("PLACEHOLDER")
        self.extra = ""

    def fresh_agent(self, name: str) -> None:
        """The agent the next :meth:`add_one` adds: a repo like any spawned agent's (untimed)."""
        from hivekit.deploy import seed

        seed(self.hive, self.hive.agent(name))
        self.extra = name

    def fresh_commit(self, agent: str, n: int) -> None:
        """A new commit on ``agent``'s applied ``main``, as a deploy makes (untimed)."""
        applied = self.hive.agent(agent).paths.applied
        (applied / "agent.conf").write_text(f"floor = {n}\n")
        git(applied, "add", "-A")
        git(applied, "commit", "-qm", f"floor {n}")

    def _render(self, names: list[str]) -> str:
        from hivekit_plugins.meta_flake.meta import render

        return render(self.meta.config.hivekit_flake,
                      [self.meta.identity(n) for n in sorted(names)])

    def add_one(self) -> None:
        (self.path / "flake.nix").write_text(self._render([*self.base, self.extra]))
        git(self.path, "add", "flake.nix")
        nix(self.path, "flake", "lock")

    def remove_one(self) -> None:
        (self.path / "flake.nix").write_text(self._render(self.base))
        git(self.path, "add", "flake.nix")
        nix(self.path, "flake", "lock")

    def relock(self, agent: str) -> None:
        nix(self.path, *[f"agent-{agent}" if a == "PLACEHOLDER" else a
                         for a in self.relock_args])


def repo_size(path: Path) -> int:
    return sum(f.stat().st_size for f in (path / ".git").rglob("*") if f.is_file())


def measure(size: int, rounds: int) -> dict[str, Any]:
    from hivekit_plugins.meta_flake import lockfile
    from hivekit_plugins.meta_flake.meta import meta_for

    from hivekit import actions

    root = short_tmp()
    stub_repo = root / "hivekit-stub"
    stub_repo.mkdir()
    shutil.copy(STUB, stub_repo / "flake.nix")
    git(stub_repo, "init", "-q")
    git(stub_repo, "add", "-A")
    git(stub_repo, "commit", "-qm", "stub")
    hive = local_hive(root / "h", config(stub_repo))
    try:
        names = populate(hive, size)
        floor = Floor(hive, root / "floor")
        meta = meta_for(hive)
        times: dict[str, list[float]] = {k: [] for k in
                                         ("spawn", "add", "destroy", "remove", "deploy", "relock")}
        moved = 0
        growth = []

        def timed(key: str, fn: Any) -> Any:
            import time

            t = time.perf_counter()
            out = fn()
            times[key].append(time.perf_counter() - t)
            return out

        def spawn(name: str) -> None:
            import time

            approval = actions.request_spawn(hive, name)
            actions.approve(hive, approval.id)
            # Until the spawn's transient is over too: its approval is resolved just before,
            # and a destroy meanwhile is refused as busy.
            while hive.store.approval(approval.id).status.value == "running" or \
                    name in hive.transients():
                time.sleep(0.002)
            assert hive.store.approval(approval.id).status.value == "approved", \
                hive.store.approval(approval.id).note

        def deploy(name: str, n: int) -> None:
            spec = hive.agent(name)
            (spec.paths.config / "agent.conf").write_text(f"v = {n}\n")
            git(spec.paths.config, "commit", "-qam", f"v{n}")  # the manager's: not timed

            def apply() -> None:
                approval = actions.request_apply(hive, name, "HEAD")
                done = actions.approve(hive, approval.id)
                assert done.status.value == "approved", done.note

            before = lockfile.loads((meta.path / "flake.lock").read_text())
            size_before = repo_size(meta.path)
            timed("deploy", apply)
            growth.append(repo_size(meta.path) - size_before)
            after = lockfile.loads((meta.path / "flake.lock").read_text())
            nonlocal moved
            moved += sum(lockfile.entry(before, k) != lockfile.entry(after, k)
                         for k in lockfile.root_inputs(after) if k != f"agent-{name}")

        # A warm-up round, not timed: the first calls fill caches on both sides.
        spawn("warm")
        actions.destroy(hive, "warm")
        floor.fresh_agent("zwarm")
        floor.add_one()
        floor.remove_one()
        for r in range(rounds):  # interleaved: hivekit, floor, hivekit, floor...
            timed("spawn", lambda r=r: spawn(f"s{r}"))
            floor.fresh_agent(f"z{r}")
            timed("add", floor.add_one)
            timed("destroy", lambda r=r: actions.destroy(hive, f"s{r}"))
            timed("remove", floor.remove_one)
            deploy(names[r % len(names)], r)
            # An agent hivekit does not deploy here (the last ones), at a commit Nix never saw.
            other = names[-1 - r % len(names)]
            floor.fresh_commit(other, r)
            timed("relock", lambda other=other: floor.relock(other))
        return {"times": times, "moved": moved, "growth": statistics.median(growth)}
    finally:
        hive.stopping.set()
        hive.hook.shutdown(hive=hive)


def run(quick: bool = False) -> Result:
    sizes = (3, 6) if quick else (10, 100, 300)
    rounds = 1 if quick else 5
    result = Result("meta flake (real Nix, fake backend)")
    os.environ["NIX_CONFIG"] = NIX_CONFIG
    cache = short_tmp()
    os.environ["XDG_CACHE_HOME"] = str(cache)  # Nix's fetcher cache, private to this run
    try:
        for size in sizes:
            out = measure(size, rounds)
            t = out["times"]
            med = {k: statistics.median(v) for k, v in t.items()}
            result.add(f"{size} agents: deploy vs the Nix relock", med["deploy"], med["relock"],
                       target=1.3 if size >= 300 else None)
            result.add(f"{size} agents: spawn vs adding one input", med["spawn"], med["add"],
                       target=1.5 if size >= 300 else None)
            result.add(f"{size} agents: destroy vs removing one input", med["destroy"],
                       med["remove"], target=1.5 if size >= 300 else None)
            result.add(f"{size} agents: other lock entries a deploy moved", out["moved"],
                       unit="entries", target=0)
            result.add(f"{size} agents: meta repo growth per deploy", out["growth"] / 1024,
                       unit="KiB")
            result.notes.append(
                f"{size} agents, per-round ratios: deploy {ratio_range(t['deploy'], t['relock'])}"
                f", spawn {ratio_range(t['spawn'], t['add'])}, destroy "
                f"{ratio_range(t['destroy'], t['remove'])}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    result.notes.append(f"{rounds} interleaved round(s) per size, medians; load average at the "
                        f"end {load_average()}")
    return result
