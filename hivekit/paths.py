"""Where things live, all derived from the config (nothing hard-coded to /var/lib)."""

from __future__ import annotations

from pathlib import Path

from attrs import frozen

from hivekit.names import check_name
from hivekit.records import AgentPaths

#: A Unix socket path longer than this cannot be bound (sun_path is 108 bytes with the NUL).
MAX_SOCKET_PATH = 107


@frozen
class Paths:
    state_dir: Path
    runtime_dir: Path

    @property
    def db(self) -> Path:
        return self.state_dir / "hive.db"

    @property
    def lock(self) -> Path:
        """Held (flock) by the running daemon: a second ``serve`` on this state dir is refused."""
        return self.state_dir / "hive.lock"

    @property
    def agents_root(self) -> Path:
        return self.state_dir / "agents"

    @property
    def applied_root(self) -> Path:
        return self.state_dir / "applied"

    @property
    def meta(self) -> Path:
        return self.state_dir / "meta"

    @property
    def shared(self) -> Path:
        return self.state_dir / "shared"

    @property
    def admin_socket(self) -> Path:
        return self.runtime_dir / "admin.sock"

    def agent(self, name: str) -> AgentPaths:
        """An agent's folders. The name is checked here too, where every agent path is made:
        a name that breaks the rule (``..``, ``/``) never becomes a path."""
        root = self.agents_root / check_name(name)
        return AgentPaths(
            config=root / "config",
            state=root / "state",
            creds=root / "creds",
            applied=self.applied_root / name,
            runtime=self.runtime_dir / "agents" / name,
        )
