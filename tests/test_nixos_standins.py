"""The stand-ins for nixos-container and systemctl behave as the real programs do.

Each expectation is written from nixpkgs' nixos-container.pl and nixos-containers.nix (see the
stand-ins' comments); the backend's tests rely on them.
"""

from __future__ import annotations

import pytest
from nixos_standins import IN_CONTAINER, NIX_ENV, Host, write_flake


@pytest.fixture
def host(short_tmp):
    h = Host(short_tmp / "host")
    h.flake = write_flake(short_tmp / "flake", short_tmp / "applied", ["coder"])
    h.work = short_tmp / "work"
    h.work.mkdir()
    applied = short_tmp / "applied" / "coder"
    applied.mkdir(parents=True)
    (applied / "flake.nix").write_text("{ outputs = _: { nixosModules.default = ./agent.nix; }; }")
    (applied / "agent.nix").write_text("{ ... }: { }\n")
    h.applied = applied
    # Most tests are about something else: a host whose nix.conf turned flakes on.
    h.nix_conf("experimental-features = nix-command flakes\n")
    return h


FLAKES = ("--option", "extra-experimental-features", "nix-command flakes")
FAILING = ('{ ... }: {\n  systemd.services.broken.serviceConfig.ExecStart = '
           '"/run/current-system/sw/bin/false";\n}\n')


def test_create_writes_the_conf_as_nixos_container_does(host):
    r = host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder", cwd=host.work)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "host IP is 10.233.1.1, container IP is 10.233.1.2\n"
    assert r.stdout == ""
    # FLAKE= holds the flake without its attribute.
    assert host.conf("h-coder") == (
        "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.1.1\nLOCAL_ADDRESS=10.233.1.2\nHOST_BRIDGE=\n"
        f"HOST_PORT=\nAUTO_START=0\nFLAKE={host.flake}\n")
    assert not (host.work / ".tmp").is_symlink()  # the out-link is read and removed
    assert host.nixos_container("list").stdout == "h-coder\n"
    again = host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder",
                                 cwd=host.work)
    assert again.returncode != 0
    assert "container ‘h-coder’ already exists" in again.stderr  # noqa: RUF001
    other = host.nixos_container("create", "h-other", "--flake", f"{host.flake}#coder",
                                 cwd=host.work)
    assert "host IP is 10.233.2.1, container IP is 10.233.2.2" in other.stderr


def test_verbs_on_a_missing_container(host):
    destroy = host.nixos_container("destroy", "h-nope")
    assert (destroy.returncode, destroy.stdout, destroy.stderr) == (0, "", "")
    for verb in ("start", "stop", "update", "restart"):
        r = host.nixos_container(verb, "h-nope")
        assert r.returncode != 0
        assert r.stderr.endswith("container ‘h-nope’ does not exist\n")  # noqa: RUF001
    status = host.nixos_container("status", "h-nope")
    assert status.stdout == "gone\n" and status.returncode != 0
    assert "invalid container name" in host.nixos_container("start", "a b").stderr
    too_long = host.nixos_container("create", "h-abcdefghij", "--flake", f"{host.flake}#x")
    assert "is too long" in too_long.stderr


def test_bare_update_builds_the_container_attribute(host):
    host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder", cwd=host.work)
    bare = host.nixos_container("update", "h-coder", cwd=host.work)
    assert bare.returncode != 0
    assert 'nixosConfigurations."container"' in bare.stderr
    assert f"failed to build container from flake '{host.flake}'" in bare.stderr
    full = host.nixos_container("update", "h-coder", "--flake", f"{host.flake}#coder",
                                cwd=host.work)
    assert full.returncode == 0, full.stderr


def test_a_throw_fails_the_build_with_nix_error_and_the_conf_stays(host):
    (host.applied / "agent.nix").write_text('{ ... }: {\n  x = throw "boom";\n}\n')
    r = host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder", cwd=host.work)
    assert r.returncode != 0
    assert "       error: boom" in r.stderr.splitlines()
    assert r.stderr.rstrip().endswith(f"failed to build container from flake '{host.flake}'")
    # nixos-container.pl dies without clearing its state after a failed flake build.
    assert host.containers() == ["h-coder"]
    assert host.nixos_container("destroy", "h-coder").returncode == 0
    assert host.containers() == []


def test_start_runs_nspawn_with_the_conf_and_the_loaded_dropins(host):
    host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder", cwd=host.work)
    dropin = host.run_dir / "container@h-coder.service.d" / "limits.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nMemoryMax=1G\nCPUQuota=20%\n")
    r = host.nixos_container("start", "h-coder")
    assert r.returncode == 0
    assert "changed on disk. Run 'systemctl daemon-reload'" in r.stderr
    unit = host.unit("h-coder")
    assert unit["state"] == "active" and unit["limits"] == {}
    assert unit["network"] == "private"  # PRIVATE_NETWORK=1 and the addresses
    assert host.systemctl("is-active", "--quiet", "container@h-coder.service").returncode == 0
    host.nixos_container("stop", "h-coder")
    inactive = host.systemctl("is-active", "container@h-coder.service")
    assert (inactive.returncode, inactive.stdout) == (3, "inactive\n")
    assert host.systemctl("daemon-reload").returncode == 0
    host.nixos_container("start", "h-coder")
    assert host.unit("h-coder")["limits"] == {"MemoryMax": "1G", "CPUQuota": "20%"}
    show = host.systemctl("show", "container@h-coder.service", "-p", "MemoryMax")
    assert show.stdout == "MemoryMax=1073741824\n"


def test_a_missing_bind_source_fails_the_start(host):
    host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder", cwd=host.work)
    conf = host.conf_dir / "h-coder.conf"
    conf.write_text(conf.read_text() + f'EXTRA_NSPAWN_FLAGS="--bind={host.root}/nope:/x"\n')
    r = host.nixos_container("start", "h-coder")
    assert r.returncode != 0
    assert "Job for container@h-coder.service failed" in r.stderr
    assert r.stderr.rstrip().endswith("failed to start container")
    assert host.unit("h-coder")["state"] == "failed"
    assert host.unit("h-coder")["journal"] == [
        f"Failed to stat {host.root}/nope: No such file or directory"]


def test_flakes_are_off_unless_nix_conf_or_the_call_turns_them_on(host):
    host.nix_conf("")  # stock NixOS: nix.settings.experimental-features is empty
    off = host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder",
                               cwd=host.work)
    assert off.returncode == 1
    assert ("error: experimental Nix feature 'nix-command' is disabled; add "
            "'--extra-experimental-features nix-command' to enable it") in off.stderr
    assert host.nixos_container("destroy", "h-coder").returncode == 0
    half = host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder",
                                "--option", "experimental-features", "nix-command",
                                cwd=host.work)
    assert "experimental Nix feature 'flakes' is disabled" in half.stderr
    assert host.nixos_container("destroy", "h-coder").returncode == 0
    on = host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder", *FLAKES,
                              cwd=host.work)
    assert on.returncode == 0, on.stderr
    # nix.conf's setting replaced by a later `experimental-features`, kept by `extra-...`.
    host.nix_conf("experimental-features = nix-command flakes\n")
    replaced = host.nixos_container("update", "h-coder", "--flake", f"{host.flake}#coder",
                                    "--option", "experimental-features", "flakes",
                                    cwd=host.work)
    assert "'nix-command' is disabled" in replaced.stderr


def test_a_config_that_builds_but_fails_to_activate_fails_the_reload_and_keeps_the_profile(host):
    assert host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder",
                                cwd=host.work).returncode == 0
    assert host.nixos_container("start", "h-coder").returncode == 0
    good = host.profile("h-coder")
    assert host.unit("h-coder")["failed_units"] == []
    (host.applied / "agent.nix").write_text(FAILING)
    r = host.nixos_container("update", "h-coder", "--flake", f"{host.flake}#coder",
                             cwd=host.work)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-4:-1] == [
        "reloading container...",
        "Job for container@h-coder.service failed because the control process exited with "
        "error code.",
        'See "systemctl status container@h-coder.service" and "journalctl -xeu '
        'container@h-coder.service" for details.']
    assert r.stderr.splitlines()[-1].endswith("nixos-container: failed to reload container")
    # The profile was set before the reload and stays there; the unit keeps running the new,
    # half-activated system, and so does every later start.
    bad = host.profile("h-coder")
    assert bad != good
    unit = host.unit("h-coder")
    assert (unit["state"], unit["system"], unit["failed_units"]) == (
        "active", str(bad), ["broken.service"])
    assert "warning: the following units failed: broken.service" in unit["journal"]
    host.nixos_container("restart", "h-coder")
    assert host.unit("h-coder")["system"] == str(bad)
    # nix-env sets it back (a new generation pointing at the old system).
    back = host.run(NIX_ENV, "-p", str(host.profiles_dir / "h-coder" / "system"), "--set",
                    str(good))
    assert back.returncode == 0, back.stderr
    host.nixos_container("restart", "h-coder")
    assert host.unit("h-coder")["system"] == str(good)
    gens = host.run(NIX_ENV, "-p", str(host.profiles_dir / "h-coder" / "system"),
                    "--list-generations").stdout.splitlines()
    assert [g.split()[0] for g in gens] == ["1", "2", "3"] and gens[-1].endswith("(current)")
    missing = host.run(NIX_ENV, "-p", str(host.profiles_dir / "h-coder" / "system"), "--set",
                       "/nix/store/nope")
    assert (missing.returncode, missing.stderr) == (1, "error: path '/nix/store/nope' is not "
                                                       "valid\n")


def test_run_uses_the_containers_login_path(host):
    croot = host.declare_container("hive-forge", users={"forgejo": "/var/lib/forgejo"},
                                   links={"/nix/store/abc-hello/bin/hello": IN_CONTAINER})
    missing = host.nixos_container("run", "hive-forge", "--", "hello")
    assert (missing.returncode, missing.stderr) == (
        127, "-bash: line 1: exec: hello: not found\n")
    env = host.nixos_container("run", "hive-forge", "--", "env")
    assert env.returncode == 0, env.stderr
    seen = dict(line.split("=", 1) for line in env.stdout.splitlines())
    assert seen["PATH"].endswith(":/nix/var/nix/profiles/default/bin:/run/current-system/sw/bin")
    assert (seen["USER"], seen["HOME"]) == ("root", "/root")
    as_user = host.nixos_container("run", "hive-forge", "--", "runuser", "-u", "forgejo", "--",
                                   "env")
    assert "HOME=/var/lib/forgejo" in as_user.stdout.splitlines()
    nobody = host.nixos_container("run", "hive-forge", "--", "runuser", "-u", "ghost", "--", "x")
    assert nobody.returncode == 1 and "user ghost does not exist" in nobody.stderr
    unit = croot / "etc" / "systemd" / "system" / "forgejo.service"
    unit.parent.mkdir(parents=True)
    unit.write_text('[Service]\nUser=forgejo\nEnvironment="HOME=/var/lib/forgejo"\n'
                    'Environment="PATH=/nix/store/abc-hello/bin:/x/bin"\n')
    show = host.nixos_container("run", "hive-forge", "--", "systemctl", "show",
                                "--property=User", "--property=Environment", "forgejo.service")
    assert show.stdout == ("User=forgejo\nEnvironment=HOME=/var/lib/forgejo "
                           "PATH=/nix/store/abc-hello/bin:/x/bin\n")
    found = host.nixos_container("run", "hive-forge", "--", "env",
                                 "PATH=/nix/store/abc-hello/bin", "hello")
    assert found.returncode == 1 and "not emulated" in found.stderr  # it ran (as "hello")
    host.nixos_container("stop", "hive-forge")
    stopped = host.nixos_container("run", "hive-forge", "--", "env")
    assert stopped.returncode != 0
    assert stopped.stderr.endswith("unable to get container's main PID\n")


def test_list_units_prints_what_systemctl_prints(host):
    for name in ("h-coder", "h-b"):
        r = host.nixos_container("create", name, "--flake", f"{host.flake}#coder", cwd=host.work)
        assert r.returncode == 0, r.stderr
    host.nixos_container("start", "h-coder")
    host.nixos_container("start", "h-b")
    host.nixos_container("stop", "h-b")
    argv = ["list-units", "--plain", "--no-legend", "--type=service", "container@*"]
    r = host.systemctl(*argv)
    assert (r.returncode, r.stderr) == (0, "")
    # Only what is active, has a job or failed, without --all; columns padded to the widest.
    assert r.stdout == ("container@h-coder.service loaded active running "
                        "Container 'h-coder'\n")
    assert host.systemctl(*argv, "--all").stdout.splitlines() == [
        "container@h-b.service     loaded inactive dead    Container 'h-b'",
        "container@h-coder.service loaded active   running Container 'h-coder'"]
    # A failed unit is listed (and gets systemd's bullet without --plain).
    data = host.root / "systemd.json"
    data.write_text(data.read_text().replace('"state": "active"', '"state": "failed"'))
    assert host.systemctl(*argv).stdout == ("container@h-coder.service loaded failed failed "
                                            "Container 'h-coder'\n")
    bulleted = host.systemctl("list-units", "--no-legend", "container@*").stdout
    assert bulleted.startswith("● container@h-coder.service")
    # Nothing matching: nothing printed, exit 0; the legend says so.
    none = host.systemctl("list-units", "--no-legend", "nothing@*")
    assert (none.returncode, none.stdout) == (0, "")
    legend = host.systemctl("list-units", "nothing@*").stdout
    assert legend.startswith("0 loaded units listed.")


CRASHING = ('{ pkgs, ... }: {\n  hivekit.agent.command = [ "${pkgs.coreutils}/bin/false" ];\n'
            "}\n")


def show(host, *args: str) -> tuple[int, dict[str, str], str]:
    r = host.systemctl(*args)
    props = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    return r.returncode, props, r.stderr


def test_show_inside_a_container_and_a_crash_looping_agent_service(host):
    unit = "hive-agent.service"
    props = ("-p", "LoadState", "-p", "ActiveState", "-p", "SubState", "-p", "NRestarts")
    # Not running: there is no bus inside to reach.
    code, _, err = show(host, "-M", "h-coder", "show", *props, unit)
    assert (code, err) == (1, "Failed to connect to bus: No such file or directory\n")
    assert host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder",
                                cwd=host.work).returncode == 0
    assert host.nixos_container("start", "h-coder").returncode == 0
    code, got, _ = show(host, "show", *props, "container@h-coder.service")
    assert (code, got) == (0, {"LoadState": "loaded", "ActiveState": "active",
                               "SubState": "running", "NRestarts": "0"})
    code, got, _ = show(host, "-M", "h-coder", "show", *props, unit)
    assert (code, got) == (0, {"LoadState": "loaded", "ActiveState": "active",
                               "SubState": "running", "NRestarts": "0"})
    assert show(host, "--machine=h-coder", "show", "-p", "LoadState", "nosuch.service")[1] == {
        "LoadState": "not-found"}
    # A command that exits at once: the reload succeeds (a simple service's start job does),
    # and the service restarts every RestartSec=2 s until the start limit fails it.
    (host.applied / "agent.nix").write_text(CRASHING)
    assert host.nixos_container("update", "h-coder", "--flake", f"{host.flake}#coder",
                                cwd=host.work).returncode == 0
    host.nixos_container("stop", "h-coder")
    assert host.nixos_container("start", "h-coder").returncode == 0
    assert host.unit("h-coder")["failed_units"] == []
    code, got, _ = show(host, "-M", "h-coder", "show", *props, "-p", "ExecMainStatus", unit)
    assert got == {"LoadState": "loaded", "ActiveState": "activating", "SubState": "auto-restart",
                   "NRestarts": "0", "ExecMainStatus": "1"}
    lines = (host.root / "journal" / "h-coder" / unit).read_text().splitlines()
    assert lines == [f"{unit}: Main process exited, code=exited, status=1/FAILURE",
                     f"{unit}: Failed with result 'exit-code'.",
                     f"{unit}: Scheduled restart job, restart counter is at 1."]
    # Later (the record's start moved back 11 s): the start limit was hit.
    import json

    path = host.root / "systemd.json"
    data = json.loads(path.read_text())
    data["units"]["container@h-coder.service"]["started_at"] -= 11
    path.write_text(json.dumps(data))
    code, got, _ = show(host, "-M", "h-coder", "show", *props, "-p", "Result", unit)
    assert got == {"LoadState": "loaded", "ActiveState": "failed", "SubState": "failed",
                   "NRestarts": "4", "Result": "start-limit-hit"}
    assert (host.root / "journal" / "h-coder" / unit).read_text().splitlines()[-1] == (
        f"{unit}: Start request repeated too quickly.")
    # Only `show` is emulated inside.
    assert host.systemctl("-M", "h-coder", "restart", unit).returncode == 1


def test_the_built_system_holds_the_agents_health_declarations(host):
    import json

    (host.applied / "agent.nix").write_text(
        '{ ... }: {\n  hivekit.agent.health.timeout = 5;\n'
        '  hivekit.agent.health.http = "/healthz";\n'
        '  hivekit.agent.health.command = [ "check" "--quick" ];\n}\n')
    assert host.nixos_container("create", "h-coder", "--flake", f"{host.flake}#coder",
                                cwd=host.work).returncode == 0
    declared = json.loads((host.profile("h-coder") / "etc/hive/health.json").read_text())
    assert declared == {"timeout": 5, "settle": None, "http": "/healthz",
                        "command": ["check", "--quick"]}
    # A definition of the wrong type fails the evaluation, as the module system's check does.
    (host.applied / "agent.nix").write_text('{ ... }: {\n  hivekit.agent.health.timeout = '
                                            '"soon";\n}\n')
    r = host.nixos_container("update", "h-coder", "--flake", f"{host.flake}#coder",
                             cwd=host.work)
    assert r.returncode != 0
    assert ("error: A definition for option `hivekit.agent.health.timeout' is not of type "
            "`null or positive integer or floating point number, meaning >0'.") in r.stderr
