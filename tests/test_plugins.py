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
    assert example["hooks"] == ["agent_badges", "config_schema", "register_commands",
                                "state_extras"]
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
