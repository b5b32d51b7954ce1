"""The process backend's pure parts: agent.toml, the [process] table, bubblewrap's argv."""

from __future__ import annotations

from pathlib import Path

import pytest
from hivekit_plugins.process import sandbox, spec
from hivekit_plugins.process.settings import Limits, ProcessConfig, parse_size

from hivekit.errors import OperationFailed


def test_the_seed_parses_and_runs_the_harness():
    parsed = spec.parse(spec.seed("demo"))
    assert parsed.command == "hivekit"
    assert parsed.args == ["harness"]
    assert parsed.wait_for_port is True


@pytest.mark.parametrize(("text", "says"), [
    ("command = 5", "command: expected a string, got the integer 5"),
    ('command = "a"\nargs = [1]', "args[0]: expected a string, got the integer 1"),
    ('command = "a"\nargs = "x y"', "args: expected a list of strings, got the string \"x y\""),
    ('command = "a"\nwait_for_port = "no"',
     'wait_for_port: expected a boolean, got the string "no"'),
    ('command = "a"\nenv = ["x"]', "env: expected a mapping"),
    ('command = "a"\n[env]\n"BAD NAME" = "x"', "'BAD NAME' is not a valid environment"),
    ('command = ""', "command: must not be empty"),
    ('args = ["x"]', "command is missing"),
    ('command = "a', "not valid TOML"),
])
def test_bad_agent_toml_says_what_is_wrong(text, says):
    with pytest.raises(OperationFailed) as err:
        spec.parse(text)
    assert str(err.value).startswith("agent.toml: ")
    assert says in str(err.value)


def test_relative_commands_resolve_in_the_config_repo(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(OperationFailed, match="not an executable file"):
        spec.resolve(spec.parse('command = "./run.sh"'), tmp_path, "/usr/bin")
    script.chmod(0o755)
    assert spec.resolve(spec.parse('command = "./run.sh"'), tmp_path, "/usr/bin") == str(script)
    assert spec.resolve(spec.parse('command = "sh"'), tmp_path, "/usr/bin:/bin").endswith("/sh")


def test_sizes():
    assert parse_size("2G") == 2 << 30
    assert parse_size("512MiB") == 512 << 20
    assert parse_size("1024") == 1024
    assert parse_size("unlimited") == 0
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_per_agent_limits_override_the_hive_wide_ones_key_by_key():
    config = ProcessConfig(memory="2G", cpu_seconds=100,
                           agents={"big": Limits(memory="8G"),
                                   "free": Limits(memory="unlimited", cpu_seconds=0)})
    # Memory falls back to RLIMIT_DATA (RLIMIT_AS broke runtimes that reserve address space).
    assert config.rlimits("other") == {"DATA": 2 << 30, "CPU": 100}
    assert config.rlimits("big") == {"DATA": 8 << 30, "CPU": 100}
    assert config.rlimits("big", memory=False) == {"CPU": 100}  # a cgroup enforces it instead
    assert config.rlimits("free") == {}
    assert ProcessConfig().rlimits("x") == {}
    assert config.limits("big").memory == 8 << 30 and config.limits("free").memory is None


def test_bwrap_argv_hides_the_hive_before_binding_the_agent_back():
    state, run = Path("/srv/hive"), Path("/srv/hive/run")
    argv = sandbox.argv("bwrap", name="demo", hidden=[run, state],
                        applied=state / "applied/demo", notes=state / "agents/demo/state",
                        creds=state / "agents/demo/creds", shared=state / "shared",
                        runtime=run / "agents/demo")
    text = " ".join(argv)
    assert text.index("--tmpfs /srv/hive ") < text.index("--tmpfs /srv/hive/run ")
    assert text.index("--tmpfs /srv/hive/run ") < text.index("--bind /srv/hive/agents/demo")
    assert "--ro-bind /srv/hive/applied/demo /srv/hive/applied/demo" in text
    assert "--bind /srv/hive/shared /shared" in text
    assert "--bind /srv/hive/run/agents/demo /run/hive" in text
    assert "--cap-drop ALL" in text and "--die-with-parent" in text
    assert argv[-1] == "--"
    assert "--ro-bind /proc" not in text and "--proc /proc" in text


def test_bwrap_argv_binds_hivekits_code_before_hiding_the_hive():
    # A checkout under /tmp (installed editable) must stay importable under the sandbox's fresh
    # /tmp, and binding it must never uncover the hive's state, even when that lives inside it.
    import hivekit_plugins

    import hivekit

    code = str(Path(hivekit.__file__).parent)
    plugins = str(Path(hivekit_plugins.__file__).parent)
    state = Path(code).parent / ".hivekit"
    argv = sandbox.argv("bwrap", name="demo", hidden=[state], applied=state / "applied/demo",
                        notes=state / "agents/demo/state", creds=state / "agents/demo/creds",
                        shared=state / "shared", runtime=state / "run/agents/demo")
    text = " ".join(argv)
    for path in (code, plugins):
        assert f"--ro-bind-try {path} {path}" in text
        assert text.index(f"--ro-bind-try {path} ") < text.index(f"--tmpfs {state}")
