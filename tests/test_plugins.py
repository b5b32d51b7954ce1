"""Plugin discovery: bundled plugins and a third-party one load through the same entry points."""

from __future__ import annotations

import json
import subprocess
import sys


def run(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "hivekit", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=60)


def test_plugins_json_lists_bundled_and_third_party(tmp_path):
    (tmp_path / "hivekit.toml").write_text('[hive]\nbackend = "fake"\nenable = ["example"]\n')
    result = run("plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["fake"]["enabled"] and rows["fake"]["backend"]
    assert rows["fake"]["module"] == "hivekit.testing.fake"
    assert "is_running" in rows["fake"]["hooks"]
    assert rows["cli"]["enabled"] and rows["cli"]["distribution"] == "hivekit"
    example = rows["example"]
    assert example["enabled"]
    assert (example["distribution"], example["version"]) == ("hivekit-example-plugin", "1.2.3")
    assert example["hooks"] == ["agent_badges", "agent_templates", "config_schema",
                                "initial_config_files", "register_commands", "state_extras"]
    assert not rows["typo"]["enabled"]


def test_third_party_command_only_when_enabled(tmp_path):
    result = run("hello", "bob", cwd=tmp_path)
    assert result.returncode == 2 and "No such command" in result.stderr
    (tmp_path / "hivekit.toml").write_text('[hive]\nbackend = "fake"\nenable = ["example"]\n')
    result = run("hello", "bob", cwd=tmp_path)
    assert result.returncode == 0 and "hello, bob, from the example plugin" in result.stdout


def test_third_party_plugin_is_configured_and_called(make_hive):
    hive = make_hive('[hive]\nbackend = "fake"\nenable = ["example"]\n'
                     '[example]\ngreeting = "ahoy"\nshout = true\n')
    # (a row being spawned has no badges yet: badges run when its row is made)
    state = hive.wait_for(lambda: (s := hive.get("/api/state"))["agents"]
                          and s["agents"][0]["status"] != "spawning" and s, what="the manager")
    assert "AHOY MANAGER" in [b["label"] for b in state["agents"][0]["badges"]]
    assert state["example"] == {"agents_seen": 1}
    assert "example" in state["plugins"]


def test_plugins_reports_a_misspelled_hook_as_an_error(tmp_path):
    (tmp_path / "hivekit.toml").write_text('[hive]\nbackend = "fake"\n')
    result = run("plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # listed, but not enabled: the hive is fine
    typo = {r["name"]: r for r in json.loads(result.stdout)}["typo"]
    assert "plugin 'typo' is invalid" in typo["error"] and "agent_badgez" in typo["error"]
    assert typo["hooks"] == []
    (tmp_path / "hivekit.toml").write_text('[hive]\nbackend = "fake"\nenable = ["typo"]\n')
    result = run("plugins", cwd=tmp_path)
    assert result.returncode == 1
    assert "enabled   typo" in result.stdout and "error: plugin 'typo' is invalid" in result.stdout


def test_a_backend_in_enable_is_told_to_use_backend(tmp_path):
    (tmp_path / "hivekit.toml").write_text('[hive]\nbackend = "fake"\nenable = ["process"]\n')
    result = run("config", "check", cwd=tmp_path)
    assert result.returncode == 1
    assert "exactly one backend must be enabled, found fake, process" in result.stderr
    assert ('to run on \'process\', set [hive] backend = "process" and remove \'process\' '
            "from [hive] enable") in result.stderr


def test_a_wrapper_on_a_per_plugin_hook_is_refused(tmp_path):
    import pytest

    from hivekit import config as cfg
    from hivekit import hookimpl, plugins
    from hivekit.errors import PluginError

    class Wrapping:
        @hookimpl(wrapper=True)
        def agent_badges(self, hive, agent):
            return (yield)

    (tmp_path / "hivekit.toml").write_text('[hive]\nbackend = "fake"\n')
    with pytest.raises(PluginError) as err:
        plugins.load(cfg.read(tmp_path / "hivekit.toml"), extra={"wrapping": Wrapping()})
    assert "plugin 'wrapping' is invalid" in str(err.value)
    assert "agent_badges is called plugin by plugin" in str(err.value)
