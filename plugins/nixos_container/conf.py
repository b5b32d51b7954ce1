"""The container's conf file (``<containers_conf_dir>/<c>.conf``) and its resource-limit drop-in.

``nixos-container create`` writes the conf with a private network (``PRIVATE_NETWORK=1`` and a
10.233.x.y address pair). hivekit's agents serve their web UI on the host's network instead, and
need their sockets, credentials and notes bound in, so the keys below are hivekit's: every line
setting one of them is dropped and hivekit's values appended; every other line is kept as it
was, in order. Rewriting twice gives the same file.

The container unit reads the conf as a systemd ``EnvironmentFile`` and its start script expands
``$EXTRA_NSPAWN_FLAGS`` *unquoted* into the ``systemd-nspawn`` command line, where bash splits it
on whitespace and expands globs, and nspawn splits each ``--bind=`` on ``:``. A bind path that
holds any of those characters cannot be written correctly, so it is refused, never written.
"""

from __future__ import annotations

import os
from pathlib import Path

from attrs import frozen

from hivekit import HiveError

#: The keys hivekit sets, in the order it writes them.
OWNED = ("PRIVATE_NETWORK", "HOST_ADDRESS", "LOCAL_ADDRESS", "HOST_ADDRESS6", "LOCAL_ADDRESS6",
         "HOST_BRIDGE", "EXTRA_NSPAWN_FLAGS")
#: Host networking: no private netns, and no address, which would make the start script add
#: ``--network-veth`` (a private netns again).
NETWORK = ("PRIVATE_NETWORK=0", "HOST_ADDRESS=", "LOCAL_ADDRESS=", "HOST_ADDRESS6=",
           "LOCAL_ADDRESS6=", "HOST_BRIDGE=")

#: The drop-in's file name under ``container@<c>.service.d/``.
LIMITS_FILE = "hivekit-limits.conf"

_UNSAFE = {
    '"': "a double quote", "'": "a single quote", "\\": "a backslash", ":": "a ':'",
    "$": "a '$'", "`": "a backquote", "*": "a '*'", "?": "a '?'", "[": "a '['",
}


class UnsafePath(HiveError):
    """A bind path that cannot be passed through ``EXTRA_NSPAWN_FLAGS``."""

    status = 400


@frozen
class Bind:
    """One ``--bind``/``--bind-ro`` of a host directory into the container."""

    source: Path
    target: str
    read_only: bool = False

    @property
    def flag(self) -> str:
        return f"--bind{'-ro' if self.read_only else ''}={self.source}:{self.target}"


def unsafe_reason(path: str) -> str | None:
    """Why ``path`` cannot go into ``EXTRA_NSPAWN_FLAGS`` (None if it can)."""
    if not path.startswith("/"):
        return "is not absolute"
    for char in path:
        if char.isspace():
            return "contains whitespace"
        if ord(char) < 32 or ord(char) == 127:
            return "contains a control character"
        if char in _UNSAFE:
            return f"contains {_UNSAFE[char]}"
    return None


def check_path(path: Path | str, container: str, what: str = "bind path") -> None:
    """Raise :class:`UnsafePath` naming the path and the fix if ``path`` cannot be bound."""
    reason = unsafe_reason(str(path))
    if reason:
        raise UnsafePath(
            f"cannot bind {str(path)!r} into container {container}: the {what} {reason}. "
            "nixos-container hands EXTRA_NSPAWN_FLAGS to systemd-nspawn unquoted, so the "
            "path would be split or mangled. Move the hive to an absolute path without "
            "whitespace, quotes, ':', '\\', '$', '`', '*', '?' or '[' ([hive] state_dir "
            "and runtime_dir) and retry; nothing was changed.")


def nspawn_flags(binds: list[Bind], container: str) -> str:
    for bind in binds:
        check_path(bind.source, container)
        check_path(bind.target, container, "mount point")
    return " ".join(bind.flag for bind in binds)


def _key(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped[0] in "#;" or "=" not in stripped:
        return None
    key = stripped.split("=", 1)[0].strip()
    return key.removeprefix("export ").strip()


def rewrite(text: str, binds: list[Bind], container: str) -> str:
    """The conf ``text`` with hivekit's keys set; every other line kept, in order.

    :raises UnsafePath: a bind path cannot be written (then nothing should be written).
    """
    flags = nspawn_flags(binds, container)
    kept = [line for line in text.splitlines() if _key(line) not in OWNED]
    return "\n".join([*kept, *NETWORK, f'EXTRA_NSPAWN_FLAGS="{flags}"']) + "\n"


def limits_dropin(memory_max: str, cpu_quota: str) -> str:
    return ("# Written by hivekit (nixos_container plugin); rewritten at every spawn, rebuild "
            "and start.\n"
            f"[Service]\nMemoryMax={memory_max}\nCPUQuota={cpu_quota}\n")


def write_if_changed(path: Path, content: str, mode: int | None = None) -> bool:
    """Write ``content`` atomically unless ``path`` holds it already; True if written."""
    try:
        if path.read_text() == content:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.hivekit-tmp")
    tmp.write_text(content)
    if mode is not None:
        os.chmod(tmp, mode)
    elif path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
    return True
