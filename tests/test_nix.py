"""nix/: every file parses, and what services.hivekit renders is a config hivekit accepts.

Evaluated with Debian's nix-instantiate (scripts/setup installs nix-bin) in read-only mode:
nothing here needs nixpkgs, a store or the network. settings.nix is the module's renderer and
holds its option defaults, so these tests check exactly what the module writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NIX = REPO / "nix"
SKIP_DIRS = {".git", ".venv", "node_modules"}


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


def render(cfg: str = "") -> str:
    """The TOML the module writes for its defaults updated with ``cfg`` (a Nix attrset body)."""
    return nix_value(f"let s = import ./nix/settings.nix; in s.render (s.defaults // {{ {cfg} }})")


def config_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "hivekit.toml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "hivekit", "--config", str(path), "config",
                           "check"], capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_the_flake_and_modules_are_there():
    names = {p.name for p in NIX.glob("*.nix")}
    assert {"flake.nix", "package.nix", "module.nix", "settings.nix", "agent-base.nix",
            "mk-agent.nix"} <= names


@pytest.mark.parametrize("path", nix_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_nix_file_parses(path):
    result = subprocess.run(["nix-instantiate", "--readonly-mode", "--parse", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_module_defaults_render_a_config_that_passes_config_check(tmp_path):
    text = render()
    assert tomllib.loads(text) == {"hive": {
        "state_dir": "/var/lib/hivekit", "runtime_dir": "/run/hivekit", "backend": "process",
        "enable": [], "disable": [], "dashboard_port": 7000}}
    result = config_check(tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert "ok (backend process" in result.stdout


def test_settings_merge_over_the_options_and_render_as_toml(tmp_path):
    text = render('''
        dashboardPort = 7100;
        settings = {
          hive.operator_pronouns = "they/them";
          hive.dashboard_port = 7200;
          process = {
            memory = "2G";
            stop_timeout = 1.0;
            restart_delay = 0.5;
            sandbox = "none";
            agents.coder = { memory = "8G"; cpu_seconds = 3600; };
            log_max_bytes = null;
          };
        };''')
    parsed = tomllib.loads(text)
    assert parsed["hive"]["operator_pronouns"] == "they/them"
    assert parsed["hive"]["dashboard_port"] == 7200  # settings win over the option
    assert parsed["hive"]["state_dir"] == "/var/lib/hivekit"
    assert parsed["process"] == {"memory": "2G", "stop_timeout": 1.0, "restart_delay": 0.5,
                                 "sandbox": "none",
                                 "agents": {"coder": {"memory": "8G", "cpu_seconds": 3600}}}
    result = config_check(tmp_path, text)
    assert result.returncode == 0, result.stderr


def test_awkward_keys_and_strings_survive_rendering():
    text = render(r'''settings.odd = { "a key" = "quote \" backslash \\ newline
tab	end"; list = [ 1 "two" true 2.5 ]; empty = { }; };''')
    assert tomllib.loads(text)["odd"] == {
        "a key": 'quote " backslash \\ newline\ntab\tend', "list": [1, "two", True, 2.5],
        "empty": {}}


def test_a_bad_setting_fails_config_check(tmp_path):
    result = config_check(tmp_path, render('settings.process.sandbox = "maybe";'))
    assert result.returncode == 1
    assert "[process] sandbox: must be one of auto, bwrap, none" in result.stderr


def test_a_setting_that_is_not_a_table_is_refused():
    result = nix_eval('let s = import ./nix/settings.nix; in s.render '
                      '(s.defaults // { settings = { verbose = true; }; })')
    assert result.returncode == 1
    assert "services.hivekit.settings.verbose must be a table" in result.stderr


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
