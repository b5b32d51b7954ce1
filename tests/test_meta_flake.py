"""The meta flake plugin, with real Nix (Debian's nix-bin, single-user as root, offline).

Every flake here is local: the agents' applied repos (seeded with a small flake through the fake
backend's ``files``), and a stub of the hivekit flake whose ``lib.mkAgent`` returns its arguments
as data, so ``nix eval`` checks each agent's identity and pinned config without nixpkgs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from hivekit_plugins.meta_flake import lockfile
from hivekit_plugins.meta_flake.meta import meta_for, render
from hivekit_plugins.meta_flake.nix import Nix, parse_version
from hivekit_plugins.nixos_container import FLAKES

from hivekit import config as cfg
from hivekit import daemon, deploy, plugins
from hivekit.errors import OperationFailed
from hivekit.git import Repo
from hivekit.records import Deploy
from hivekit.testing import HiveProcess, control
from hivekit.testing.fake import calls as fake_calls

HERE = Path(__file__).parent / "meta_flake"
AGENT_FLAKE = (HERE / "agent-flake.nix").read_text()
STAND_IN = HERE / "nix"
FEATURES = ["--extra-experimental-features", "nix-command flakes"]


# --- helpers ---------------------------------------------------------------------------------


def nix_env(root: Path) -> dict[str, str]:
    """Nix single-user and offline: no build users, no registry download, a private cache."""
    return {"NIX_CONFIG": "build-users-group =\nflake-registry =\n",
            "XDG_CACHE_HOME": str(root / "cache")}


@pytest.fixture
def nixenv(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = nix_env(short_tmp)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def git_repo(path: Path, files: dict[str, str], message: str = "init") -> Repo:
    repo = Repo(path)
    repo.init()
    for rel, content in files.items():
        (path / rel).write_text(content)
    repo.commit_all(message)
    return repo


def hivekit_stub(root: Path) -> Repo:
    """The stub hivekit flake as a git repo (so a test can change it and update-hive)."""
    return git_repo(root / "hivekit-stub",
                    {"flake.nix": (HERE / "hivekit-stub" / "flake.nix").read_text()})


def config_toml(stub: Path, extra: str = "") -> str:
    return (
        '[hive]\nbackend = "fake"\nenable = ["meta_flake"]\noperator_pronouns = "they/them"\n'
        "dashboard_port = 7123\n\n"
        f'[meta_flake]\nhivekit_flake = "git+file://{stub}"\n\n'
        f"[fake.files]\n\"flake.nix\" = '''\n{AGENT_FLAKE}'''\n"
        + extra
    )


def nix_eval(flake: Path, attr: str, env: dict[str, str]) -> object:
    out = subprocess.run(["nix", *FEATURES, "eval", "--json", f"{flake}#{attr}"],
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def subjects(meta: Path) -> list[str]:
    return Repo(meta)("log", "--format=%s").splitlines()


def head_lock(meta: Path) -> dict:
    return json.loads(Repo(meta)("show", "HEAD:flake.lock"))


def pinned(lock: dict, agent: str) -> str | None:
    return lockfile.locked(lock, f"agent-{agent}").get("rev")


def clean(meta: Path) -> bool:
    return Repo(meta)("status", "--porcelain") == ""


def deployed_sha(hive: HiveProcess, agent: str) -> str:
    sha = Repo(hive.state_dir / "applied" / agent).rev("refs/heads/main")
    assert sha
    return sha


def wait_manager(hive: HiveProcess) -> None:
    hive.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                              for a in hive.get("/api/state")["agents"]),
                  what="the manager to come up")


def apply(hive: HiveProcess, agent: str, files: dict[str, str]) -> tuple[str, dict]:
    sha = hive.commit(agent, files)
    approval = hive.post("/api/requests/apply", {"agent": agent, "commit": sha})
    return sha, hive.post(f"/api/approvals/{approval['id']}/approve")


# --- through the real hive -------------------------------------------------------------------


def test_spawn_apply_fail_destroy_leave_log_lock_and_flake_as_described(
        make_hive, short_tmp: Path, nixenv: dict[str, str]) -> None:
    stub = hivekit_stub(short_tmp).path
    hive = make_hive(config_toml(stub), env=nixenv)
    wait_manager(hive)
    meta = hive.state_dir / "meta"
    assert subjects(meta) == ["sync: add manager"]

    # spawn: the agent joins the flake before its container is created
    hive.spawn("coder")
    assert subjects(meta)[0] == "sync: add coder"
    flake = (meta / "flake.nix").read_text()
    applied = hive.state_dir.resolve() / "applied" / "coder"
    assert f'"agent-coder".url = "git+file://{applied}?ref=main";' in flake
    assert pinned(head_lock(meta), "coder") == deployed_sha(hive, "coder")
    port = next(a["port"] for a in hive.get("/api/state")["agents"] if a["name"] == "coder")
    configs = nix_eval(meta, "nixosConfigurations", nixenv)
    assert configs == {
        "coder": {
            "name": "coder", "isManager": False, "port": port, "hivekit": "1",
            "env": {"HIVE_LABEL": "coder", "HIVE_PORT": str(port), "HIVE_DASHBOARD_PORT": "7123",
                    "HIVE_OPERATOR_PRONOUNS": "they/them"},
            "git": {"name": "coder", "email": "coder@hive.local"},
            "module": {"agentConf": "# coder's config (fake backend: any content builds)\n"},
        },
        "manager": {
            "name": "manager", "isManager": True, "port": 8000, "hivekit": "1",
            "env": {"HIVE_LABEL": "manager", "HIVE_PORT": "8000", "HIVE_DASHBOARD_PORT": "7123",
                    "HIVE_OPERATOR_PRONOUNS": "they/them"},
            "git": {"name": "manager", "email": "manager@hive.local"},
            "module": {"agentConf": "# manager's config (fake backend: any content builds)\n"},
        },
    }

    # an approved apply: one deploy commit, the lock pins the deployed sha
    sha, result = apply(hive, "coder", {"agent.conf": "x = 1\n"})
    assert result["status"] == "approved", result
    assert subjects(meta)[0] == f"deploy coder deployed/{result['id']} {sha[:12]}"
    assert pinned(head_lock(meta), "coder") == sha
    assert clean(meta)
    assert nix_eval(meta, "nixosConfigurations.coder.module.agentConf", nixenv) == "x = 1\n"

    # a failed apply: no commit, the lock byte-identical
    head, lock_bytes = Repo(meta).rev("HEAD"), (meta / "flake.lock").read_bytes()
    _, result = apply(hive, "coder", {"FAIL": "error: attribute 'frobnicate' missing\n"})
    assert result["status"] == "failed"
    assert "frobnicate" in result["note"]
    assert Repo(meta).rev("HEAD") == head
    assert (meta / "flake.lock").read_bytes() == lock_bytes
    assert clean(meta)

    # a plain rebuild with nothing moved: no commit (idempotent)
    out = hive.cli("rebuild", "coder", "--quiet")
    assert out.returncode == 0, out.stderr
    assert Repo(meta).rev("HEAD") == head

    # destroy: the agent's input and configuration are gone
    hive.post("/api/agents/coder/destroy", {"purge": False})
    assert subjects(meta)[0] == "sync: remove coder"
    assert "agent-coder" not in (meta / "flake.nix").read_text()
    assert "agent-coder" not in lockfile.root_inputs(head_lock(meta))
    assert not any("coder" in key for key in head_lock(meta)["nodes"])
    assert clean(meta)
    assert nix_eval(meta, "nixosConfigurations", nixenv).keys() == {"manager"}

    # the history, through the CLI
    out = hive.cli("meta", "log")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.endswith(f"deploy coder deployed/2 {sha[:12]}") for line in lines), lines
    data = json.loads(hive.cli("meta", "log", "--json").stdout)
    assert [c["subject"] for c in data["commits"]] == subjects(meta)
    deploys = [c for c in data["commits"] if c["kind"] == "deploy"]
    assert deploys == [{**deploys[0], "agent": "coder", "tag": "deployed/2", "sha12": sha[:12]}]
    assert set(data["pins"]) == {"hivekit", "agent-manager"}

    # a restart changes nothing; a tombstone re-spawned joins again at its kept config
    hive.restart()
    wait_manager(hive)
    assert subjects(meta)[0] == "sync: remove coder"
    hive.spawn("coder")
    assert subjects(meta)[0] == "sync: add coder"
    assert pinned(head_lock(meta), "coder") == sha


def move_stub(stub: Repo, version: str) -> str:
    """A new commit of the stub hivekit flake (``lib.version`` becomes ``version``)."""
    flake = stub.path / "flake.nix"
    flake.write_text(re.sub(r'lib.version = "[^"]*"', f'lib.version = "{version}"',
                            flake.read_text()))
    return stub.commit_all(f"hivekit {version}")


def needs_update(hive: HiveProcess) -> dict[str, dict]:
    """Each agent's "needs update" badge."""
    return {a["name"]: b for a in hive.get("/api/state")["agents"] for b in a["badges"]
            if b["label"] == "needs update"}


def woken(hive: HiveProcess, name: str) -> list[str]:
    """The wake-ups in ``name``'s inbox, oldest first."""
    return [m["body"] for m in hive.get(f"/api/agents/{name}/inbox", limit=1000)
            if m["sender"] == "system" and "You were just (re)started" in m["body"]]


def rebuilt(hive: HiveProcess, since: int) -> list[str]:
    return [c["agent"] for c in fake_calls(hive.state_dir)[since:] if c["call"] == "rebuild"]


def test_the_hive_input_moved_marks_the_lagging_agents_and_update_hive_rebuilds_exactly_them(
        make_hive, short_tmp: Path, nixenv: dict[str, str]) -> None:
    stub = hivekit_stub(short_tmp)
    hive = make_hive(config_toml(stub.path), env=nixenv)
    wait_manager(hive)
    hive.spawn("coder")
    hive.spawn("tester")
    meta = hive.state_dir / "meta"
    assert needs_update(hive) == {}

    # The hivekit flake moves; the startup check (auto_update = "check") relocks the meta
    # flake's input, and every agent built before is left behind.
    old = Repo(stub.path).rev("HEAD")
    new = move_stub(stub, "2")
    hive.stop()
    hive.config_path.write_text(hive.config_path.read_text().replace(
        "[meta_flake]\n", '[meta_flake]\nauto_update = "check"\n', 1))
    hive.start()
    wait_manager(hive)
    hive.wait_for(lambda: subjects(meta)[0] == f"update-hive hivekit {new[:12]}",
                  what="the startup check's relock")
    hive.wait_for(lambda: set(needs_update(hive)) == {"manager", "coder", "tester"},
                  what="every agent to need an update")
    badge = needs_update(hive)["coder"]
    assert badge["level"] == "warning"
    assert f"built with hivekit {old[:12]}, the meta flake pins {new[:12]}" in badge["detail"]
    assert "hivekit meta update-hive" in badge["detail"]

    # One of them is rebuilt on its own: it is up to date from then on.
    assert hive.cli("rebuild", "coder", "--quiet").returncode == 0
    assert set(needs_update(hive)) == {"manager", "tester"}

    since = len(fake_calls(hive.state_dir))
    out = hive.cli("meta", "update-hive")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:] == ["manager: rebuilt", "tester: rebuilt",
                                           "up to date: coder"]
    assert sorted(rebuilt(hive, since)) == ["manager", "tester"]
    # Each agent rebuilt was woken, told why; coder heard of its own rebuild only.
    for name in ("manager", "tester"):
        assert woken(hive, name)[-1].startswith(
            f"rebuilt by `hivekit meta update-hive`: the hive's hivekit moved to {new[:12]} "
            f"(you ran {old[:12]})\n\nYou were just (re)started by the operator.")
    assert [w.split("\n")[0] for w in woken(hive, "coder")] == ["rebuilt by the operator"]
    assert subjects(meta)[:2] == [f"update tester hivekit {new[:12]}",
                                  f"update manager hivekit {new[:12]}"]
    assert needs_update(hive) == {}
    assert nix_eval(meta, "nixosConfigurations.tester.hivekit", nixenv) == "2"
    data = json.loads(hive.cli("meta", "log", "--json").stdout)
    assert {"kind": "update", "agent": "tester", "sha12": new[:12]}.items() <= \
        data["commits"][0].items()

    # Nothing left behind: nothing rebuilt, nothing committed.
    head, since = Repo(meta).rev("HEAD"), len(fake_calls(hive.state_dir))
    out = hive.cli("meta", "update-hive", "--json")
    assert json.loads(out.stdout)["agents"] == [] and rebuilt(hive, since) == []
    assert Repo(meta).rev("HEAD") == head

    # A rebuild that fails fails the command, naming the agent, which stays behind until a
    # later update-hive rebuilds it alone.
    newer = move_stub(stub, "3")
    control(hive.state_dir, fail={"coder": "fake: out of disk"})
    out = hive.cli("meta", "update-hive")
    assert out.returncode == 1
    assert "manager: rebuilt" in out.stdout and "coder: FAILED" in out.stdout
    assert "error: coder: fake: out of disk" in out.stderr
    assert set(needs_update(hive)) == {"coder"}
    control(hive.state_dir, fail={})
    since = len(fake_calls(hive.state_dir))
    out = hive.cli("meta", "update-hive")
    assert out.returncode == 0, out.stderr
    assert rebuilt(hive, since) == ["coder"]
    assert subjects(meta)[0] == f"update coder hivekit {newer[:12]}"


ROUND = "meta flake: auto_update round done"


def test_auto_update_rebuilds_the_agents_left_behind_on_its_timer(
        make_hive, short_tmp: Path, nixenv: dict[str, str]) -> None:
    stub = hivekit_stub(short_tmp)
    hive = make_hive(config_toml(stub.path).replace(
        "[meta_flake]\n", '[meta_flake]\nauto_update = "rebuild"\nupdate_interval = 1.0\n', 1),
        env=nixenv)
    wait_manager(hive)
    hive.spawn("coder")
    meta = hive.state_dir / "meta"
    new = move_stub(stub, "2")
    hive.wait_for(lambda: {f"update coder hivekit {new[:12]}",
                           f"update manager hivekit {new[:12]}"} <= set(subjects(meta)),
                  timeout=120, what="auto_update to rebuild both agents")
    assert needs_update(hive) == {}
    assert nix_eval(meta, "nixosConfigurations.coder.hivekit", nixenv) == "2"
    # Rounds with nothing new rebuild and commit nothing.
    head, rounds = Repo(meta).rev("HEAD"), hive.log().count(ROUND)
    hive.wait_for(lambda: hive.log().count(ROUND) >= rounds + 2, what="two more rounds")
    assert Repo(meta).rev("HEAD") == head


@pytest.mark.parametrize("delays", [{"alpha": 2.5, "beta": 0.5}, {"alpha": 0.5, "beta": 2.5}],
                         ids=["beta-aborts-first", "alpha-finalizes-first"])
def test_concurrent_deploys_one_failing_keep_each_others_pins(
        make_hive, short_tmp: Path, nixenv: dict[str, str], delays: dict[str, float]) -> None:
    hive = make_hive(config_toml(hivekit_stub(short_tmp).path), env=nixenv)
    wait_manager(hive)
    hive.spawn("alpha")
    hive.spawn("beta")
    meta = hive.state_dir / "meta"
    beta_before = deployed_sha(hive, "beta")
    head = Repo(meta).rev("HEAD")

    control(hive.state_dir, delay=delays)
    good = hive.commit("alpha", {"agent.conf": "alpha = 2\n"})
    bad = hive.commit("beta", {"FAIL": "error: beta does not build\n"})
    approvals = [hive.post("/api/requests/apply", {"agent": a, "commit": s})
                 for a, s in (("alpha", good), ("beta", bad))]
    results: dict[str, dict] = {}

    def approve(approval: dict) -> None:
        results[approval["agent"]] = hive.post(f"/api/approvals/{approval['id']}/approve")

    threads = [threading.Thread(target=approve, args=(a,)) for a in approvals]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results["alpha"]["status"] == "approved"
    assert results["beta"]["status"] == "failed"

    log = subjects(meta)
    assert log[0] == f"deploy alpha deployed/{approvals[0]['id']} {good[:12]}"
    assert Repo(meta).rev("HEAD~1") == head  # exactly one new commit
    lock = head_lock(meta)
    assert pinned(lock, "alpha") == good
    assert pinned(lock, "beta") == beta_before
    assert clean(meta)  # the working lock is HEAD's: nothing half-applied is left behind
    assert nix_eval(meta, "nixosConfigurations.alpha.module.agentConf", nixenv) == "alpha = 2\n"


@pytest.mark.parametrize("point", ["build", "finalize_deploy"])
def test_a_deploy_cut_short_by_a_crash_is_finished_honestly_in_the_meta_repo(
        make_hive, short_tmp: Path, nixenv: dict[str, str], point: str) -> None:
    """The daemon dies after prepare (recovery aborts) or after meta's finalize committed
    (recovery finalizes again): either way one honest outcome, nothing half-applied."""
    hive = make_hive(config_toml(hivekit_stub(short_tmp).path), env=nixenv)
    wait_manager(hive)
    hive.spawn("coder")
    meta = hive.state_dir / "meta"
    head, lock_bytes = Repo(meta).rev("HEAD"), (meta / "flake.lock").read_bytes()

    control(hive.state_dir, crash={"coder": point})
    sha = hive.commit("coder", {"agent.conf": "after the crash\n"})
    approval = hive.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    with pytest.raises(Exception):  # noqa: B017 - the daemon dies mid-request
        hive.post(f"/api/approvals/{approval['id']}/approve")
    hive.proc.wait(30)
    hive.start()
    result = hive.wait_resolved(approval["id"])

    if point == "build":
        assert result["status"] == "failed"
        assert Repo(meta).rev("HEAD") == head
        assert (meta / "flake.lock").read_bytes() == lock_bytes
    else:
        assert result["status"] == "approved"
        assert subjects(meta)[0] == f"deploy coder deployed/{approval['id']} {sha[:12]}"
        assert Repo(meta).rev("HEAD~1") == head  # finalized twice, committed once
        assert pinned(head_lock(meta), "coder") == sha
    assert clean(meta)


def test_with_the_nixos_container_backend_every_container_is_built_from_the_meta_flake(
        make_hive, short_tmp: Path, nixenv: dict[str, str]) -> None:
    """The production pairing: nixos-container (its stand-in, which evaluates the flake it is
    given) builds ``<meta>#<name>``; the meta repo is locked by real Nix."""
    from nixos_standins import Host

    host = Host(short_tmp / "host")
    stub = hivekit_stub(short_tmp).path
    hive = make_hive(
        '[hive]\nbackend = "nixos_container"\nenable = ["meta_flake"]\n\n'
        f'[meta_flake]\nhivekit_flake = "git+file://{stub}"\n\n'
        f'[nixos_container]\n{host.backend_table()}',
        env={**nixenv, "NIXOS_STANDIN_ROOT": str(host.root)})
    wait_manager(hive)
    meta = (hive.state_dir / "meta").resolve()
    builds = lambda: [c["argv"] for c in host.calls("nixos-container")  # noqa: E731
                      if c["argv"][0] in ("create", "update")]
    assert builds() == [["create", "manager", "--flake", f"{meta}#manager", *FLAKES]]

    hive.spawn("coder")
    assert builds()[-1] == ["create", "h-coder", "--flake", f"{meta}#coder", *FLAKES]
    assert subjects(meta)[:2] == ["sync: add coder", "sync: add manager"]
    # the seeded agent flake's module reaches mkAgent (evaluated by real Nix, offline)
    module = nix_eval(meta, "nixosConfigurations.coder.module", nixenv)
    assert set(module) == {"imports", "_module"}

    sha, result = apply(hive, "coder", {"agent.nix": "{ ... }: { networking.hostName = \"c\"; }\n"})
    assert result["status"] == "approved", result["note"]
    assert builds()[-1] == ["update", "h-coder", "--flake", f"{meta}#coder", *FLAKES]
    assert subjects(meta)[0] == f"deploy coder deployed/{result['id']} {sha[:12]}"
    assert pinned(head_lock(meta), "coder") == sha

    head, lock_bytes = Repo(meta).rev("HEAD"), (meta / "flake.lock").read_bytes()
    _, result = apply(hive, "coder", {"agent.nix": '{ ... }: { x = throw "no such option x"; }\n'})
    assert result["status"] == "failed"
    assert "no such option x" in result["note"]
    assert Repo(meta).rev("HEAD") == head
    assert (meta / "flake.lock").read_bytes() == lock_bytes

    hive.post("/api/agents/coder/destroy", {"purge": True})
    assert subjects(meta)[0] == "sync: remove coder"
    assert nix_eval(meta, "nixosConfigurations", nixenv).keys() == {"manager"}
    assert clean(meta)


# --- the two phases, interleaved by hand (in-process) ---------------------------------------


@pytest.fixture
def local(short_tmp: Path, nixenv: dict[str, str]):
    """An in-process hive with the meta flake, and agents alpha and beta spawned."""
    stub = hivekit_stub(short_tmp)
    path = short_tmp / "hivekit.toml"
    path.write_text(config_toml(stub.path).replace("[hive]\n", '[hive]\nstate_dir = "s"\n', 1))
    config = cfg.read(path)
    config.state_dir.mkdir()
    hive = daemon.build_hive(config, plugins.load(config))
    hive.ensure_dirs()
    for name in ("alpha", "beta"):
        spec = hive.agent(name)
        deploy.seed(hive, spec)
        hive.hook.spawn(hive=hive, agent=spec)
        hive.store.add_agent(name)
    yield hive
    hive.store.close()


def move_main(hive, name: str, files: dict[str, str], approval_id: int) -> Deploy:
    """What the core does before prepare_deploy: commit, fetch, move main and the tree."""
    spec = hive.agent(name)
    proposed, applied = Repo(spec.paths.config), Repo(spec.paths.applied)
    for rel, content in files.items():
        (spec.paths.config / rel).write_text(content)
    sha = proposed.commit_all(f"change {approval_id}")
    prev = applied.rev("refs/heads/main")
    applied.fetch(spec.paths.config, sha)
    applied.update_ref("refs/heads/main", sha)
    applied.sync_worktree()
    return Deploy(approval_id=approval_id, agent=spec, sha=sha, prev_sha=prev or "")


def move_back(hive, d: Deploy) -> None:
    applied = Repo(d.agent.paths.applied)
    applied.update_ref("refs/heads/main", d.prev_sha)
    applied.sync_worktree()


@pytest.mark.parametrize("order", ["abort-then-finalize", "finalize-then-abort"])
def test_interleaved_two_phase_deploys_move_only_their_own_entry(local, order: str) -> None:
    meta = meta_for(local)
    assert subjects(meta.path) == ["sync: add beta", "sync: add alpha"]
    head = Repo(meta.path).rev("HEAD")
    head_bytes = (meta.path / "flake.lock").read_bytes()

    a = move_main(local, "alpha", {"agent.conf": "a2\n"}, 7)
    b = move_main(local, "beta", {"agent.conf": "b2\n"}, 8)
    meta.prepare(a)
    meta.prepare(b)
    working = json.loads((meta.path / "flake.lock").read_text())
    assert (pinned(working, "alpha"), pinned(working, "beta")) == (a.sha, b.sha)
    assert Repo(meta.path).rev("HEAD") == head  # prepared, not committed

    # a sync meanwhile (nothing changed) commits nobody's prepared pin
    assert meta.sync() is False

    if order == "abort-then-finalize":
        move_back(local, b)
        assert meta.abort(b) is True
        working = json.loads((meta.path / "flake.lock").read_text())
        assert pinned(working, "alpha") == a.sha  # alpha's prepared pin survives beta's abort
        assert pinned(working, "beta") == b.prev_sha
        assert meta.finalize(a) is True
    else:
        assert meta.finalize(a) is True
        assert pinned(head_lock(meta.path), "beta") == b.prev_sha  # beta's pin not committed
        move_back(local, b)
        assert meta.abort(b) is True

    assert subjects(meta.path)[0] == f"deploy alpha deployed/7 {a.sha[:12]}"
    assert Repo(meta.path).rev("HEAD~1") == head
    lock = head_lock(meta.path)
    assert (pinned(lock, "alpha"), pinned(lock, "beta")) == (a.sha, b.prev_sha)
    assert clean(meta.path)
    assert head_bytes != (meta.path / "flake.lock").read_bytes()

    # recovery may call them again: nothing more happens
    assert meta.finalize(a) is False
    assert meta.abort(b) is False
    assert Repo(meta.path).rev("HEAD~1") == head


def test_abort_after_a_prepare_that_never_ran_changes_nothing(local) -> None:
    meta = meta_for(local)
    lock_bytes = (meta.path / "flake.lock").read_bytes()
    d = move_main(local, "alpha", {"agent.conf": "a2\n"}, 3)
    move_back(local, d)
    assert meta.abort(d) is False
    assert (meta.path / "flake.lock").read_bytes() == lock_bytes


def test_finalize_after_a_crash_before_prepare_relocks_and_commits(local) -> None:
    """Recovery finalizes a deploy whose ``deployed/<id>`` exists, whatever meta has seen."""
    meta = meta_for(local)
    d = move_main(local, "alpha", {"agent.conf": "a3\n"}, 4)
    assert meta.finalize(d) is True
    assert pinned(head_lock(meta.path), "alpha") == d.sha
    assert subjects(meta.path)[0] == f"deploy alpha deployed/4 {d.sha[:12]}"
    assert clean(meta.path)


def test_sync_is_idempotent_and_a_failed_lock_leaves_the_flake_as_it_was(local) -> None:
    meta = meta_for(local)
    head = Repo(meta.path).rev("HEAD")
    flake, lock = ((meta.path / n).read_bytes() for n in ("flake.nix", "flake.lock"))
    assert meta.sync() is False
    assert Repo(meta.path).rev("HEAD") == head

    # an agent whose repo has no flake: locking fails, and the meta repo is left untouched
    spec = local.agent("gamma")
    deploy.seed(local, spec)
    (spec.paths.applied / "flake.nix").unlink()
    Repo(spec.paths.applied).commit_all("no flake")
    meta.spawning("gamma")
    with pytest.raises(OperationFailed, match=r"meta flake .*: locking the agents. inputs failed"):
        meta.sync()
    meta.spawn_failed("gamma")
    assert Repo(meta.path).rev("HEAD") == head
    assert (meta.path / "flake.nix").read_bytes() == flake
    assert (meta.path / "flake.lock").read_bytes() == lock
    assert clean(meta.path)


def test_a_plain_rebuild_relocks_and_commits_only_when_the_pin_moved(local) -> None:
    meta = meta_for(local)
    head = Repo(meta.path).rev("HEAD")
    local.hook.rebuild(hive=local, agent=local.agent("alpha"), deploy=None)
    assert Repo(meta.path).rev("HEAD") == head
    # main moved without meta hearing of it (the plugin was off, say): the rebuild catches up
    d = move_main(local, "alpha", {"agent.conf": "moved\n"}, 9)
    local.hook.rebuild(hive=local, agent=local.agent("alpha"), deploy=None)
    assert subjects(meta.path)[0] == f"rebuild alpha {d.sha[:12]}"
    assert pinned(head_lock(meta.path), "alpha") == d.sha
    assert pinned(head_lock(meta.path), "beta") == deployed_sha_of(local, "beta")
    assert clean(meta.path)


def deployed_sha_of(hive, name: str) -> str | None:
    return Repo(hive.agent(name).paths.applied).rev("refs/heads/main")


def test_agent_flake_ref_is_the_meta_repo(local) -> None:
    ref = local.hook.agent_flake_ref(hive=local, agent=local.agent("alpha"))
    assert ref == str(local.paths.meta)


# --- nix versions ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "new"), [
    ("nix (Nix) 2.8.0", False), ("nix (Nix) 2.18.1", False), ("nix (Nix) 2.19.0", True),
    ("nix (Nix) 2.19.1", True), ("nix (Nix) 2.24.9", True), ("nix (Nix) 2.3", False),
    ("nix (Lix, like Nix) 2.91.1", True),
])
def test_version_decides_how_one_input_is_relocked(text: str, new: bool) -> None:
    assert parse_version(text).update_takes_inputs is new


@pytest.fixture
def small_meta(short_tmp: Path, nixenv: dict[str, str]) -> tuple[Path, Repo]:
    """A meta flake over one agent repo, locked; the agent then moves (a relock moves it)."""
    from hivekit_plugins.meta_flake.meta import Identity

    stub = hivekit_stub(short_tmp)
    agent = git_repo(short_tmp / "applied-a", {"flake.nix": AGENT_FLAKE, "agent.conf": "1\n"})
    meta = short_tmp / "meta"
    ident = Identity(name="a", port=8100, is_manager=False, applied=agent.path,
                     git_email="a@x",
                     env={"HIVE_LABEL": "a", "HIVE_PORT": "8100"})
    git_repo(meta, {"flake.nix": render(f"git+file://{stub.path}", [ident])})
    Nix().lock(meta)
    (agent.path / "agent.conf").write_text("2\n")
    agent.commit_all("two")
    return meta, agent


@pytest.mark.parametrize(("version", "args"), [
    ("2.24.9", ["flake", "update", "agent-a"]),
    ("2.19.1", ["flake", "update", "agent-a"]),
    ("Lix 2.91.1", ["flake", "update", "agent-a"]),
    ("2.18.1", ["flake", "lock", "--update-input", "agent-a"]),
])
def test_stand_in_nix_gets_the_syntax_of_its_version_and_the_lock_moves(
        small_meta, short_tmp: Path, monkeypatch: pytest.MonkeyPatch, version: str,
        args: list[str]) -> None:
    meta, agent = small_meta
    calls = short_tmp / "nix-calls.jsonl"
    monkeypatch.setenv("FAKE_NIX_VERSION", version)
    monkeypatch.setenv("FAKE_NIX_LOG", str(calls))
    monkeypatch.setenv("REAL_NIX", shutil.which("nix") or "/usr/bin/nix")
    Nix(str(STAND_IN), timeout=60).update_input(meta, "agent-a")
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [r["argv"] for r in recorded] == [["--version"], [*FEATURES, *args]]
    assert recorded[1]["cwd"] == str(meta)  # the flake is "." in every spelling
    lock = json.loads((meta / "flake.lock").read_text())
    assert pinned(lock, "a") == agent.rev("HEAD")


@pytest.mark.parametrize(("version", "args", "error"), [
    ("2.18.1", ["flake", "update", "agent-a"], "cannot find flake 'flake:agent-a'"),
    ("2.19.0", ["flake", "lock", "--update-input", "agent-a"], "unrecognised flag"),
    ("Lix 2.91.1", ["flake", "lock", "--update-input", "agent-a"], "unrecognised flag"),
])
def test_stand_in_nix_refuses_the_other_syntax(small_meta, short_tmp: Path, version: str,
                                               args: list[str], error: str) -> None:
    meta, _ = small_meta
    out = subprocess.run([str(STAND_IN), *FEATURES, *args], cwd=meta, capture_output=True,
                         text=True, env={**os.environ, "FAKE_NIX_VERSION": version,
                                         "FAKE_NIX_LOG": str(short_tmp / "calls")})
    assert out.returncode == 1 and error in out.stderr


def test_real_nix_relocks_one_input_with_its_own_syntax(small_meta) -> None:
    meta, agent = small_meta
    nix = Nix()
    assert nix.version().update_takes_inputs is False  # Debian's 2.8
    nix.update_input(meta, "agent-a")
    assert pinned(json.loads((meta / "flake.lock").read_text()), "a") == agent.rev("HEAD")


def test_a_failed_relock_says_what_ran_and_abort_leaves_the_lock_as_it_was(local) -> None:
    meta = meta_for(local)
    head, lock_bytes = Repo(meta.path).rev("HEAD"), (meta.path / "flake.lock").read_bytes()
    (local.agent("alpha").paths.config / "flake.nix").unlink()
    d = move_main(local, "alpha", {"agent.conf": "no flake\n"}, 5)
    with pytest.raises(OperationFailed) as info:
        meta.prepare(d)
    message = str(info.value)
    assert message.startswith(f"meta flake ({meta.path}): relocking input 'agent-alpha' failed:")
    assert ("`nix --extra-experimental-features nix-command flakes flake lock --update-input "
            "agent-alpha` exited 1:") in message
    assert "flake.nix': No such file or directory" in message  # Nix's own words, at the end
    move_back(local, d)
    meta.abort(d)
    assert Repo(meta.path).rev("HEAD") == head
    assert (meta.path / "flake.lock").read_bytes() == lock_bytes
    assert clean(meta.path)


# --- flake.lock surgery ----------------------------------------------------------------------


def _node(rev: str, inputs: dict | None = None) -> dict:
    node: dict = {"locked": {"rev": rev, "type": "git"}, "original": {"type": "git"}}
    if inputs:
        node["inputs"] = inputs
    return node


def test_replace_input_moves_one_entry_with_its_own_inputs_and_nothing_else() -> None:
    target = {"root": "root", "version": 7, "nodes": {
        "root": {"inputs": {"agent-a": "agent-a", "agent-b": "agent-b", "hivekit": "hivekit"}},
        "agent-a": _node("a1", {"nixpkgs": "nixpkgs"}),
        "nixpkgs": _node("n1"),
        "agent-b": _node("b1", {"nixpkgs": "nixpkgs_2"}),
        "nixpkgs_2": _node("n2"),
        "hivekit": _node("h1", {"nixpkgs": ["agent-b", "nixpkgs"]}),
    }}
    source = {"root": "root", "version": 7, "nodes": {
        "root": {"inputs": {"agent-a": "agent-a", "agent-b": "agent-b"}},
        "agent-a": _node("a2", {"nixpkgs": "nixpkgs_2"}),
        "nixpkgs_2": _node("n9"),
        "agent-b": _node("b9"),
    }}
    out = lockfile.replace_input(target, source, "agent-a")
    assert lockfile.locked(out, "agent-a")["rev"] == "a2"
    assert lockfile.entry(out, "agent-a") == lockfile.entry(source, "agent-a")
    for other in ("agent-b", "hivekit"):
        assert lockfile.entry(out, other) == lockfile.entry(target, other)
    assert "nixpkgs" not in out["nodes"]  # agent-a's old input went with it
    assert target["nodes"]["agent-a"]["locked"]["rev"] == "a1"  # the target is not modified

    back = lockfile.replace_input(out, target, "agent-a")
    assert all(lockfile.entry(back, n) == lockfile.entry(target, n)
               for n in ("agent-a", "agent-b", "hivekit"))

    gone = lockfile.replace_input(target, source, "hivekit")
    assert "hivekit" not in lockfile.root_inputs(gone)
    assert lockfile.entry(gone, "agent-b") == lockfile.entry(target, "agent-b")


def test_replace_inputs_is_replace_input_one_after_the_other_in_one_pass() -> None:
    def lock(rev: str, agents: range) -> dict:
        nodes: dict = {"root": {"inputs": {"hivekit": "hivekit"}},
                       "hivekit": _node(f"h{rev}", {"nixpkgs": "nixpkgs"}),
                       "nixpkgs": _node("n")}
        for i in agents:
            nodes["root"]["inputs"][f"agent-{i}"] = f"agent-{i}"
            # every third agent follows the hivekit input's nixpkgs, every other has its own
            inputs = ({"nixpkgs": ["hivekit", "nixpkgs"]} if i % 3 == 0
                      else {"nixpkgs": f"nixpkgs_{i}"} if i % 3 == 1 else None)
            nodes[f"agent-{i}"] = _node(f"{rev}{i}", inputs)
            if i % 3 == 1:
                nodes[f"nixpkgs_{i}"] = _node(f"n{rev}{i}")
        return {"root": "root", "version": 7, "nodes": nodes}

    head, working = lock("a", range(0, 40)), lock("b", range(5, 45))  # 5 left, 5 joined
    names = {f"agent-{i}" for i in range(0, 45, 2)} | {"hivekit"}
    one_by_one = head
    for name in sorted(names):
        one_by_one = lockfile.replace_input(one_by_one, working, name)
    batch = lockfile.replace_inputs(head, working, names)
    assert lockfile.root_inputs(batch).keys() == lockfile.root_inputs(one_by_one).keys()
    for name in lockfile.root_inputs(batch):
        assert lockfile.entry(batch, name) == lockfile.entry(one_by_one, name)
        assert lockfile.entry(batch, name) == lockfile.entry(
            working if name in names else head, name)
    # Nothing unreachable is left behind, and the inputs are untouched.
    reachable = set().union(*(lockfile._reach(batch, r) for r in
                              lockfile.root_inputs(batch).values() if isinstance(r, str)))
    assert set(batch["nodes"]) == reachable | {"root"}
    assert head == lock("a", range(0, 40)) and working == lock("b", range(5, 45))


def test_dumps_writes_what_nix_writes(small_meta) -> None:
    meta, _ = small_meta
    text = (meta / "flake.lock").read_text()
    assert lockfile.dumps(lockfile.loads(text)) == text


def test_head_files_read_from_loose_objects_are_what_git_show_says(short_tmp: Path) -> None:
    # meta.loose_file answers for HEAD without a subprocess when its objects are loose; when
    # one is packed it says so (the caller then asks git); a file not in the commit is None.
    from hivekit_plugins.meta_flake.meta import _PACKED, loose_file

    files = {"flake.nix": "{ }\n", "flake.lock": '{\n  "nodes": {}\n}\n', "é.txt": "naïve\n"}
    repo = git_repo(short_tmp / "r", files)
    head = repo.rev("HEAD")
    assert head
    for rel, content in files.items():
        assert loose_file(repo.git_dir, head, rel) == content == repo("show", f"HEAD:{rel}")
    assert loose_file(repo.git_dir, head, "absent") is None
    (short_tmp / "r" / "sub").mkdir()
    (short_tmp / "r" / "sub" / "x").write_text("x\n")
    repo.commit_all("a directory")
    assert loose_file(repo.git_dir, repo.rev("HEAD"), "sub") is _PACKED  # git decides
    repo("gc", "--quiet")
    assert loose_file(repo.git_dir, repo.rev("HEAD"), "flake.nix") is _PACKED
