"""The nixos_container backend through a real hive (``hivekit serve``) against the stand-ins."""

from __future__ import annotations

import os
import subprocess

import hivekit_plugins.nixos_container as nc
import pytest
from nixos_standins import NIXOS_CONTAINER, SYSTEMCTL, Host, write_flake

from hivekit import deploy, hookimpl, plugins
from hivekit.client import ApiError
from hivekit.config import read
from hivekit.errors import CommandFailed, OperationFailed, PluginError
from hivekit.git import Repo
from hivekit.hive import Hive

AGENTS = ["manager", "coder", "tester"]


def config(host: Host, flake, extra: str = "") -> str:
    return f"""
[hive]
backend = "nixos_container"

[nixos_container]
{host.backend_table(flake)}cpu_quota = "100%"

[nixos_container.agents.coder]
memory_max = "4G"
{extra}"""


@pytest.fixture
def nixos(short_tmp, make_hive):
    """A hive on the nixos_container backend, its manager up; ``.host`` is the stand-ins' host."""
    host = Host(short_tmp / "host")
    state = short_tmp / "h" / "state"
    flake = write_flake(short_tmp / "flake", state / "applied", AGENTS)
    proc = make_hive(config(host, flake), env={"NIXOS_STANDIN_ROOT": str(host.root)})
    proc.host, proc.flake = host, flake
    proc.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                              for a in proc.get("/api/state")["agents"]),
                  what="the manager's container to run")
    return proc


def agents(proc) -> dict[str, dict]:
    return {a["name"]: a for a in proc.get("/api/state")["agents"]}


def calls(host: Host, *, verb: str | None = None, container: str | None = None) -> list[list]:
    rows = [c["argv"] for c in host.calls("nixos-container")]
    return [a for a in rows if (verb is None or a[0] == verb)
            and (container is None or container in a)]


def test_the_manager_comes_up_in_its_own_container(nixos):
    host, state = nixos.host, nixos.state_dir
    assert host.containers() == ["manager"]  # no h- prefix for the manager
    assert calls(host, verb="create") == [["create", "manager", "--flake",
                                           f"{nixos.flake}#manager", *nc.FLAKES]]
    conf = host.conf("manager")
    assert "PRIVATE_NETWORK=0\n" in conf
    flags = conf.split('EXTRA_NSPAWN_FLAGS="')[1].split('"')[0].split()
    assert flags == [
        f"--bind={state}/run/agents/manager:/run/hive".replace(f"{state}/run", str(
            nixos.runtime_dir)),
        f"--bind={state}/agents/manager/creds:/root/.claude",
        f"--bind={state}/agents/manager/state:/state",
        f"--bind={state}/shared:/shared",
        f"--bind={state}/agents:/agents",
        f"--bind-ro={state}/applied:/applied",
        f"--bind-ro={state}/meta:/meta",
    ]
    assert (state / "meta").is_dir()  # bind sources exist before the start
    # The identity the agent service reads (nix/agent-base.nix's EnvironmentFile), as the
    # container sees its paths: the binds above.
    env = (nixos.runtime_dir / "agents" / "manager" / "identity.env").read_text()
    assert dict(line.split("=", 1) for line in env.splitlines()[1:]) == {
        "HIVE_LABEL": '"manager"', "HIVE_PORT": '"8000"', "HIVE_SOCKET": '"/run/hive/hive.sock"',
        "HIVE_DASHBOARD_PORT": '"7000"', "HIVE_OPERATOR_PRONOUNS": '"she/her"',
        "HIVE_NOTES": '"/state"', "HIVE_CREDS": '"/root/.claude"', "HIVE_SHARED": '"/shared"',
        "HIVE_CONFIG": '"/applied/manager"', "HIVE_AGENTS": '"/agents"',
        "HIVE_APPLIED": '"/applied"'}
    unit = host.unit("manager")
    assert unit["network"] == "host"
    assert unit["limits"] == {"MemoryMax": "2G", "CPUQuota": "100%"}
    assert agents(nixos)["manager"]["port"] == 8000

    # A daemon restart finds the manager's container running: nothing is created or started
    # (startup only lists the containers, to warn about strays).
    before = len(host.calls("nixos-container"))
    nixos.restart()
    assert agents(nixos)["manager"]["status"] == "running"
    assert [c["argv"] for c in host.calls("nixos-container")[before:]] == [["list"]]


def test_spawn_apply_fail_destroy(nixos):
    host, flake = nixos.host, nixos.flake
    work = nixos.state_dir / "nixos-container" / "h-coder"

    # --- spawn → approve → running ------------------------------------------------------
    spawned = nixos.spawn("coder")
    assert spawned["tag"] == "deployed/0"
    assert agents(nixos)["coder"]["status"] == "running"
    seeded = nixos.state_dir / "agents" / "coder" / "config"
    assert "nixosModules.default" in (seeded / "flake.nix").read_text()
    assert "flakeInputs = builtins.removeAttrs inputs" in (seeded / "flake.nix").read_text()
    assert "# environment.systemPackages" in (seeded / "agent.nix").read_text()
    sequence = [c["argv"] for c in host.calls()
                if (c["prog"] == "nixos-container" and "h-coder" in c["argv"])
                or c["argv"] == ["daemon-reload"]]
    assert sequence[-3:] == [["create", "h-coder", "--flake", f"{flake}#coder", *nc.FLAKES],
                             ["daemon-reload"], ["start", "h-coder"]]
    create = next(c for c in host.calls("nixos-container") if c["argv"][0] == "create"
                  and "h-coder" in c["argv"])
    assert create["cwd"] == str(work)
    conf = host.conf("h-coder")
    assert conf.startswith("HOST_PORT=\nAUTO_START=0\nFLAKE=" + str(flake) + "\n")
    assert f"--bind={nixos.state_dir}/agents/coder/state:/agents/coder/state" in conf
    unit = host.unit("h-coder")
    assert unit["network"] == "host"
    assert unit["limits"] == {"MemoryMax": "4G", "CPUQuota": "100%"}  # per-agent override
    dropin = host.run_dir / "container@h-coder.service.d" / "hivekit-limits.conf"
    assert "MemoryMax=4G\nCPUQuota=100%\n" in dropin.read_text()
    assert "changed on disk" not in nixos.log()  # daemon-reload came before the start
    # The commands' output streamed into the hive's log, line by line, as it came.
    assert "[coder] host IP is 10.233." in nixos.log()
    assert f"[coder] $ {NIXOS_CONTAINER} create h-coder --flake {flake}#coder" in nixos.log()
    first_system = unit["system"]

    # --- apply → rebuild: update with the attribute, then stop + start -------------------
    n_calls = len(host.calls("nixos-container"))
    sha = nixos.commit("coder", {"agent.nix": "{ pkgs, ... }: {\n  environment.systemPackages "
                                              "= [ pkgs.jq ];\n}\n"})
    approval = nixos.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    result = nixos.post(f"/api/approvals/{approval['id']}/approve")
    assert result["status"] == "approved", result["note"]
    assert [c["argv"] for c in host.calls("nixos-container")[n_calls:]] == [
        ["update", "h-coder", "--flake", f"{flake}#coder", *nc.FLAKES],
        ["stop", "h-coder"], ["start", "h-coder"]]
    unit = host.unit("h-coder")
    assert unit["state"] == "active" and unit["starts"] == 2
    assert unit["system"] != first_system  # built from the new agent.nix
    assert not (work / ".tmp").exists()
    good_system = unit["system"]

    # --- a failing update: the approval fails with the build's error ---------------------
    bad = nixos.commit("coder", {"agent.nix": '{ ... }: {\n  services.x = throw "missing '
                                              "option services.x\";\n}\n"})
    approval = nixos.post("/api/requests/apply", {"agent": "coder", "commit": bad})
    result = nixos.post(f"/api/approvals/{approval['id']}/approve")
    assert result["status"] == "failed"
    applied = Repo(nixos.state_dir / "applied" / "coder")
    body = applied.tag_message(f"failed/{approval['id']}")
    assert f"{NIXOS_CONTAINER} update h-coder --flake {flake}#coder" in body
    assert "error: missing option services.x" in body
    assert f"failed to build container from flake '{flake}'" in body
    assert result["note"] == body.strip()
    assert applied.rev("refs/heads/main") == sha  # back to the last good deploy
    unit = host.unit("h-coder")
    assert unit["state"] == "active" and unit["system"] == good_system  # still the old build
    assert calls(host, verb="stop", container="h-coder") == [["stop", "h-coder"]]

    # --- operator's stop / start / restart ------------------------------------------------
    nixos.post("/api/agents/coder/stop")
    assert agents(nixos)["coder"]["status"] == "stopped"
    nixos.post("/api/agents/coder/start")
    assert agents(nixos)["coder"]["status"] == "running"

    # --- destroy ----------------------------------------------------------------------------
    nixos.post("/api/agents/coder/destroy", {"purge": False})
    assert host.containers() == ["manager"]
    assert host.unit("h-coder")["state"] == "inactive"
    assert not (host.run_dir / "container@h-coder.service.d").exists()
    assert "coder" not in agents(nixos)
    assert [t["name"] for t in nixos.get("/api/state")["tombstones"]] == ["coder"]

    # A tombstone re-spawns into a fresh container.
    nixos.spawn("coder")
    assert host.containers() == ["h-coder", "manager"]
    assert host.unit("h-coder")["state"] == "active"


def test_a_config_that_fails_to_activate_brings_the_container_back_before_failing(nixos):
    """nixos-container update sets the profile, then the reload's switch-to-configuration
    fails: the backend sets the profile back and restarts the container on the last deployed
    system before the approval is marked failed, so no later start boots the failed one."""
    host = nixos.host
    nixos.spawn("coder")
    good = host.profile("h-coder")
    assert host.unit("h-coder")["system"] == str(good)
    bad = nixos.commit("coder", {"agent.nix": '{ ... }: {\n  systemd.services.broken.'
                                              'serviceConfig.ExecStart = "/run/current-system'
                                              '/sw/bin/false";\n}\n'})
    approval = nixos.post("/api/requests/apply", {"agent": "coder", "commit": bad})
    result = nixos.post(f"/api/approvals/{approval['id']}/approve")
    assert result["status"] == "failed"
    body = Repo(nixos.state_dir / "applied" / "coder").tag_message(f"failed/{approval['id']}")
    assert "failed to reload container" in body
    assert "did not activate in h-coder (a unit failed to start)" in body
    assert f"h-coder was brought back to its previous system {good} and restarted." in body
    assert host.profile("h-coder") == good
    unit = host.unit("h-coder")
    assert (unit["state"], unit["system"], unit["failed_units"]) == ("active", str(good), [])
    sets = [c["argv"] for c in host.calls("nix-env")]
    assert sets == [["-p", str(host.profiles_dir / "h-coder" / "system"), "--set", str(good)]]
    # and a later start (after a host reboot, say) boots the good system too
    nixos.post("/api/agents/coder/restart")
    assert host.unit("h-coder")["system"] == str(good)


def test_a_failed_build_changes_no_profile(nixos):
    host = nixos.host
    nixos.spawn("coder")
    good = host.profile("h-coder")
    bad = nixos.commit("coder", {"agent.nix": '{ ... }: { x = throw "nope"; }\n'})
    approval = nixos.post("/api/requests/apply", {"agent": "coder", "commit": bad})
    result = nixos.post(f"/api/approvals/{approval['id']}/approve")
    assert result["status"] == "failed" and "error: nope" in result["note"]
    assert "brought back" not in result["note"]  # nothing to bring back
    assert host.profile("h-coder") == good and host.calls("nix-env") == []


def test_status_comes_from_one_list_units_per_poll_never_per_snapshot(short_tmp, make_hive):
    import json
    import os
    import time

    host = Host(short_tmp / "host")
    flake = write_flake(short_tmp / "flake", short_tmp / "h" / "state" / "applied", AGENTS)
    text = config(host, flake).replace('cpu_quota = "100%"\n',
                                       'cpu_quota = "100%"\nstatus_interval = 0.2\n')
    proc = make_hive(text, env={"NIXOS_STANDIN_ROOT": str(host.root)})
    proc.wait_for(lambda: agents(proc).get("manager", {}).get("status") == "running",
                  what="the manager's container to run")
    proc.spawn("coder")
    start, before = time.monotonic(), len(host.calls())
    for _ in range(30):
        assert agents(proc)["coder"]["status"] == "running"
    new = host.calls()[before:]
    polls = [c for c in new if c["argv"][:1] == ["list-units"]]
    assert [c for c in new if c not in polls] == []  # no command per snapshot, none per agent
    assert all(c["argv"] == nc.status.list_units_argv(str(SYSTEMCTL))[1:] for c in polls)
    assert len(polls) <= (time.monotonic() - start) / 0.2 + 2  # one call a poll, for all
    # The container dies and its unit fails, as systemd records it: the next poll reports it.
    path = host.root / "systemd.json"
    data = json.loads(path.read_text())
    data["units"]["container@h-coder.service"]["state"] = "failed"
    path.with_suffix(".new").write_text(json.dumps(data))
    os.replace(path.with_suffix(".new"), path)
    row = proc.wait_for(lambda: agents(proc)["coder"]["status"] == "failing"
                        and agents(proc)["coder"], what="the failed unit on the dashboard")
    assert "container@h-coder.service failed" in row["detail"] and "journalctl" in row["detail"]
    assert agents(proc)["manager"]["status"] == "running"
    proc.post("/api/agents/coder/start")
    assert agents(proc)["coder"]["status"] == "running"
    assert agents(proc)["coder"]["detail"] is None


def test_a_failed_spawn_leaves_no_container(nixos):
    host = nixos.host
    # "builder" has no nixosConfiguration in the host flake: nix refuses the attribute.
    approval = nixos.post("/api/requests/spawn", {"name": "builder"})
    nixos.post(f"/api/approvals/{approval['id']}/approve")
    result = nixos.wait_resolved(approval["id"])
    assert result["status"] == "failed"
    assert f"{NIXOS_CONTAINER} create h-builder --flake {nixos.flake}#builder" in result["note"]
    assert 'does not provide attribute' in result["note"]
    assert host.containers() == ["manager"]  # create's leftover conf was destroyed
    assert "builder" not in agents(nixos)

    # Once the flake has it, the same name spawns (nothing stale says "already exists").
    write_flake(nixos.flake, nixos.state_dir / "applied", [*AGENTS, "builder"])
    nixos.spawn("builder")
    assert host.unit("h-builder")["state"] == "active"


def test_a_colliding_port_is_refused_before_any_container_is_made(short_tmp, make_hive):
    host = Host(short_tmp / "host")
    state = short_tmp / "h" / "state"
    flake = write_flake(short_tmp / "flake", state / "applied", ["manager", "a", "foobar"])
    proc = make_hive(config(host, flake) .replace("[hive]\n", "[hive]\nport_range = 3\n"),
                     env={"NIXOS_STANDIN_ROOT": str(host.root)})
    proc.wait_for(lambda: "manager" in agents(proc), what="the manager")
    proc.spawn("a")
    with pytest.raises(ApiError) as err:
        proc.post("/api/requests/spawn", {"name": "foobar"})
    assert str(err.value).startswith(
        "port 8101 is already taken by 'a' — rename one of them and retry; ports come from "
        "the names")
    assert "h-foobar" not in host.containers()
    assert not calls(host, container="h-foobar")


def test_unsafe_state_dir_is_refused_at_start(short_tmp, make_hive):
    host = Host(short_tmp / "host")
    flake = write_flake(short_tmp / "flake", short_tmp / "applied", ["manager"])
    text = config(host, flake).replace("[hive]\n", '[hive]\nstate_dir = "my state"\n')
    proc = make_hive(text, start=False, env={"NIXOS_STANDIN_ROOT": str(host.root)})
    with pytest.raises(RuntimeError) as err:
        proc.start()
    assert "contains whitespace" in str(err.value)
    assert "Traceback" not in proc.log()
    assert host.calls("nixos-container") == []


def test_missing_programs_are_refused_at_start(short_tmp, make_hive):
    host = Host(short_tmp / "host")
    text = config(host, short_tmp / "flake").replace(str(SYSTEMCTL), "/nonexistent/systemctl")
    proc = make_hive(text, start=False, env={"NIXOS_STANDIN_ROOT": str(host.root)})
    with pytest.raises(RuntimeError) as err:
        proc.start()
    assert "program '/nonexistent/systemctl' was not found" in str(err.value)
    assert "[nixos_container] systemctl" in str(err.value)


# --- in-process: the flake reference, and verbs on a missing container -------------------------


class MetaAnswer:
    """Stands for the meta_flake plugin: answers agent_flake_ref for one agent."""

    __name__ = "meta-answer"

    @hookimpl
    def agent_flake_ref(self, hive, agent):
        return "/var/lib/hivekit/meta" if agent.name == "coder" else None


@pytest.fixture
def local(short_tmp, monkeypatch):
    """An in-process Hive on the nixos_container backend (no daemon), and its host."""
    host = Host(short_tmp / "host")
    monkeypatch.setenv("NIXOS_STANDIN_ROOT", str(host.root))
    path = short_tmp / "hivekit.toml"
    path.write_text(config(host, "/srv/hive-flake", '[nixos_container.agents.tester]\n'
                                                    'flake = "git+file:///srv/tester"\n'
                                                    'health_timeout = 7\n')
                    .replace("[hive]\n", '[hive]\nstate_dir = "state"\n'))
    (short_tmp / "state").mkdir()
    cfg = read(path)
    hive = Hive(cfg, plugins.load(cfg, extra={"meta-answer": MetaAnswer()}))
    hive.ensure_dirs()
    hive.host = host
    yield hive
    hive.stopping.set()  # ends the status watcher a startup may have begun
    hive.store.close()


def test_flake_ref_asks_the_hook_first_then_the_agent_then_the_hive(local):
    assert nc.flake_ref(local, local.agent("coder")) == "/var/lib/hivekit/meta"
    assert nc.flake_ref(local, local.agent("tester")) == "git+file:///srv/tester"
    assert nc.flake_ref(local, local.agent("other")) == "/srv/hive-flake"


def test_no_flake_at_all_is_a_clear_error(short_tmp):
    path = short_tmp / "hivekit.toml"
    path.write_text('[hive]\nbackend = "nixos_container"\nstate_dir = "state"\n')
    (short_tmp / "state").mkdir()
    cfg = read(path)
    hive = Hive(cfg, plugins.load(cfg))
    with pytest.raises(OperationFailed) as err:
        nc.flake_ref(hive, hive.agent("coder"))
    assert "enable the meta_flake plugin" in str(err.value)
    assert "[nixos_container.agents.coder] flake" in str(err.value)
    hive.store.close()


def test_verbs_on_a_missing_container(local):
    agent = local.agent("ghost")
    local.hook.destroy(hive=local, agent=agent, purge=False)  # nothing there: fine
    local.hook.stop(hive=local, agent=agent)  # stopped is what was asked
    assert local.hook.is_running(hive=local, agent=agent) is False
    with pytest.raises(OperationFailed) as err:
        local.hook.rebuild(hive=local, agent=agent, deploy=None)
    assert "container h-ghost does not exist" in str(err.value)
    with pytest.raises(CommandFailed) as failed:
        local.hook.start(hive=local, agent=agent)
    assert "container ‘h-ghost’ does not exist" in str(failed.value)  # noqa: RUF001
    assert f"{NIXOS_CONTAINER} start h-ghost" in str(failed.value)


def test_initial_files_name_the_agent(local):
    files = nc.initial_config_files(local, local.agent("coder"))
    assert set(files) == {"agent.nix", "flake.nix"}
    assert files["agent.nix"].startswith("# coder's own NixOS module")
    assert 'description = "hivekit agent coder";' in files["flake.nix"]
    assert "@name@" not in files["agent.nix"] + files["flake.nix"]


def test_startup_warns_about_stray_containers(local, caplog):
    local.host.conf_dir.mkdir(parents=True)
    (local.host.conf_dir / "h-old.conf").write_text("PRIVATE_NETWORK=1\n")
    (local.host.conf_dir / "webserver.conf").write_text("PRIVATE_NETWORK=1\n")  # not hivekit's
    local.store.add_agent("coder")
    with caplog.at_level("WARNING"):
        nc.startup(local)
    text = caplog.text
    assert "container h-old exists but hivekit has no such agent" in text
    assert "webserver" not in text
    assert "agent container h-coder is missing" in text
    assert nc.list_containers(local) == ["h-old"]


def test_a_manager_name_nixos_container_cannot_take_is_refused(local):
    local.manager = "h-boss"
    with pytest.raises(PluginError) as err:
        nc.startup(local)
    assert "'h-*' is reserved for agents" in str(err.value)


def test_a_wrong_conf_dir_fails_the_spawn_clearly_and_cleans_up(short_tmp, monkeypatch):
    host = Host(short_tmp / "host")
    monkeypatch.setenv("NIXOS_STANDIN_ROOT", str(host.root))
    flake = write_flake(short_tmp / "flake", short_tmp / "state" / "applied", ["tester"])
    path = short_tmp / "hivekit.toml"
    path.write_text(config(host, flake).replace(str(host.conf_dir), str(short_tmp / "elsewhere"))
                    .replace("[hive]\n", '[hive]\nstate_dir = "state"\n'))
    (short_tmp / "state").mkdir()
    cfg = read(path)
    hive = Hive(cfg, plugins.load(cfg))
    hive.ensure_dirs()
    agent = hive.agent("tester")
    deploy.seed(hive, agent)
    with pytest.raises(OperationFailed) as err:
        hive.hook.spawn(hive=hive, agent=agent)
    assert (f"container h-tester has no conf at {short_tmp}/elsewhere/h-tester.conf: set "
            "[nixos_container] containers_conf_dir") in str(err.value)
    assert host.containers() == []  # what create made was destroyed again
    hive.store.close()


def test_exec_runs_in_the_container_with_the_agents_keys(local):
    agent = local.agent("coder")
    conf = nc.conf_path(local, "h-coder")
    with pytest.raises(OperationFailed, match="container h-coder does not exist"):
        local.hook.agent_exec(hive=local, agent=agent, argv=["claude", "login"], tty=True)
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("PRIVATE_NETWORK=0\n")
    plan = local.hook.agent_exec(hive=local, agent=agent, argv=["claude", "login"], tty=True)
    assert plan.argv[:5] == [str(NIXOS_CONTAINER), "run", "h-coder", "--", "sh"]
    assert plan.argv[-3:] == ["/root/.claude", "claude", "login"]
    # What runs in the container: each key of the creds dir exported, then the command.
    import subprocess

    creds = local.agent("coder").paths.creds
    (creds / "env").mkdir(parents=True)
    (creds / "env" / "ANTHROPIC_API_KEY").write_text("sk-test")
    inner = plan.argv[plan.argv.index("--") + 1:]
    inner[inner.index("/root/.claude")] = str(creds)
    out = subprocess.run([*inner[:-2], "sh", "-c", 'echo "$ANTHROPIC_API_KEY"'],
                         capture_output=True, text=True, check=True).stdout
    assert out == "sk-test\n"
    assert "sk-test" not in " ".join(plan.argv) + repr(plan.env)


def test_logs_read_the_containers_journal(local):
    agent = local.agent("coder")
    with pytest.raises(CommandFailed, match="Failed to open system bus"):
        list(local.hook.agent_logs(hive=local, agent=agent, lines=5, follow=False))
    journal = local.host.root / "journal" / "h-coder" / nc.AGENT_UNIT
    journal.parent.mkdir(parents=True)
    journal.write_text("".join(f"line {i}\n" for i in range(10)))
    assert list(local.hook.agent_logs(hive=local, agent=agent, lines=3, follow=False)) == [
        "line 7", "line 8", "line 9"]
    follower = local.hook.agent_logs(hive=local, agent=agent, lines=1, follow=True)
    try:
        assert next(line for line in follower if line is not None) == "line 9"
        with journal.open("a") as f:
            f.write("line 10\n")
        assert next(line for line in follower if line is not None) == "line 10"
    finally:
        follower.close()  # kills journalctl -f


# --- paths as the manager sees them ------------------------------------------------------------


def binds_of(conf: str) -> list[tuple[str, str, str]]:
    """The ``(bwrap option, source, target)`` of every bind the conf gives systemd-nspawn."""
    flags = conf.split('EXTRA_NSPAWN_FLAGS="')[1].split('"')[0].split()
    out = []
    for flag in flags:
        option, _, spec = flag.partition("=")
        source, _, target = spec.partition(":")
        out.append(({"--bind": "--bind", "--bind-ro": "--ro-bind"}[option], source, target))
    return out


def in_container(binds: list[tuple[str, str, str]], *argv: str) -> subprocess.CompletedProcess:
    """``argv`` in a bubblewrap sandbox whose hive directories are exactly ``binds`` (the
    container's own system: the host's /usr and friends, read-only; nothing else of the host's,
    so a host path of the hive does not resolve)."""
    system = [a for d in ("usr", "bin", "lib", "lib64", "lib32", "sbin", "etc")
              if os.path.lexists(f"/{d}")
              for a in (["--symlink", os.readlink(f"/{d}"), f"/{d}"] if os.path.islink(f"/{d}")
                        else ["--ro-bind", f"/{d}", f"/{d}"])]
    hive = [a for option, source, target in binds for a in (option, source, target)]
    return subprocess.run(["bwrap", *system, "--dev", "/dev", "--proc", "/proc", "--tmpfs",
                           "/tmp", *hive, "--setenv", "HOME", "/tmp", "--die-with-parent",
                           "--", *argv], capture_output=True, text=True, timeout=60)


def remote_of(proc, agent: str) -> str:
    return Repo(proc.state_dir / "agents" / agent / "config")("config", "--get",
                                                              "remote.applied.url").strip()


def test_the_managers_applied_remote_resolves_in_its_container_and_is_repointed(nixos):
    nixos.spawn("coder")
    assert remote_of(nixos, "coder") == "/applied/coder/.git"  # the reference's path
    binds = binds_of(nixos.host.conf("manager"))
    assert ("--ro-bind", str(nixos.state_dir / "applied"), "/applied") in binds
    deployed = Repo(nixos.state_dir / "applied" / "coder").rev("refs/heads/main")
    fetched = in_container(binds, "git", "-C", "/agents/coder/config", "fetch", "applied")
    assert fetched.returncode == 0, fetched.stderr
    log = in_container(binds, "git", "-C", "/agents/coder/config", "log", "applied/main",
                       "--format=%H", "-1")
    assert (log.returncode, log.stdout.strip()) == (0, deployed), log.stderr
    tags = in_container(binds, "git", "-C", "/agents/coder/config", "tag", "--list",
                        "deployed/*")
    assert tags.stdout.split() == ["deployed/0"]  # followed along with main
    # The applied repos are read-only in there: the remote can only be fetched from.
    pushed = in_container(binds, "git", "-C", "/agents/coder/config", "push", "applied",
                          "HEAD:refs/heads/other")
    assert pushed.returncode != 0
    # The host path the remote used to hold does not resolve for the manager.
    host_path = in_container(binds, "git", "-C", "/agents/coder/config", "fetch",
                             str(nixos.state_dir / "applied" / "coder" / ".git"))
    assert host_path.returncode != 0

    # The manager may change the remote; the next start points it back.
    repo = Repo(nixos.state_dir / "agents" / "coder" / "config")
    repo("remote", "set-url", "applied", "/somewhere/else")
    nixos.restart()
    nixos.wait_for(lambda: remote_of(nixos, "coder") == "/applied/coder/.git",
                   what="the drifted remote to be re-pointed")
    assert "re-pointed the applied remote of 1 proposed repo(s)" in nixos.log()


def test_the_mount_table_is_the_containers_binds(local):
    hive = local
    manager = hive.agent("manager")
    table = hive.hook.agent_mounts(hive=hive, agent=manager)
    assert [(m.inside, m.read_only) for m in table] == [
        ("/run/hive", False), ("/root/.claude", False), ("/state", False), ("/shared", False),
        ("/agents", False), ("/applied", True), ("/meta", True)]
    assert hive.inside(manager, hive.paths.applied_root / "coder" / ".git") == \
        "/applied/coder/.git"
    assert hive.inside(manager, manager.paths.state) == "/state"  # the closest bind wins
    assert hive.inside(manager, hive.paths.agents_root / "coder" / "state") == \
        "/agents/coder/state"
    coder = hive.agent("coder")
    assert hive.inside(coder, coder.paths.state) == "/agents/coder/state"
    assert hive.inside(coder, hive.paths.applied_root / "coder") is None  # not shown to it


def test_the_wake_up_names_the_notes_where_the_container_binds_them(nixos):
    """After an apply and after an operator restart, the agent's inbox has hive-c0re's wake-up,
    its notes path the one the backend bound into the container (read from the conf)."""
    nixos.spawn("coder")
    notes_dir = str(nixos.state_dir / "agents" / "coder" / "state")
    notes = next(t for _o, s, t in binds_of(nixos.host.conf("h-coder")) if s == notes_dir)
    assert notes != notes_dir  # the container's view, not the host's
    sha = nixos.commit("coder", {"notes.md": "x\n"})
    approval = nixos.post("/api/requests/apply", {"agent": "coder", "commit": sha})
    assert nixos.post(f"/api/approvals/{approval['id']}/approve")["status"] == "approved"
    nixos.post("/api/agents/coder/restart")
    told = [m["body"] for m in nixos.get("/api/agents/coder/inbox") if m["sender"] == "system"]
    tail = ("\n\nYou were just (re)started by the operator. If you were mid-task, check "
            f"`{notes}/` for your notes and pick up where you left off. claude's `--continue` "
            "session is intact, so prior context is still in your window.")
    assert told == [f"config update applied: approval #{approval['id']} deployed {sha[:12]} "
                    f"(deployed/{approval['id']})" + tail, "restarted by the operator" + tail]


# --- the deploy's verify step ------------------------------------------------------------------

#: An agent module whose service runs `false`: it starts, exits 1, and systemd restarts it.
CRASHING = ('{ pkgs, ... }: {\n  hivekit.agent.command = [ "${pkgs.coreutils}/bin/false" ];\n'
            "}\n")


def test_an_agent_service_that_exits_on_its_new_config_is_rolled_back(nixos):
    """The new config builds and activates (a crash-looping service's start job succeeds), but
    the agent's service inside exits at once: the verify step sees it from the container's own
    systemd, the deploy fails with the service's journal, and the container is rebuilt from the
    previous main and runs it again."""
    host = nixos.host
    nixos.spawn("coder")
    good = host.profile("h-coder")
    applied = Repo(nixos.state_dir / "applied" / "coder")
    good_sha = applied.rev("refs/heads/main")
    before = len(host.calls("systemctl"))
    bad = nixos.commit("coder", {"agent.nix": CRASHING})
    approval = nixos.post("/api/requests/apply", {"agent": "coder", "commit": bad})
    result = nixos.post(f"/api/approvals/{approval['id']}/approve")
    assert result["status"] == "failed"
    body = applied.tag_message(f"failed/{approval['id']}")
    assert body.startswith("deployed, then rolled back: nixos_container: hive-agent.service in "
                           "h-coder is activating (auto-restart) since the build, last exit "
                           "status 1\nits last output:\nhive-agent.service: Main process "
                           "exited, code=exited, status=1/FAILURE\n"), body
    assert "rolled back: coder was rebuilt from main" in body
    assert applied.rev("refs/heads/main") == good_sha
    assert host.profile("h-coder") == good  # the previous system, built again
    unit = host.unit("h-coder")
    assert (unit["state"], unit["system"], unit["crash_looping"]) == ("active", str(good), [])
    assert agents(nixos)["coder"]["status"] == "running"
    # Each round asked the container unit on the host, then the agent's unit inside (the
    # backend's own calls: nixos-container runs a bare `systemctl show` of its own).
    shows = [c["argv"] for c in host.calls("systemctl")[before:]
             if "show" in c["argv"] and "LoadState" in c["argv"]]
    assert shows[:2] == [
        nc.health.show_argv("x", "container@h-coder.service", nc.health.HOST_PROPS)[1:],
        nc.health.show_argv("x", "hive-agent.service", nc.health.AGENT_PROPS, "h-coder")[1:]]


def test_a_declared_http_probe_must_answer_within_the_declared_timeout(nixos):
    """``hivekit.agent.health.http`` and ``.timeout`` in the agent's NixOS config: a probe that
    answers 500 fails the deploy after the declared 3 s; answering 2xx, the deploy succeeds."""
    import http.server
    import threading
    import time

    nixos.spawn("coder")
    port = agents(nixos)["coder"]["port"]
    answer = {"code": 500}

    class Probe(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(answer["code"] if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Probe)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        declared = ('{ ... }: {\n  hivekit.agent.health.http = "/healthz";\n'
                    "  hivekit.agent.health.timeout = 3;\n"
                    "  hivekit.agent.health.settle = 0.1;\n}\n")
        approval = nixos.post("/api/requests/apply", {
            "agent": "coder", "commit": nixos.commit("coder", {"agent.nix": declared})})
        began = time.monotonic()
        result = nixos.post(f"/api/approvals/{approval['id']}/approve")
        assert result["status"] == "failed"
        assert result["note"].startswith(
            f"deployed, then rolled back: not healthy within 3s (nixos_container: GET /healthz "
            f"on port {port} answered 500)"), result["note"]
        assert time.monotonic() - began < 30  # 3 s and the rollback, not [hive]'s 60 s
        answer["code"] = 204
        approval = nixos.post("/api/requests/apply", {
            "agent": "coder",
            "commit": nixos.commit("coder", {"agent.nix": declared + "# again\n"})})
        result = nixos.post(f"/api/approvals/{approval['id']}/approve")
        assert result["status"] == "approved", result["note"]
    finally:
        server.shutdown()
        server.server_close()


def built_system(host: Host, container: str, health_json: str | None) -> None:
    """A system profile for ``container`` whose etc/hive/health.json holds ``health_json``."""
    system = host.root / "nix" / "store" / f"test-{container}-system"
    (system / "etc" / "hive").mkdir(parents=True, exist_ok=True)
    if health_json is not None:
        (system / "etc" / "hive" / "health.json").write_text(health_json)
    profile = host.profiles_dir / container / "system"
    profile.parent.mkdir(parents=True, exist_ok=True)
    profile.unlink(missing_ok=True)
    profile.symlink_to(system)


def test_the_health_timeout_is_the_operators_then_the_agents_then_the_hives(local):
    # [nixos_container.agents.tester] health_timeout = 7 (the fixture's config)
    built_system(local.host, "h-tester", '{"timeout": 3}')
    assert nc.health_timeout(local, local.agent("tester")) == 7
    built_system(local.host, "h-coder", '{"timeout": 3, "http": null}')
    assert nc.health_timeout(local, local.agent("coder")) == 3
    built_system(local.host, "h-other", None)
    assert nc.health_timeout(local, local.agent("other")) is None  # [hive] health_timeout
    assert nc.health_timeout(local, local.agent("ghost")) is None  # nothing built


@pytest.mark.parametrize("text, says", [
    ("{not json", "cannot read the agent's health declarations"),
    ('["/healthz"]', "must be an object"),
    ('{"timeout": "soon"}', "timeout"),
    ('{"timeout": -1}', "health.timeout must be a number of seconds above 0"),
    ('{"http": "healthz"}', "health.http must be a path on the agent's port starting with /"),
    ('{"command": []}', "health.command must be a non-empty list"),
    ('{"probe": "/x"}', "probe"),
], ids=["not-json", "a-list", "a-string-timeout", "negative", "relative-path", "no-command",
        "unknown-key"])
def test_health_declarations_the_module_would_not_render_are_refused(local, text, says):
    """The manager writes the agent's config: whatever reaches health.json is checked as
    strictly as a request, and a bad one fails the deploy naming the file (never coerced)."""
    built_system(local.host, "h-coder", text)
    with pytest.raises(OperationFailed) as err:
        nc.health_timeout(local, local.agent("coder"))
    assert says in str(err.value) and "health.json" in str(err.value)
