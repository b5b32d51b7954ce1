"""The forge plugin against a faithful stand-in for ``forgejo admin`` (tests/forge/forgejo) and
for the ``nixos-container status`` probe (tests/forge/nixos-container), through the real hive."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from hivekit.testing import HiveProcess

HERE = Path(__file__).parent / "forge"
FORGEJO = HERE / "forgejo"
PROBE = HERE / "nixos-container"
SWEEP_DONE = "forge: startup sweep done"


def config(extra: str = "") -> str:
    return ('[hive]\nbackend = "fake"\nenable = ["forge"]\n\n'
            f'[forge]\ncommand = "{FORGEJO} admin"\n'
            f'probe = "{PROBE} status hive-forge"\n' + extra)


def db(forge: Path) -> dict:
    return json.loads((forge / "db.json").read_text())


def calls(forge: Path, verb: str) -> list[list[str]]:
    path = forge / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [c for c in map(json.loads, lines) if c[2:3] == [verb]]


def token_file(hive: HiveProcess, agent: str) -> Path:
    return hive.state_dir / "agents" / agent / "state" / "forge-token"


def wait_sweeps(hive: HiveProcess, count: int) -> None:
    hive.wait_for(lambda: hive.log().count(SWEEP_DONE) >= count, what=f"{count} forge sweeps")


def wait_manager(hive: HiveProcess) -> None:
    hive.wait_for(lambda: any(a["name"] == "manager" and a["status"] == "running"
                              for a in hive.get("/api/state")["agents"]),
                  what="the manager to come up")


@pytest.fixture
def forge(short_tmp: Path) -> Path:
    path = short_tmp / "forge"
    path.mkdir()
    return path


def test_one_user_and_one_token_per_agent_after_two_startups(make_hive, forge: Path) -> None:
    hive = make_hive(config(), env={"FAKE_FORGE_DIR": str(forge)})
    wait_manager(hive)
    wait_sweeps(hive, 1)
    hive.spawn("coder")
    assert token_file(hive, "coder").is_file()  # provisioned before the spawn was approved
    hive.restart()
    wait_manager(hive)
    wait_sweeps(hive, 2)

    users = db(forge)["users"]
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
    assert len(calls(forge, "generate-access-token")) == 2
    assert len(calls(forge, "create")) >= 4
    assert "WARNING" not in hive.log()


def test_a_failing_forge_leaves_the_spawn_approved_with_a_warning_and_the_next_start_retries(
        make_hive, forge: Path) -> None:
    hive = make_hive(config(), env={"FAKE_FORGE_DIR": str(forge)})
    wait_manager(hive)
    wait_sweeps(hive, 1)
    (forge / "down").touch()
    approval = hive.spawn("coder")
    assert approval["status"] == "approved"
    assert "WARNING hivekit.forge: [coder] forge: could not provision 'coder'" in hive.log()
    assert "connection refused" in hive.log()
    assert not token_file(hive, "coder").exists()
    assert "coder" not in db(forge)["users"]

    (forge / "down").unlink()
    hive.restart()
    wait_sweeps(hive, 2)
    assert len(db(forge)["users"]["coder"]["tokens"]) == 1
    assert token_file(hive, "coder").read_text() == \
        next(iter(db(forge)["users"]["coder"]["tokens"].values()))["token"]


def test_no_forge_container_logs_a_line_and_does_nothing(make_hive, short_tmp: Path) -> None:
    forge = short_tmp / "no-forge"  # the probe says the container does not exist
    hive = make_hive(config(), env={"FAKE_FORGE_DIR": str(forge)})
    wait_manager(hive)
    hive.spawn("coder")
    hive.wait_for(lambda: "no forge container running (probe:" in hive.log(),
                  what="the sweep's line")
    assert hive.log().count("no forge container running (probe:") == 1
    assert "[coder] forge: no forge container running; not provisioning" in hive.log()
    assert not forge.exists()  # forgejo was never called
    assert not token_file(hive, "coder").exists()
    assert "WARNING" not in hive.log()


def test_destroy_purge_deletes_the_user_and_a_plain_destroy_keeps_it(make_hive,
                                                                     forge: Path) -> None:
    hive = make_hive(config(), env={"FAKE_FORGE_DIR": str(forge)})
    wait_manager(hive)
    hive.spawn("coder")
    hive.spawn("tester")
    hive.post("/api/agents/coder/destroy", {"purge": False})
    hive.post("/api/agents/tester/destroy", {"purge": True})
    assert sorted(db(forge)["users"]) == ["coder", "manager"]
    hive.post("/api/agents/coder/destroy", {"purge": True})  # purging the tombstone
    assert sorted(db(forge)["users"]) == ["manager"]


def test_purge_user_false_keeps_the_user(make_hive, forge: Path) -> None:
    hive = make_hive(config("purge_user = false\n"), env={"FAKE_FORGE_DIR": str(forge)})
    wait_manager(hive)
    hive.spawn("coder")
    hive.post("/api/agents/coder/destroy", {"purge": True})
    assert "coder" in db(forge)["users"]
    assert calls(forge, "delete") == []


def test_bad_forge_config_is_refused_naming_the_key(short_tmp: Path) -> None:
    hive = HiveProcess(short_tmp / "h", config('scopes = "write:everything"\n'))
    out = hive.cli("config", "check")
    assert out.returncode == 1
    assert "[forge]" in out.stderr and "write:everything" in out.stderr


# --- the stand-in says what Forgejo says -----------------------------------------------------


def admin(forge: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(FORGEJO), "admin", "user", *args], capture_output=True, text=True,
                          env={**os.environ, "FAKE_FORGE_DIR": str(forge)})


def test_stand_in_answers_as_forgejo(forge: Path) -> None:
    create = ("create", "--username", "u", "--email", "u@x", "--random-password",
              "--must-change-password=false")
    first = admin(forge, *create)
    assert first.returncode == 0
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
    assert admin(forge, "delete", "--username", "u").returncode == 0
    gone = admin(forge, "delete", "--username", "u")
    assert (gone.returncode, gone.stderr) == (
        1, "Command error: user does not exist [uid: 0, name: u]\n")


def test_with_the_nixos_container_backend(make_hive, short_tmp: Path, forge: Path) -> None:
    """After the production backend's spawn: provisioned, and a failing forge fails nothing."""
    from nixos_standins import NIXOS_CONTAINER, SYSTEMCTL, Host, write_flake

    host = Host(short_tmp / "host")
    flake = write_flake(short_tmp / "flake", short_tmp / "h" / "state" / "applied",
                        ["manager", "coder", "tester"])
    hive = make_hive(
        config().replace('backend = "fake"', 'backend = "nixos_container"')
        + f'\n[nixos_container]\nnixos_container = "{NIXOS_CONTAINER}"\n'
          f'systemctl = "{SYSTEMCTL}"\ncontainers_conf_dir = "{host.conf_dir}"\n'
          f'systemd_run_dir = "{host.run_dir}"\nflake = "{flake}"\n',
        env={"FAKE_FORGE_DIR": str(forge), "NIXOS_STANDIN_ROOT": str(host.root)})
    wait_manager(hive)
    hive.spawn("coder")
    assert host.unit("h-coder")["state"] == "active"
    assert token_file(hive, "coder").read_text() == \
        next(iter(db(forge)["users"]["coder"]["tokens"].values()))["token"]

    (forge / "down").touch()
    assert hive.spawn("tester")["status"] == "approved"
    assert host.unit("h-tester")["state"] == "active"
    assert "WARNING hivekit.forge: [tester] forge: could not provision 'tester'" in hive.log()
