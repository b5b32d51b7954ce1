"""nix/: every file parses, the package's dependencies are pyproject.toml's, and the NixOS module
(evaluated offline, with a stub of nixpkgs' lib: tests/nix/) keeps its dirs, secrets and
assertions consistent and renders settings that `hivekit config check` accepts.

Evaluated with Debian's nix-instantiate (scripts/setup installs nix-bin) in read-only mode:
nothing here needs nixpkgs, a store or the network. The module's settings are rendered as nixpkgs'
pkgs.formats.toml renders them: builtins.toJSON, then remarshal's json2toml.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NIX = REPO / "nix"
SKIP_DIRS = {".git", ".venv", "node_modules"}
JSON2TOML = shutil.which("json2toml", path=str(Path(sys.executable).parent))


def nix_files() -> list[Path]:
    return sorted(p for p in REPO.rglob("*.nix")
                  if not SKIP_DIRS & set(p.relative_to(REPO).parts))


def nix_eval(expr: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nix-instantiate", "--readonly-mode", "--eval", "--strict", "--json",
                           "-E", expr], cwd=REPO, capture_output=True, text=True, timeout=120)


def nix_value(expr: str):
    result = nix_eval(expr)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def module(services: str = "", host: str = "") -> dict:
    """nix/module.nix evaluated for ``services.hivekit = { enable = true; <services> }``."""
    return nix_value(f"import ./tests/nix/eval-module.nix {{ services = {{ enable = true; }} "
                     f"// {{ {services} }}; host = {{ {host} }}; }}")


def rendered(services: str = "") -> str:
    """The hivekit.toml the module renders (with checkConfig off, its unchecked file)."""
    value = module(f"checkConfig = false; {services}")["settingsValue"]
    assert JSON2TOML, "remarshal's json2toml is missing: run scripts/setup test"
    out = subprocess.run([JSON2TOML], input=json.dumps(value), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def config_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "hivekit.toml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "hivekit", "--config", str(path), "config",
                           "check"], capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_the_flake_and_modules_are_there():
    names = {p.name for p in NIX.glob("*.nix")}
    assert {"flake.nix", "package.nix", "module.nix", "agent-base.nix", "mk-agent.nix"} <= names


@pytest.mark.parametrize("path", nix_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_nix_file_parses(path):
    result = subprocess.run(["nix-instantiate", "--readonly-mode", "--parse", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- the package -----------------------------------------------------------------------------

#: package.nix called with each of its arguments standing for itself (its name).
CALLED = """let
  lib = import ./tests/nix/stub-lib.nix;
  package = import ./nix/package.nix;
  stubs = builtins.mapAttrs (name: _: name) (builtins.functionArgs package);
  called = package (stubs // { inherit lib; buildPythonApplication = args: args; src = ./.; });
in """


def pyproject_dependencies() -> list[str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    # PEP 503 names; nixpkgs' python packages use the same names, lowercase.
    return sorted(re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower().replace("_", "-")
                  for d in deps)


def test_the_package_depends_on_exactly_what_pyproject_toml_does():
    package = nix_value(CALLED + "called")
    assert sorted(package["dependencies"]) == pyproject_dependencies()
    assert package["build-system"] == ["setuptools"]
    assert package["version"] == tomllib.loads(
        (REPO / "pyproject.toml").read_text())["project"]["version"]
    # `hivekit mcp` imports the SDK only when it runs: the import check says it is there.
    assert "mcp" in package["pythonImportsCheck"]


def test_the_flakes_checks_and_their_dependency_comparison():
    """checks.<system>.package-dependencies (run by `nix flake check` where nixpkgs is), its
    inputs evaluated here with the package called as above."""
    flake = nix_value(CALLED + """let
      pkgs = {
        stdenv.hostPlatform.system = "x86_64-linux";
        python3Packages.callPackage = _: _:
          called // { dependencies = map (p: { pname = p; }) called.dependencies; };
        runCommand = name: env: _: env;
      };
      nixpkgs = {
        lib = lib // {
          genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
          sort = builtins.sort;
          lessThan = a: b: a < b;
          nixosSystem = _: throw "not evaluated here";
        };
        legacyPackages = { x86_64-linux = pkgs; aarch64-linux = pkgs; };
      };
      outputs = (import ./nix/flake.nix).outputs {
        inherit nixpkgs;
        self = outputs // { sourceInfo.outPath = "/src"; };
      };
      checks = outputs.checks.x86_64-linux;
    in { names = builtins.attrNames checks;
         inherit (checks.package-dependencies) wanted packaged; }""")
    assert set(flake["names"]) == {"package", "package-dependencies", "module-defaults",
                                   "module-containers"}
    assert json.loads(flake["wanted"]) == json.loads(flake["packaged"]) == \
        pyproject_dependencies()


# --- the NixOS module ------------------------------------------------------------------------


def test_the_module_defaults_render_a_config_that_passes_config_check(tmp_path):
    text = rendered()
    assert tomllib.loads(text) == {"hive": {
        "state_dir": "/var/lib/hivekit", "runtime_dir": "/run/hivekit", "backend": "process",
        "enable": [], "disable": [], "dashboard_port": 7000}}
    result = config_check(tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert "ok (backend process" in result.stdout


def unit_paths(got: dict) -> set[str]:
    """Every directory the unit and tmpfiles name."""
    unit = got["config"]["systemd"]["services"]["hivekit"]["serviceConfig"]
    named = {unit["WorkingDirectory"], *unit["ReadWritePaths"],
             *(r.split("'")[1] for r in got["config"]["systemd"]["tmpfiles"]["rules"])}
    if "StateDirectory" in unit:
        named.add(f"/var/lib/{unit['StateDirectory']}")
    if "RuntimeDirectory" in unit:
        named.add(f"/run/{unit['RuntimeDirectory']}")
    return named


def test_default_dirs_are_the_units_own_and_others_follow_settings(tmp_path):
    default = module()
    unit = default["config"]["systemd"]["services"]["hivekit"]["serviceConfig"]
    assert (unit["StateDirectory"], unit["RuntimeDirectory"]) == ("hivekit", "hivekit")
    assert unit["RuntimeDirectoryPreserve"] == "yes"  # agents bind their socket dirs
    assert unit["WorkingDirectory"] == "/var/lib/hivekit"
    assert unit["ReadWritePaths"] == []
    assert default["config"]["systemd"]["tmpfiles"]["rules"] == []
    assert unit_paths(default) == {"/var/lib/hivekit", "/run/hivekit"}

    dirs = 'settings.hive = { state_dir = "/srv/hive"; runtime_dir = "/run/hive-s"; };'
    moved = module(dirs)
    unit = moved["config"]["systemd"]["services"]["hivekit"]["serviceConfig"]
    assert "StateDirectory" not in unit and "RuntimeDirectory" not in unit
    assert unit["WorkingDirectory"] == "/srv/hive"
    assert sorted(unit["ReadWritePaths"]) == ["/run/hive-s", "/srv/hive"]
    assert moved["config"]["systemd"]["tmpfiles"]["rules"] == [
        "d '/srv/hive' 0750 hivekit hivekit - -", "d '/run/hive-s' 0750 hivekit hivekit - -"]
    assert moved["config"]["users"]["users"]["hivekit"]["home"] == "/srv/hive"
    assert unit_paths(moved) == {"/srv/hive", "/run/hive-s"}
    text = rendered(dirs)
    settings = tomllib.loads(text)
    assert (settings["hive"]["state_dir"], settings["hive"]["runtime_dir"]) == (
        "/srv/hive", "/run/hive-s")
    result = config_check(tmp_path, text)
    assert result.returncode == 0, result.stderr


SECRETS = """
    operatorGroup = "hivekit-ops";
    environmentFile = "/run/secrets/hivekit.env";
    credentials.dashboard-token = "/run/secrets/hivekit-dashboard-token";
    settings.hive.enable = [ "meta_flake" ];
    settings.meta_flake.hivekit_flake = "path:/srv/hivekit?dir=nix";
"""


def test_secrets_and_the_operator_group(tmp_path):
    got = module(SECRETS)
    unit = got["config"]["systemd"]["services"]["hivekit"]["serviceConfig"]
    assert unit["EnvironmentFile"] == "/run/secrets/hivekit.env"
    assert unit["LoadCredential"] == ["dashboard-token:/run/secrets/hivekit-dashboard-token"]
    assert unit["SupplementaryGroups"] == ["hivekit-ops"]
    assert got["config"]["users"]["groups"] == {"hivekit": {}, "hivekit-ops": {}}
    assert "/nix/store/stub-nix" in got["config"]["systemd"]["services"]["hivekit"]["path"]
    text = rendered(SECRETS)
    settings = tomllib.loads(text)
    assert settings["hive"]["operator_group"] == "hivekit-ops"
    assert settings["dashboard"] == {
        "token_file": "/run/credentials/hivekit.service/dashboard-token"}
    result = config_check(tmp_path, text)
    assert result.returncode == 0, result.stderr


def test_the_container_backend_gets_every_program_nixos_container_runs(tmp_path):
    services = 'user = "root"; settings.hive.backend = "nixos_container";'
    got = module(services)
    service = got["config"]["systemd"]["services"]["hivekit"]
    # nix build/nix-env (nix), systemctl/machinectl (systemd), nsenter/umount/mountpoint
    # (util-linux), rm (coreutils), find (findutils), chattr (e2fsprogs): nixos-container.pl.
    for program in ("nix", "systemd", "util-linux", "coreutils", "findutils", "e2fsprogs"):
        assert f"/nix/store/stub-{program}" in service["path"]
    assert "/nix/store/stub-bubblewrap" not in service["path"]
    assert "NoNewPrivileges" not in service["serviceConfig"]  # root: no hardening
    text = rendered(services)
    assert tomllib.loads(text)["nixos_container"] == {
        "nixos_container": "/run/current-system/sw/bin/nixos-container"}
    result = config_check(tmp_path, text)
    assert result.returncode == 0, result.stderr


def test_the_built_config_is_checked_by_hivekit_config_check():
    assert module()["configFile"] == "/nix/store/stub-run-hivekit.toml"
    check = nix_value("(import ./tests/nix/eval-module.nix { services.enable = true; })"
                      ".checkScript")
    assert "hivekit --config /nix/store/stub-generated-hivekit.toml config check" in check


#: Contradictory settings, and the assertion each must fail (generated into one test each).
CONTRADICTIONS = {
    "firewall-without-remote": ("openFirewall = true;", "opens port 7000, but the dashboard"),
    "firewall-without-dashboard": (
        'openFirewall = true; settings.dashboard.allow_remote = true; '
        'settings.hive.disable = [ "dashboard" ];', "settings.hive.disable turns the dashboard"),
    "containers-not-root": ('settings.hive.backend = "nixos_container";',
                            'set services.hivekit.user = "root"'),
    "containers-disabled": ('user = "root"; settings.hive.backend = "nixos_container";',
                            "needs boot.enableContainers = true"),
    "relative-state-dir": ('settings.hive.state_dir = "hive";', "must be absolute paths"),
    "long-runtime-dir": (f'settings.hive.runtime_dir = "/run/{"x" * 80}";', "is too long"),
    "operator-groups-disagree": ('operatorGroup = "ops"; settings.hive.operator_group = "x";',
                                 "disagree: set one"),
}


@pytest.mark.parametrize("case", sorted(CONTRADICTIONS))
def test_contradictory_settings_fail_an_assertion(case):
    services, says = CONTRADICTIONS[case]
    host = "boot.enableContainers = false;" if case == "containers-disabled" else ""
    failed = module(services, host)["assertions"]
    assert len(failed) == 1 and says in failed[0], failed


def test_an_open_firewall_with_a_remote_dashboard_opens_its_port():
    got = module('openFirewall = true; settings.dashboard = { allow_remote = true; '
                 'host = "0.0.0.0"; port = 7443; };')
    assert got["assertions"] == []
    assert got["config"]["networking"]["firewall"]["allowedTCPPorts"] == [7443]


MK_AGENT = """let mk = import ./nix/mk-agent.nix {
  nixpkgs.lib = { nixosSystem = args: args; mkDefault = x: { mkDefault = x; }; };
  agentBase = "agent-base"; hivekitFor = system: "hivekit-" + system;
}; in mk """


IDENTITY = ('name = "coder"; isManager = false; port = 8123; module = "coder-module"; '
            'env = { HIVE_LABEL = "coder"; HIVE_DASHBOARD_PORT = "7000"; }; '
            'git = { name = "coder"; email = "coder@hive.local"; };')


def test_mk_agent_takes_what_the_meta_flake_passes_and_builds_a_nixos_system():
    # The exact argument set plugins/meta_flake renders (and its tests' stub declares).
    from hivekit_plugins.meta_flake import meta

    rendered = meta.render("path:/hivekit", [meta.Identity(
        name="coder", port=8123, is_manager=False, applied=Path("/s/applied/coder"),
        git_email="coder@hive.local", env={"HIVE_LABEL": "coder"})])
    block = rendered[rendered.index("hivekit.lib.mkAgent {"):]
    passed = {line.split("=")[0].strip() for line in block.splitlines()[1:]
              if line.startswith("        ") and not line.startswith("         ") and "=" in line}
    assert passed == {"name", "isManager", "port", "module", "env", "git"}
    got = nix_value(MK_AGENT + "{ " + IDENTITY + ' extraModules = [ "extra" ]; }')
    assert got == {"system": "x86_64-linux", "modules": [
        "agent-base",
        {"hivekit": {"agent": {
            "name": "coder", "isManager": False, "port": 8123,
            "environment": {"HIVE_LABEL": "coder", "HIVE_DASHBOARD_PORT": "7000"},
            "git": {"name": "coder", "email": "coder@hive.local"},
            "package": {"mkDefault": "hivekit-x86_64-linux"}}}},
        "coder-module", "extra"]}


@pytest.mark.parametrize(("args", "says"), [
    ("{ " + IDENTITY + ' colour = "red"; }', "unexpected argument 'colour'"),
    ('{ name = "coder"; isManager = false; port = 1; env = { }; git = { }; }',
     "without required argument 'module'"),
])
def test_mk_agent_names_a_bad_argument(args, says):
    result = nix_eval(MK_AGENT + args)
    assert result.returncode == 1
    assert says in result.stderr


def test_the_agent_service_gets_each_credential_key_as_a_variable(tmp_path):
    # nix/agent-base.nix runs nix/with-creds.sh in front of the agent's command; run it as
    # that unit would (HIVE_CREDS from the identity file), with keys set as `hivekit creds`
    # writes them and files it must skip.
    assert '"${withCreds}" ] ++ cfg.command' in (NIX / "agent-base.nix").read_text()
    env_dir = tmp_path / "creds" / "env"
    env_dir.mkdir(parents=True)
    (env_dir / "ANTHROPIC_API_KEY").write_text("sk-ant-1 with spaces")
    (env_dir / "OTHER_TOKEN").write_text("t0k")
    (env_dir / ".NEXT_KEY.new").write_text("half-written")
    (env_dir / "not-a-key").write_text("x")
    (env_dir / "PATH").write_text("/evil")
    (env_dir / "HIVE_LABEL").write_text("someone-else")
    (env_dir / "LINKED").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_text("secret elsewhere")
    out = subprocess.run(["bash", str(NIX / "with-creds.sh"), "env"], capture_output=True,
                         text=True, timeout=30, check=True,
                         env={"PATH": "/usr/bin:/bin", "HIVE_CREDS": str(tmp_path / "creds"),
                              "HIVE_LABEL": "coder"})
    got = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert got["ANTHROPIC_API_KEY"] == "sk-ant-1 with spaces" and got["OTHER_TOKEN"] == "t0k"
    assert (got["PATH"], got["HIVE_LABEL"]) == ("/usr/bin:/bin", "coder")
    assert not {"NEXT_KEY", ".NEXT_KEY.new", "not-a-key", "LINKED"} & set(got)
    # No creds dir (or none bound): the command runs all the same.
    bare = subprocess.run(["bash", str(NIX / "with-creds.sh"), "true"], timeout=30,
                          env={"PATH": "/usr/bin:/bin"})
    assert bare.returncode == 0


def readme_services(readme: Path) -> str:
    """The body of the first ``services.hivekit = { ... };`` in ``readme``'s Nix examples."""
    text = readme.read_text()
    m = re.search(r"^( *)services\.hivekit = \{\n(.*?)^\1\};", text, re.M | re.S)
    assert m, f"no services.hivekit example in {readme}"
    return m.group(2)


@pytest.mark.parametrize("readme", ["README.md", "plugins/process/README.md"])
def test_the_readmes_nixos_example_evaluates_and_its_config_passes_the_check(readme, tmp_path):
    body = readme_services(REPO / readme)
    assert "operatorGroup" in body and "credentials" in body and "environmentFile" in body
    got = module(body)
    assert got["assertions"] == []
    unit = got["config"]["systemd"]["services"]["hivekit"]["serviceConfig"]
    assert unit["LoadCredential"] and unit["SupplementaryGroups"]
    result = config_check(tmp_path, rendered(body))
    assert result.returncode == 0, result.stderr


def test_the_process_backend_gets_a_delegated_cgroup():
    """The process backend limits each agent through a cgroup of its own: the unit delegates its
    tree and leaves it writable (the module reads the backend from ``settings.hive``)."""
    unit = module()["config"]["systemd"]["services"]["hivekit"]["serviceConfig"]
    assert unit["Delegate"] == "cpu memory"
    assert unit["ProtectControlGroups"] is False


# --- what an agent's NixOS config declares about its health -------------------------------------


@pytest.mark.parametrize("declared, expected", [
    ("", {}),
    ('timeout = 5; settle = 0.5; http = "/healthz"; command = [ "curl" "-f" "x" ];',
     {"timeout": 5, "settle": 0.5, "http": "/healthz", "command": ["curl", "-f", "x"]}),
], ids=["nothing", "everything"])
def test_the_agents_health_declarations_reach_the_backend_as_it_reads_them(tmp_path, declared,
                                                                            expected):
    """nix/agent-base.nix renders ``hivekit.agent.health`` into the system's
    /etc/hive/health.json; the nixos_container backend reads that file back into
    ``hivekit.Health``: every field of it is an option, and what was set arrives unchanged."""
    import attrs
    from hivekit_plugins.nixos_container import health

    from hivekit import Health

    got = nix_value(f"import ./tests/nix/eval-agent-base.nix {{ health = {{ {declared} }}; }}")
    assert got["healthOptions"] == sorted(attrs.fields_dict(Health))
    etc = tmp_path / health.HEALTH_FILE
    etc.parent.mkdir(parents=True)
    etc.write_text(got["healthJson"])
    assert health.load(tmp_path) == Health(**expected)
