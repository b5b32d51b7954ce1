"""Bubblewrap: what an agent sees when the hive sandboxes it.

The sandbox is built on an empty root and binds only what an agent needs to run programs, all
read-only:

* the system's programs and libraries: ``/usr`` (and ``/bin``, ``/sbin``, ``/lib*`` as the
  host has them: symlinks into ``/usr`` on a merged-usr system), the Nix store (``/nix``) and
  NixOS's ``/run/current-system`` when present;
* the ``/etc`` essentials (:data:`ETC`: users and groups, name resolution, TLS certificates,
  the dynamic linker's cache, time zone, Debian's alternatives, NixOS's ``/etc/static``), not
  the rest of ``/etc`` (no ``shadow``, no host keys);
* the hive's own Python and hivekit's own packages (:func:`code_paths`: the agent's
  ``python`` and ``hivekit`` are the hive's, wherever they are installed);
* paths the operator adds with ``[process] ro_binds``;

and a fresh ``/dev``, ``/proc``, ``/tmp`` and ``/run``. Nothing else of the host is there: not
``/root``, not ``/home``, not the operator's checkouts or work dirs, not the hive's state (its
``hive.db``, ``admin.sock``, the other agents' notes and creds). Then:

* the agent's applied config repo is bound read-only, its notes and creds read-write at their
  host paths, ``<state_dir>/shared`` read-write at ``/shared`` and its socket dir
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
from collections.abc import Iterable
from pathlib import Path

from hivekit import run

#: Where the agent's socket dir and the shared dir appear inside the sandbox.
RUNTIME_MOUNT = "/run/hive"
SHARED_MOUNT = "/shared"
#: Namespaces and hardening for every sandboxed agent (and the probe).
ISOLATION = ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--cap-drop", "ALL", "--die-with-parent")
#: Top-level system directories, bound (or, as symlinks, recreated) when the host has them.
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/nix")
#: What of /etc an agent's programs need. A symlink (NixOS's /etc is mostly links into
#: /etc/static) is bound as what it points at.
ETC = ("passwd", "group", "hosts", "hostname", "resolv.conf", "nsswitch.conf", "host.conf",
       "gai.conf", "services", "protocols", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
       "localtime", "timezone", "zoneinfo", "ssl", "ca-certificates", "ca-certificates.conf",
       "pki", "alternatives", "mime.types", "os-release", "lsb-release", "debian_version",
       "gitconfig", "static", "nix", "profile", "profile.d", "bash.bashrc", "inputrc",
       "terminfo", "locale.alias", "locale.conf", "default/locale", "npmrc")
#: Of /run, only what NixOS keeps its system profile and DNS stub in.
RUN = ("/run/current-system", "/run/systemd/resolve")


def _system(paths: Iterable[str]) -> list[str]:
    """Bind each existing path read-only at itself; a top-level symlink is recreated as one."""
    args: list[str] = []
    for path in paths:
        if os.path.islink(path) and os.path.dirname(path) == "/":
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def code_paths() -> list[str]:
    """Where the hive's Python and hivekit's own packages are (an editable install's source)."""
    import hivekit_plugins

    import hivekit

    packages = {os.path.dirname(os.path.abspath(m.__file__ or "")) for m in (hivekit,
                                                                             hivekit_plugins)}
    return sorted({sys.prefix, sys.base_prefix, *packages})


def host_view(ro_binds: Iterable[str] = ()) -> list[str]:
    """The system's programs, libraries and /etc essentials, read-only, with fresh /dev,
    /proc, /tmp and /run; ``ro_binds`` (the operator's additions) too."""
    return [
        *_system(SYSTEM),
        "--dir", "/etc", *_system(f"/etc/{name}" for name in ETC),
        "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/run",
        *_system(RUN), *_system(ro_binds),
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
         shared: Path, runtime: Path, extra: list[tuple[str, Path]] = (),
         ro_binds: Iterable[str] = (), new_session: bool = False) -> list[str]:
    """The bubblewrap command line (up to and including ``--``) for one agent.

    :param extra: further ``(bwrap bind option, host path)`` pairs bound at the same path after
        the hive's dirs are hidden (the manager's view of the other agents' repos).
    :param ro_binds: more host paths to bind read-only (``[process] ro_binds``).
    :param new_session: run in a session of its own, without a controlling terminal (so that
        it cannot push input into one): for a ``hivekit exec`` without a terminal of its own.
        Supervised agents need not: they start in a session of their own, and must stay in
        the process group the supervisor signals.
    """
    args = [bwrap, *host_view(ro_binds)]
    # The hive's own Python and code (its `python` and `hivekit` come first on the agent's PATH),
    # wherever they are (a venv in a checkout, installed editable). Bound before the hive's
    # dirs are hidden, so they can never uncover those.
    for path in code_paths():
        args += ["--ro-bind-try", path, path]
    for d in sorted({str(p) for p in hidden}, key=len):  # outer before inner
        args += ["--tmpfs", d]
    for option, host, inside in mounts(applied=applied, notes=notes, creds=creds,
                                       shared=shared, runtime=runtime, extra=extra):
        args += [option, str(host), inside]
    # The skeleton bubblewrap made (/etc, the mount points) read-only too.
    args += ["--remount-ro", "/", *ISOLATION, *(["--new-session"] if new_session else []),
             "--hostname", f"h-{name}", "--chdir", str(notes), "--"]
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
