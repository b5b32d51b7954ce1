"""Config loading and plugin enablement: every bad config is one line naming file, table, key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hivekit import config as cfg
from hivekit import plugins
from hivekit.errors import ConfigError, PluginError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hivekit.toml"
    path.write_text(text)
    return path


def load(path: Path) -> plugins.Loaded:
    return plugins.load(cfg.read(path))


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value.problems


def check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hivekit", "config", "check", str(path)],
                          capture_output=True, text=True)


def test_embedded_defaults_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HIVEKIT_CONFIG", raising=False)
    config = cfg.read(cfg.find_path())
    assert config.path is None
    assert config.state_dir == tmp_path / ".hivekit"
    assert config.runtime_dir == tmp_path / ".hivekit" / "run"
    loaded = plugins.load(config)
    assert loaded.backend == cfg.DEFAULT_BACKEND
    assert "cli" in loaded.enabled


def test_relative_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc", '[hive]\nstate_dir = "../state"\nbackend = "fake"\n')
    assert cfg.read(path).state_dir == (tmp_path / "state").resolve()


def test_misspelled_key_names_file_table_and_key(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "fake"\nmanger = "boss"\n')
    [line] = problems_of(path)
    assert str(path) in line and "[hive]" in line and "manger" in line
    assert "unknown key" in line and "manager" in line  # lists the known keys


def test_wrong_type_names_the_key(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "fake"\nmanager_port = "eighty"\n')
    [line] = problems_of(path)
    assert str(path) in line and "[hive] manager_port" in line


def test_validator_error_names_the_table(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "fake"\nmanager_port = 70000\n')
    [line] = problems_of(path)
    assert "[hive]" in line and "manager_port" in line and "70000" in line


def test_unknown_plugin_table(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "fake"\n[dashbord]\nport = 1\n')
    [line] = problems_of(path)
    assert "[dashbord]" in line and "no plugin named 'dashbord'" in line


def test_unknown_plugin_in_enable(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "fake"\nenable = ["nosuch"]\n')
    [line] = problems_of(path)
    assert "[hive] enable" in line and "'nosuch'" in line


def test_no_backend(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "cli"\n')
    [line] = problems_of(path)
    assert "exactly one backend" in line and "found none" in line


def test_unknown_backend(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "docker"\n')
    [line] = problems_of(path)
    assert "[hive] backend" in line and "'docker'" in line


def test_two_backends(tmp_path, monkeypatch):
    # A second backend: any installed plugin implementing is_running. The example plugin does
    # not, so register a second one in-process to see the refusal name both.
    class OtherBackend:
        from hivekit import hookimpl

        @hookimpl
        def is_running(self, hive, agent):
            return False

    config = cfg.read(write(tmp_path, '[hive]\nbackend = "fake"\n'))
    with pytest.raises(ConfigError) as info:
        plugins.load(config, extra={"other": OtherBackend()})
    assert "exactly one backend" in str(info.value)
    assert "fake" in str(info.value) and "other" in str(info.value)


def test_several_problems_are_all_reported(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "fake"\nbogus = 1\nport_base = "x"\n')
    lines = problems_of(path)
    assert len(lines) == 2
    assert any("bogus" in line for line in lines) and any("port_base" in line for line in lines)


def test_bad_toml(tmp_path):
    path = write(tmp_path, "[hive\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg.read(path)


def test_plugin_table_structured_into_its_class(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "fake"\nenable = ["example"]\n'
                           '[example]\ngreeting = "hi"\n')
    loaded = load(path)
    assert loaded.plugin_configs["example"].greeting == "hi"


def test_plugin_table_unknown_key(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "fake"\nenable = ["example"]\n'
                           '[example]\ngreting = "hi"\n')
    [line] = problems_of(path)
    assert "[example] greting: unknown key" in line


def test_misspelled_hookimpl_fails_naming_the_plugin(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "fake"\nenable = ["typo"]\n')
    with pytest.raises(PluginError) as info:
        load(path)
    assert "'typo'" in str(info.value) and "agent_badgez" in str(info.value)


def test_load_plugins_allow_list(tmp_path, monkeypatch):
    monkeypatch.setenv("HIVEKIT_LOAD_PLUGINS", "fake")
    assert set(plugins.installed()) == {"fake"}
    monkeypatch.setenv("HIVEKIT_LOAD_PLUGINS", "")
    assert plugins.installed() == {}


def test_config_check_cli_exit_codes(tmp_path):
    good = write(tmp_path, '[hive]\nbackend = "fake"\n')
    result = check(good)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    (tmp_path / "bad").mkdir()
    bad = write(tmp_path / "bad", '[hive]\nbackend = "fake"\nbakend = "x"\n')
    result = check(bad)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "bakend" in result.stderr
    assert "Traceback" not in result.stderr
    result = check(tmp_path / "missing.toml")
    assert result.returncode == 1 and "no such config file" in result.stderr


def test_serve_refuses_a_bad_config_without_traceback(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "fake"\nenable = ["typo"]\n')
    result = subprocess.run([sys.executable, "-m", "hivekit", "--config", str(path), "serve"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "'typo'" in result.stderr and "Traceback" not in result.stderr


def test_trace_plugins_prints_hook_calls(tmp_path):
    path = write(tmp_path, '[hive]\nbackend = "fake"\n')
    result = subprocess.run([sys.executable, "-m", "hivekit", "--config", str(path), "config",
                             "check"], capture_output=True, text=True,
                            env={**__import__("os").environ, "HIVEKIT_TRACE_PLUGINS": "1"})
    assert result.returncode == 0
    assert "config_schema" in result.stderr
