"""The forge plugin against faithful stand-ins: a stock ``services.forgejo`` container
(tests/forge/forgejo, run by the nixos-container stand-in's ``run`` inside a container whose
files are laid out as nixpkgs' module lays them out), through the real hive."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from nixos_standins import NIXOS_CONTAINER, Host

from hivekit.testing import HiveProcess

FORGEJO = Path(__file__).parent / "forge" / "forgejo"
SWEEP_DONE = "forge: startup sweep done"
STORE = "/nix/store/0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p-forgejo-lts-11.0.3"
#: What nixpkgs' services.forgejo renders (nixos/modules/services/misc/forgejo.nix): the unit
#: (its PATH from `path = [ cfg.package pkgs.git pkgs.gnupg ]` plus systemd's defaults, and its
#: environment), and app.ini in <customDir>/conf.
UNIT = f"""[Unit]
Description=Forgejo (Beyond coding. We forge.)

[Service]
Environment="FORGEJO_CUSTOM=/var/lib/forgejo/custom"
Environment="FORGEJO_WORK_DIR=/var/lib/forgejo"
Environment="HOME=/var/lib/forgejo"
Environment="PATH={STORE}/bin:/nix/store/9z-git-2.47.2/bin:/nix/store/8y-coreutils-9.5/bin"
Environment="USER=forgejo"
ExecStart={STORE}/bin/forgejo web --pid /run/forgejo/forgejo.pid
Group=forgejo
Type=notify
User=forgejo
WorkingDirectory=/var/lib/forgejo
"""
APP_INI = """[DEFAULT]
RUN_MODE=prod
RUN_USER=forgejo
WORK_PATH=/var/lib/forgejo

[database]
DB_TYPE=sqlite3
PATH=/var/lib/forgejo/data/forgejo.db

[repository]
ROOT=/var/lib/forgejo/repositories

[security]
INSTALL_LOCK=true
"""


class Forge:
    """The forge container on the stand-ins' host, and a look into Forgejo's database."""

    def __init__(self, root: Path) -> None:
        self.host = Host(root)
        self.croot = self.host.declare_container(
            "hive-forge", users={"forgejo": "/var/lib/forgejo"},
            files={"/etc/systemd/system/forgejo.service": UNIT,
                   "/var/lib/forgejo/custom/conf/app.ini": APP_INI},
            links={f"{STORE}/bin/forgejo": FORGEJO})
        self.db_path = self.croot / "var/lib/forgejo/data/forgejo.db"

    @property
    def env(self) -> dict[str, str]:
        return {"NIXOS_STANDIN_ROOT": str(self.host.root)}

    def db(self) -> dict:
        return json.loads(self.db_path.read_text())

    def calls(self, verb: str) -> list[list[str]]:
        path = Path(str(self.db_path) + ".calls.jsonl")
        lines = path.read_text().splitlines() if path.exists() else []
        return [c for c in map(json.loads, lines) if c[2:3] == [verb]]

    def down(self, down: bool = True) -> None:
        marker = self.db_path.parent / "down"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch() if down else marker.unlink()

    def give_repo(self, user: str, repo: str) -> None:
        """The agent pushed a repository of its own (ENABLE_PUSH_CREATE_USER)."""
        db = self.db()
        db["users"][user]["repos"].append(repo)
        self.db_path.write_text(json.dumps(db))


def config(extra: str = "") -> str:
    return ('[hive]\nbackend = "fake"\nenable = ["forge"]\n\n'
            f'[forge]\nnixos_container = "{NIXOS_CONTAINER}"\n' + extra)


def token_file(hive: HiveProcess, agent: str) -> Path:
    return hive.state_dir / "agents" / agent / "state" / "forge-token"


def wait_sweeps(hive: HiveProcess, count: int) -> None:
    hive.wait_for(lambda: hive.log().count(SWEEP_DONE) >= count, what=f"{count} forge sweeps")


def wait_manager(hive: HiveProcess) -> None:
    hive.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                              for a in hive.get("/api/state")["agents"]),
                  what="the manager to come up")


@pytest.fixture
def forge(short_tmp: Path) -> Forge:
    return Forge(short_tmp / "host")


def test_one_user_and_one_token_per_agent_after_two_startups(make_hive, forge: Forge) -> None:
    hive = make_hive(config(), env=forge.env)
    wait_manager(hive)
    wait_sweeps(hive, 1)
    hive.spawn("coder")
    assert token_file(hive, "coder").is_file()  # provisioned before the spawn was approved
    hive.restart()
    wait_manager(hive)
    wait_sweeps(hive, 2)

    users = forge.db()["users"]
    assert sorted(users) == ["coder", "manager"]
    for name, user in users.items():
        assert user["email"] == f"{name}@hive.local"
        assert user["must_change_password"] is False
        assert len(user["tokens"]) == 1
        (token_name, token), = user["tokens"].items()
        assert token_name.startswith("hivekit-")
        assert token["scopes"] == ["read:user", "write:repository", "write:issue"]
        path = token_file(hive, name)
        assert path.read_text() == token["token"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # every later attempt found the user there ("already exists" is success) and kept the file
    assert len(forge.calls("generate-access-token")) == 2
    assert len(forge.calls("create")) >= 4
    assert "WARNING" not in hive.log()


def test_a_failing_forge_leaves_the_spawn_approved_with_a_warning_and_the_next_start_retries(
        make_hive, forge: Forge) -> None:
    hive = make_hive(config(), env=forge.env)
    wait_manager(hive)
    wait_sweeps(hive, 1)
    forge.down()
    approval = hive.spawn("coder")
    assert approval["status"] == "approved"
    assert "WARNING hivekit.forge: [coder] forge: could not provision 'coder'" in hive.log()
    assert "connection refused" in hive.log()
    assert not token_file(hive, "coder").exists()
    assert "coder" not in forge.db()["users"]

    forge.down(False)
    hive.restart()
    wait_sweeps(hive, 2)
    assert len(forge.db()["users"]["coder"]["tokens"]) == 1
    assert token_file(hive, "coder").read_text() == \
        next(iter(forge.db()["users"]["coder"]["tokens"].values()))["token"]


def test_no_forge_container_logs_a_line_and_does_nothing(make_hive, short_tmp: Path) -> None:
    host = Host(short_tmp / "host")  # no hive-forge on this host: `status` says "gone"
    hive = make_hive(config(), env={"NIXOS_STANDIN_ROOT": str(host.root)})
    wait_manager(hive)
    hive.spawn("coder")
    hive.wait_for(lambda: "no forge container running (container hive-forge)" in hive.log(),
                  what="the sweep's line")
    assert hive.log().count("no forge container running (container hive-forge)") == 1
    assert "[coder] forge: no forge container running; not provisioning" in hive.log()
    assert {c["argv"][0] for c in host.calls("nixos-container")} == {"status"}  # no run
    assert not token_file(hive, "coder").exists()
    assert "WARNING" not in hive.log()


def test_a_stopped_forge_container_is_not_provisioned(make_hive, forge: Forge) -> None:
    forge.host.nixos_container("stop", "hive-forge")
    hive = make_hive(config(), env=forge.env)
    wait_manager(hive)
    hive.spawn("coder")
    assert "[coder] forge: no forge container running; not provisioning" in hive.log()
    assert not forge.db_path.exists()


def test_destroy_purge_deletes_the_user_and_its_repositories_a_plain_destroy_keeps_it(
        make_hive, forge: Forge) -> None:
    hive = make_hive(config(), env=forge.env)
    wait_manager(hive)
    hive.spawn("coder")
    hive.spawn("tester")
    forge.give_repo("tester", "tester/notes")  # Forgejo refuses to delete an owner without --purge
    forge.give_repo("coder", "coder/tool")
    hive.post("/api/agents/coder/destroy", {"purge": False})
    hive.post("/api/agents/tester/destroy", {"purge": True})
    assert sorted(forge.db()["users"]) == ["coder", "manager"]
    assert "WARNING" not in hive.log()
    hive.post("/api/agents/coder/destroy", {"purge": True})  # purging the tombstone
    assert sorted(forge.db()["users"]) == ["manager"]
    # A new agent of a purged name gets a new user: no repositories, a token of its own.
    hive.spawn("tester")
    assert forge.db()["users"]["tester"]["repos"] == []
    assert forge.calls("delete")[-1][3:] == ["--username", "coder", "--purge"]


def test_purge_user_false_keeps_the_user(make_hive, forge: Forge) -> None:
    hive = make_hive(config("purge_user = false\n"), env=forge.env)
    wait_manager(hive)
    hive.spawn("coder")
    hive.post("/api/agents/coder/destroy", {"purge": True})
    assert "coder" in forge.db()["users"]
    assert forge.calls("delete") == []


def test_bad_forge_config_is_refused_naming_the_key(short_tmp: Path) -> None:
    hive = HiveProcess(short_tmp / "h", config('scopes = "write:everything"\n'))
    out = hive.cli("config", "check")
    assert out.returncode == 1
    assert "[forge]" in out.stderr and "write:everything" in out.stderr


# --- the stand-in says what Forgejo says -----------------------------------------------------


def run(forge: Forge, *argv: str) -> subprocess.CompletedProcess:
    """``nixos-container run hive-forge -- <argv>`` on the forge's host."""
    return forge.host.nixos_container("run", "hive-forge", "--", *argv)


#: How the plugin runs Forgejo: as the unit does (see plugins/forge/forge.py).
AS_THE_UNIT = ("runuser", "-u", "forgejo", "--", "env", f"PATH={STORE}/bin", "forgejo",
               "--work-path", "/var/lib/forgejo", "--config",
               "/var/lib/forgejo/custom/conf/app.ini")


def admin(forge: Forge, *args: str) -> subprocess.CompletedProcess:
    return run(forge, *AS_THE_UNIT, "admin", "user", *args)


def test_a_stock_forgejo_container_finds_no_forgejo_on_the_login_path_nor_its_app_ini(
        forge: Forge) -> None:
    """What the reference's command (and this plugin's first one) met on a real host."""
    old = run(forge, "runuser", "-u", "forgejo", "--", "forgejo", "admin", "user", "list")
    assert (old.returncode, old.stderr) == (
        127, "runuser: failed to execute forgejo: No such file or directory\n")
    as_root = run(forge, f"{STORE}/bin/forgejo", "admin", "user", "list")
    assert as_root.returncode == 1 and "Forgejo is not supposed to be run as root" in \
        as_root.stderr
    no_ini = run(forge, "runuser", "-u", "forgejo", "--", "env", f"PATH={STORE}/bin", "forgejo",
                 "admin", "user", "list")
    assert no_ini.returncode == 1
    assert no_ini.stderr.rstrip().endswith(
        '[F] Unable to load config file for a installed Forgejo instance, you should either '
        'use "--config" to set your config file (app.ini), or run "forgejo web" command to '
        'install Forgejo.')
    # the unit's own environment (FORGEJO_WORK_DIR) finds it too
    env = run(forge, "runuser", "-u", "forgejo", "--", "env", f"PATH={STORE}/bin",
              "FORGEJO_WORK_DIR=/var/lib/forgejo", "forgejo", "admin", "user", "create",
              "--username", "u", "--email", "u@x", "--random-password")
    assert env.returncode == 0, env.stderr


def test_stand_in_answers_as_forgejo(forge: Forge) -> None:
    create = ("create", "--username", "u", "--email", "u@x", "--random-password",
              "--must-change-password=false")
    first = admin(forge, *create)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == "New user 'u' has been successfully created!"
    again = admin(forge, *create)
    assert (again.returncode, again.stderr) == (
        1, "Command error: CreateUser: user already exists [name: u]\n")

    token = ("generate-access-token", "--username", "u", "--token-name", "t", "--scopes",
             "read:user", "--raw")
    raw = admin(forge, *token)
    assert raw.returncode == 0 and len(raw.stdout.strip()) == 40 and raw.stdout.count("\n") == 1
    same = admin(forge, *token)
    assert (same.returncode, same.stderr) == (
        1, "Command error: access token name has been used already\n")
    nobody = admin(forge, "generate-access-token", "--username", "v", "--raw")
    assert nobody.stderr == "Command error: user does not exist [uid: 0, name: v]\n"
    forge.give_repo("u", "u/r")
    owner = admin(forge, "delete", "--username", "u")
    uid = forge.db()["users"]["u"]["id"]
    assert (owner.returncode, owner.stderr) == (
        1, f"Command error: user still has ownership of repositories [uid: {uid}]\n")
    assert admin(forge, "delete", "--username", "u", "--purge").returncode == 0
    gone = admin(forge, "delete", "--username", "u")
    assert (gone.returncode, gone.stderr) == (
        1, "Command error: user does not exist [uid: 0, name: u]\n")


def test_with_the_nixos_container_backend(make_hive, short_tmp: Path, forge: Forge) -> None:
    """After the production backend's spawn: provisioned, and a failing forge fails nothing."""
    from nixos_standins import write_flake

    host = forge.host  # the agents' containers and the forge's on one host
    flake = write_flake(short_tmp / "flake", short_tmp / "h" / "state" / "applied",
                        ["manager", "coder", "tester"])
    hive = make_hive(
        config().replace('backend = "fake"', 'backend = "nixos_container"')
        + f'\n[nixos_container]\n{host.backend_table(flake)}', env=forge.env)
    wait_manager(hive)
    hive.spawn("coder")
    assert host.unit("h-coder")["state"] == "active"
    assert token_file(hive, "coder").read_text() == \
        next(iter(forge.db()["users"]["coder"]["tokens"].values()))["token"]

    forge.down()
    assert hive.spawn("tester")["status"] == "approved"
    assert host.unit("h-tester")["state"] == "active"
    assert "WARNING hivekit.forge: [tester] forge: could not provision 'tester'" in hive.log()
