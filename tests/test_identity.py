"""The agent's identity environment: one definition (hivekit.identity), and the backends, the
Nix files and the docs that must agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import hivekit_plugins.nixos_container as nc
import pytest
from hivekit_plugins.process import spec

from hivekit import identity
from hivekit.config import read
from hivekit.errors import OperationFailed
from hivekit.hive import Hive
from hivekit.plugins import load

ROOT = Path(__file__).parent.parent


@pytest.fixture
def hive(tmp_path):
    (tmp_path / "hivekit.toml").write_text(
        '[hive]\nbackend = "fake"\nstate_dir = "h"\nruntime_dir = "r"\n'
        'operator_pronouns = "they/them"\ndashboard_port = 7123\n')
    config = read(tmp_path / "hivekit.toml")
    h = Hive(config, load(config))
    yield h
    h.store.close()


def test_on_the_host_every_path_is_the_host_path(hive, tmp_path):
    h, r = tmp_path / "h", tmp_path / "r"
    env = hive.agent_env(hive.agent("coder"))
    assert env == {
        "HIVE_LABEL": "coder", "HIVE_PORT": str(hive.port("coder")),
        "HIVE_SOCKET": f"{r}/agents/coder/hive.sock", "HIVE_DASHBOARD_PORT": "7123",
        "HIVE_OPERATOR_PRONOUNS": "they/them", "HIVE_NOTES": f"{h}/agents/coder/state",
        "HIVE_CREDS": f"{h}/agents/coder/creds", "HIVE_SHARED": f"{h}/shared",
        "HIVE_CONFIG": f"{h}/applied/coder"}
    manager = hive.agent_env(hive.agent("manager"))
    assert manager["HIVE_AGENTS"] == f"{h}/agents"
    assert manager["HIVE_APPLIED"] == f"{h}/applied"
    assert set(manager) == identity.NAMES  # the table is complete for the manager


def test_mounts_say_where_the_agent_sees_its_paths_and_hide_the_rest(hive):
    agent = hive.agent("coder")
    env = hive.agent_env(agent, [(agent.paths.runtime, "/run/hive"),
                                 (agent.paths.state, "/notes"), (hive.paths.shared, "/shared/")])
    assert env["HIVE_SOCKET"] == "/run/hive/hive.sock"
    assert env["HIVE_NOTES"] == "/notes" and env["HIVE_SHARED"] == "/shared"
    assert "HIVE_CREDS" not in env and "HIVE_CONFIG" not in env  # not visible inside
    assert hive.agent_env(agent, ())["HIVE_LABEL"] == "coder"
    assert set(hive.agent_env(agent, ())) == {"HIVE_LABEL", "HIVE_PORT", "HIVE_DASHBOARD_PORT",
                                              "HIVE_OPERATOR_PRONOUNS"}


def test_the_longest_mount_wins():
    mounts = [(Path("/s/agents"), "/agents"), (Path("/s/agents/m/state"), "/state")]
    assert identity.inside(Path("/s/agents/m/state/x"), mounts) == "/state/x"
    assert identity.inside(Path("/s/agents/b/config"), mounts) == "/agents/b/config"
    assert identity.inside(Path("/s/agentsx"), mounts) is None


def test_the_environment_file_quotes_and_refuses_line_breaks():
    text = identity.environment_file({"A": 'she/her "x" \\ y'})
    assert 'A="she/her \\"x\\" \\\\ y"\n' in text
    with pytest.raises(ValueError, match="B holds a control character"):
        identity.environment_file({"B": "two\nlines"})


@pytest.mark.parametrize("name", sorted(identity.NAMES))
def test_an_agents_config_cannot_set_an_identity_variable(name):
    with pytest.raises(OperationFailed, match=f"{name} is set by hivekit"):
        spec.parse(f'command = "python"\n[env]\n{name} = "x"\n')


def test_the_nix_agent_base_reads_the_file_the_container_backend_writes():
    base = (ROOT / "nix" / "agent-base.nix").read_text()
    code = "\n".join(line.split("#")[0] for line in base.splitlines())
    assert re.findall(r"\bHIVE_\w+\s*=", code) == []  # it defines none itself
    assert f'EnvironmentFile = "{nc.RUNTIME_MOUNT}/{nc.IDENTITY_FILE}";' in code
    # Its working directory is HIVE_NOTES as the backend binds it.
    assert f'if cfg.isManager then "{nc.MANAGER_NOTES_MOUNT}" else "/agents/${{cfg.name}}/state"' \
        in code


def test_the_docs_list_every_variable():
    readme = (ROOT / "plugins" / "process" / "README.md").read_text()
    for var in identity.VARIABLES:
        assert f"`{var.name}`" in readme, var.name
