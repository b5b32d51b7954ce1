"""Unix sockets the hive serves on: the admin socket, and plugins' own (the agents' sockets)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

from hivekit.errors import HiveError
from hivekit.paths import MAX_SOCKET_PATH, private_dir


def bind_unix(path: Path, group: int | None = None) -> socket.socket:
    """A listening Unix socket at ``path`` with mode 0600 from the start (never world-writable).

    With ``group`` (a gid: the operator group), the socket is that group's too, mode 0660, set
    before it is renamed into place.

    The caller holds the state-dir lock, so a leftover socket file is a dead daemon's: removed.
    Safe to call from any thread: the socket is bound inside a fresh private (0700) directory,
    made 0600 and renamed into place, so it is never reachable with looser permissions and the
    process-wide umask, which other threads' files depend on, is left alone.
    """
    # The staging path is <parent>/<8 random characters>/s: it must fit too.
    needed = max(len(os.fsencode(path)), len(os.fsencode(path.parent)) + 11)
    if needed > MAX_SOCKET_PATH:
        raise HiveError(
            f"socket path {path} is too long (binding it takes {needed} bytes; the limit is "
            f"{MAX_SOCKET_PATH}): set [hive] runtime_dir to a shorter path")
    # Private whatever the umask: whoever can write the directory can replace the socket.
    private_dir(path.parent)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = Path(tempfile.mkdtemp(prefix="", dir=path.parent))
    try:
        tmp = staging / "s"
        sock.bind(str(tmp))
        os.chmod(tmp, 0o600)
        sock.listen(128)  # before it appears: a socket file that exists accepts connections
        if group is not None:
            os.chown(tmp, -1, group)
            os.chmod(tmp, 0o660)
        os.rename(tmp, path)
    except BaseException:
        sock.close()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sock
