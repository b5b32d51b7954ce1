"""Bubblewrap: what an agent sees when the hive sandboxes it.

The sandbox is built on an empty root: every top-level host directory is bound read-only (so
the host's programs and libraries work as they are), with a fresh ``/dev``, ``/proc``, ``/tmp``
and ``/run`` (``/run``'s host entries bound read-only again, since on NixOS the system profile
lives there), then:

* the hive's own state and runtime dirs are covered by empty tmpfs, which hides every other
  agent's notes and creds, ``hive.db`` and ``admin.sock``;
* the agent's applied config repo is bound back read-only, its notes and creds read-write at
  their host paths, ``<state_dir>/shared`` read-write at ``/shared`` and its socket dir
  ``<runtime_dir>/agents/<n>`` at ``/run/hive``;
* the manager, whose work is editing the other agents' configs, also gets ``<state_dir>/agents``
  read-write (every agent's proposed repo, and with it their notes and creds, as the reference
  daemon's manager had) and ``<state_dir>/applied`` and ``<state_dir>/meta`` read-only, all at
  their host paths, so the ``applied`` remote of each proposed repo resolves;
* it gets its own pid, IPC, UTS (hostname ``h-<name>``) and cgroup namespaces, no capabilities
  (``--cap-drop ALL``: a hive run as root does not hand root's capabilities to its agents) and
  ``--die-with-parent``. The network is the host's: the agent serves its page on HIVE_PORT.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from hivekit import run

#: Where the agent's socket dir and the shared dir appear inside the sandbox.
RUNTIME_MOUNT = "/run/hive"
SHARED_MOUNT = "/shared"
#: Top-level host entries the sandbox makes fresh (or, for /shared, its own) instead of binding.
_FRESH = frozenset({"proc", "dev", "tmp", "run", "shared"})
#: Namespaces and hardening for every sandboxed agent (and the probe).
ISOLATION = ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--cap-drop", "ALL", "--die-with-parent")


def _bind_children(root: str, skip: frozenset[str]) -> list[str]:
    """Bind every entry of host dir ``root`` read-only at the same path (symlinks recreated)."""
    args: list[str] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return args
    for entry in entries:
        if entry.name in skip:
            continue
        path = os.path.join(root, entry.name)
        if entry.is_symlink():
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind", path, path]
    return args


def code_paths() -> list[str]:
    """Where the hive's Python and hivekit's own packages are (an editable install's source)."""
    import hivekit_plugins

    import hivekit

    packages = {os.path.dirname(os.path.abspath(m.__file__ or "")) for m in (hivekit,
                                                                             hivekit_plugins)}
    return sorted({sys.prefix, sys.base_prefix, *packages})


def host_view() -> list[str]:
    """The host, read-only, with fresh /dev, /proc, /tmp and /run."""
    return [
        *_bind_children("/", _FRESH),
        "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/run",
        *_bind_children("/run", frozenset({"hive"})),
    ]


def mounts(*, applied: Path, notes: Path, creds: Path, shared: Path, runtime: Path,
           extra: list[tuple[str, Path]] = ()) -> list[tuple[str, Path, str]]:
    """What the sandbox shows of the hive, as ``(bwrap bind option, host path, path inside)``:
    the agent's own dirs, ``extra`` (the manager's view of the other agents' repos), all at
    their host paths, and the shared and socket dirs at ``/shared`` and ``/run/hive``. The
    agent's identity environment gives its paths through the same table."""
    return [
        *((option, path, str(path)) for option, path in extra),
        ("--ro-bind", applied, str(applied)),
        ("--bind", notes, str(notes)),
        ("--bind", creds, str(creds)),
        ("--bind", shared, SHARED_MOUNT),
        ("--bind", runtime, RUNTIME_MOUNT),
    ]


def argv(bwrap: str, *, name: str, hidden: list[Path], applied: Path, notes: Path, creds: Path,
         shared: Path, runtime: Path, extra: list[tuple[str, Path]] = ()) -> list[str]:
    """The bubblewrap command line (up to and including ``--``) for one agent.

    :param extra: further ``(bwrap bind option, host path)`` pairs bound at the same path after
        the hive's dirs are hidden (the manager's view of the other agents' repos).
    """
    args = [bwrap, *host_view()]
    # The hive's own Python and code (its `python` and `hivekit` come first on the agent's PATH),
    # in case they live somewhere the sandbox covers, such as /tmp (a checkout there, installed
    # editable). Bound before the hive's dirs are hidden, so they can never uncover those.
    for path in code_paths():
        args += ["--ro-bind-try", path, path]
    for d in sorted({str(p) for p in hidden}, key=len):  # outer before inner
        args += ["--tmpfs", d]
    for option, host, inside in mounts(applied=applied, notes=notes, creds=creds,
                                       shared=shared, runtime=runtime, extra=extra):
        args += [option, str(host), inside]
    args += [*ISOLATION, "--hostname", f"h-{name}", "--chdir", str(notes), "--"]
    return args


def probe(bwrap: str) -> str | None:
    """Whether bubblewrap can run here: None if it can, else why not (for the warning).

    Runs a trivial program under the same host view and isolation agents get, so a kernel
    that forbids user namespaces, a seccomp filter or a missing program shows up at start.
    """
    program = shutil.which(bwrap)
    if program is None:
        return f"{bwrap!r} was not found on PATH (install bubblewrap)"
    true = shutil.which("true") or "/bin/true"
    try:
        run([program, *host_view(), *ISOLATION, "--", true], timeout=30)
    except Exception as exc:
        return str(exc)
    return None
