"""The tmux backend against hivekit's backend contract: every check, on a real daemon."""

from hivekit.testing.conformance import BackendContract


class TestTmux(BackendContract):
    backend = "tmux"
    # A start waits this long for the agent's port: the slow build below outlasts any test.
    config = "[tmux]\nstart_timeout = 600.0\n"

    def slow_files(self, hive, name):
        # A script that never listens on its port: its start waits (start_timeout).
        return {"agent.sh": "sleep 600\n"}

    def crashing_files(self, hive, name):
        # A script that exits at once: its start sees the pane end before the port listens.
        return {"agent.sh": "exit 3\n"}
