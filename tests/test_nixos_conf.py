"""The nixos_container backend's pure parts: the conf rewrite, the drop-in, its config table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hivekit_plugins.nixos_container.conf import (
    Bind,
    UnsafePath,
    limits_dropin,
    rewrite,
    write_if_changed,
)
from hivekit_plugins.nixos_container.config import NixosContainerConfig

from hivekit.config import structure_table

# As `nixos-container create h-coder --flake /srv/meta#coder` writes it (nixos-container.pl).
CREATED = """\
PRIVATE_NETWORK=1
HOST_ADDRESS=10.233.1.1
LOCAL_ADDRESS=10.233.1.2
HOST_BRIDGE=
HOST_PORT=
AUTO_START=0
FLAKE=/srv/meta
"""

AGENT_BINDS = [
    Bind(Path("/var/lib/hivekit/run/agents/coder"), "/run/hive"),
    Bind(Path("/var/lib/hivekit/agents/coder/creds"), "/root/.claude"),
    Bind(Path("/var/lib/hivekit/agents/coder/state"), "/agents/coder/state"),
    Bind(Path("/var/lib/hivekit/shared"), "/shared"),
]

GOLDEN_AGENT = """\
HOST_PORT=
AUTO_START=0
FLAKE=/srv/meta
PRIVATE_NETWORK=0
HOST_ADDRESS=
LOCAL_ADDRESS=
HOST_ADDRESS6=
LOCAL_ADDRESS6=
HOST_BRIDGE=
EXTRA_NSPAWN_FLAGS="--bind=/var/lib/hivekit/run/agents/coder:/run/hive \
--bind=/var/lib/hivekit/agents/coder/creds:/root/.claude \
--bind=/var/lib/hivekit/agents/coder/state:/agents/coder/state \
--bind=/var/lib/hivekit/shared:/shared"
"""


def test_rewrite_of_a_created_conf_is_the_golden_file():
    assert rewrite(CREATED, AGENT_BINDS, "h-coder") == GOLDEN_AGENT


def test_a_second_rewrite_changes_nothing():
    once = rewrite(CREATED, AGENT_BINDS, "h-coder")
    assert rewrite(once, AGENT_BINDS, "h-coder") == once


def test_unknown_keys_and_comments_are_kept_in_order_and_owned_ones_replaced():
    conf = """\
# operator's note
PRIVATE_NETWORK=1
SYSTEM_PATH=/nix/var/nix/profiles/system
  HOST_ADDRESS6=fc00::1
LOCAL_MAC_ADDRESS=
EXTRA_NSPAWN_FLAGS="--bind=/old:/old"
export HOST_BRIDGE=br0
AUTO_START=1
"""
    binds = [Bind(Path("/m/agents"), "/agents"), Bind(Path("/m/applied"), "/applied", True)]
    assert rewrite(conf, binds, "manager") == """\
# operator's note
SYSTEM_PATH=/nix/var/nix/profiles/system
LOCAL_MAC_ADDRESS=
AUTO_START=1
PRIVATE_NETWORK=0
HOST_ADDRESS=
LOCAL_ADDRESS=
HOST_ADDRESS6=
LOCAL_ADDRESS6=
HOST_BRIDGE=
EXTRA_NSPAWN_FLAGS="--bind=/m/agents:/agents --bind-ro=/m/applied:/applied"
"""


@pytest.mark.parametrize(("path", "why"), [
    ("/var/lib/my hive/shared", "contains whitespace"),
    ('/var/lib/hive"x/shared', "contains a double quote"),
    ("/var/lib/hive'x/shared", "contains a single quote"),
    ("/var/lib/hive:x/shared", "contains a ':'"),
    ("/var/lib/hive*/shared", "contains a '*'"),
    ("/var/lib/hive\tx", "contains whitespace"),
    ("relative/shared", "is not absolute"),
])
def test_a_bind_path_nspawn_would_split_is_refused(tmp_path, path, why):
    conf = tmp_path / "h-coder.conf"
    conf.write_text(CREATED)
    binds = [*AGENT_BINDS[:3], Bind(Path(path), "/shared")]
    with pytest.raises(UnsafePath) as err:
        new = rewrite(conf.read_text(), binds, "h-coder")
        write_if_changed(conf, new)
    message = str(err.value)
    assert repr(path) in message and why in message and "h-coder" in message
    assert "nothing was changed" in message
    assert conf.read_text() == CREATED


def test_limits_dropin():
    assert limits_dropin("2G", "50%").endswith("[Service]\nMemoryMax=2G\nCPUQuota=50%\n")


def test_write_if_changed(tmp_path):
    path = tmp_path / "d" / "x.conf"
    assert write_if_changed(path, "a\n", mode=0o644)
    assert not write_if_changed(path, "a\n")
    assert write_if_changed(path, "b\n")
    assert path.read_text() == "b\n"
    assert [p.name for p in path.parent.iterdir()] == ["x.conf"]


# --- the config table ------------------------------------------------------------------------


def structure(raw):
    problems: list[str] = []
    value = structure_table(NixosContainerConfig, raw, "nixos_container", "hivekit.toml",
                            problems)
    return value, problems


def test_defaults_and_overrides():
    cfg, problems = structure({"cpu_quota": "100%", "agents": {"coder": {"memory_max": "4G"}}})
    assert problems == []
    assert (cfg.memory_max_of("coder"), cfg.cpu_quota_of("coder")) == ("4G", "100%")
    assert (cfg.memory_max_of("other"), cfg.cpu_quota_of("other")) == ("2G", "100%")
    default, _ = structure({})
    assert (default.memory_max, default.cpu_quota) == ("2G", "50%")
    assert default.containers_conf_dir == Path("/etc/nixos-containers")
    assert default.systemd_run_dir == Path("/run/systemd/system")
    for ok in ("512M", "1.5G", "25%", "infinity", "1073741824"):
        assert structure({"memory_max": ok})[1] == []
    for ok in ("200%", "12.5%", ""):
        assert structure({"cpu_quota": ok})[1] == []


@pytest.mark.parametrize(("raw", "expected"), [
    ({"memory_max": "lots"}, "[nixos_container] memory_max: 'lots' is not a systemd MemoryMax="),
    ({"memory_max": "0"}, "memory_max: '0' leaves the container no memory"),
    ({"memory_max": "2 G"}, "memory_max: '2 G' is not a systemd MemoryMax="),
    ({"cpu_quota": "50"}, "cpu_quota: '50' is not a systemd CPUQuota= value"),
    ({"cpu_quota": "0%"}, "cpu_quota: '0%' would never let the container run"),
    ({"agents": {"coder": {"cpu_quota": "fast"}}},
     "[nixos_container] agents.coder.cpu_quota: 'fast' is not a systemd CPUQuota="),
    ({"agents": {"Coder": {}}}, "agents: 'Coder' is not an agent name"),
    ({"agents": {"coder": {"memroy_max": "1G"}}}, "agents.coder.memroy_max: unknown key"),
    ({"flake": "/srv/meta#coder"}, "give the flake without '#attribute'"),
    ({"flake": "./meta"}, "use an absolute path"),
    ({"timeout": 0}, "timeout: must be positive"),
    ({"memory_max": 5}, "memory_max: expected a string, got the integer 5"),
])
def test_bad_values_are_refused_naming_the_key(raw, expected):
    value, problems = structure(raw)
    assert value is None
    assert len(problems) == 1
    assert problems[0].startswith("hivekit.toml: [nixos_container]")
    assert expected in problems[0]


def test_config_check_refuses_a_bad_limit(short_tmp):
    config = short_tmp / "hivekit.toml"
    config.write_text('[hive]\nbackend = "nixos_container"\n\n[nixos_container]\n'
                      'memory_max = "lots"\n')
    r = subprocess.run([sys.executable, "-m", "hivekit", "--config", str(config), "config",
                        "check"], capture_output=True, text=True, cwd=short_tmp)
    assert r.returncode == 1
    assert "[nixos_container] memory_max: 'lots' is not a systemd MemoryMax= value" in r.stderr
    assert "Traceback" not in r.stderr
