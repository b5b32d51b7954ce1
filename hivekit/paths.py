"""Where things live, all derived from the config (nothing hard-coded to /var/lib)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from attrs import frozen

from hivekit.errors import HiveError
from hivekit.names import check_name
from hivekit.records import AgentPaths

#: A Unix socket path longer than this cannot be bound (sun_path is 108 bytes with the NUL).
MAX_SOCKET_PATH = 107
#: The most a directory of the hive may allow: its owner everything, its group (an operator
#: group, see the README) to look, others nothing.
DIR_MODE_MAX = 0o750

log = logging.getLogger("hivekit")


def private_dir(path: Path) -> Path:
    """Make ``path`` a directory only its owner can use, whatever the umask.

    Every missing component is created with mode 0700 (``chmod`` after ``mkdir``: the umask may
    be 000). An existing directory keeps what :data:`DIR_MODE_MAX` allows: an operator may
    give a group read access (0750); write access for the group, and any access for others, is
    taken away (said in the log).
    """
    path = Path(path)
    missing = []
    here = path
    while not here.exists():
        missing.append(here)
        here = here.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:  # made by another thread meanwhile: checked below
            continue
        os.chmod(d, 0o700)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & ~DIR_MODE_MAX:
        os.chmod(path, mode & DIR_MODE_MAX)
        log.warning("%s was open to others (mode %o); set to %o", path, mode,
                    mode & DIR_MODE_MAX)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` if missing, and make it readable and writable by its owner only.

    :raises HiveError: it cannot be opened as a file of its own (a link is not followed).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise HiveError(f"{path}: cannot open it as a file of the hive's own ({exc.strerror}); "
                        "hivekit does not follow a link there") from None
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


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
