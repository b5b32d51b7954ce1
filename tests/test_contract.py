"""The backend contract (hivekit.testing.conformance), run against every bundled backend."""

from __future__ import annotations

import sys
from pathlib import Path

from nixos_standins import STANDINS, Host, write_flake

from hivekit.testing.conformance import AGENTS, BackendContract

sys.path.insert(0, str(STANDINS))
from _standin import parse_env_file  # the stand-ins' own reader of env files


class TestFake(BackendContract):
    backend = "fake"


class TestProcess(BackendContract):
    backend = "process"
    # A start waits this long for the agent's port: the slow build below outlasts any test.
    config = "[process]\nstart_timeout = 600.0\n"

    def slow_files(self, hive, name):
        # A command that never listens on its port: the start waits for it (start_timeout).
        return {"agent.toml": 'command = "sleep"\nargs = ["600"]\n'}

    def crashing_files(self, hive, name):
        # Started without waiting for its port, it exits 3: the build returns, verify sees it.
        return {"agent.toml": 'command = "sh"\nargs = ["-c", "exit 3"]\nwait_for_port = false\n'}


class TestNixosContainer(BackendContract):
    """On the stand-ins for nixos-container and systemctl (tests/standins): every agent builds
    from a host flake naming the suite's agents, as an operator without the meta flake would."""

    backend = "nixos_container"
    # Host is paths only: its table with the suite's "{root}" placeholder left in.
    config = "\n[nixos_container]\n" + Host(Path("{root}") / "host").backend_table(
        "{root}/flake")
    env = {"NIXOS_STANDIN_ROOT": "{root}/host"}

    def prepare(self, root):
        write_flake(root / "flake", root / "h" / "state" / "applied", list(AGENTS))

    def kill(self, hive, name):
        # The container's unit stops behind the hive's back, as when its init dies.
        container = name if name == "manager" else f"h-{name}"
        Host(hive.root.parent / "host").systemctl("stop", f"container@{container}.service")

    def slow_files(self, hive, name):
        # The stand-in's build takes as long as a file it reads says (a real one takes minutes).
        seeded = (hive.state_dir / "agents" / name / "config" / "agent.nix").read_text()
        return {"agent.nix": seeded + "# standin: build-seconds 600\n"}

    def crashing_files(self, hive, name):
        # The agent's service (nix/agent-base.nix) runs `false`: it starts, exits 1, and
        # systemd restarts it (the stand-in's crash-looping unit).
        return {"agent.nix": '{ pkgs, ... }: {\n  hivekit.agent.command = '
                             '[ "${pkgs.coreutils}/bin/false" ];\n}\n'}

    def environ(self, hive, name):
        # What the container's agent service reads (nix/agent-base.nix's EnvironmentFile).
        path = hive.runtime_dir / "agents" / name / "identity.env"
        return parse_env_file(path.read_text()) if path.exists() else None
