"""The ``applied`` remote of every proposed repo, naming the applied repo where the manager sees it.

The manager edits each agent's proposed repo (``<state_dir>/agents/<n>/config``) from inside its
own container or sandbox, so ``git fetch applied``, ``git log applied/main`` and ``git show
applied/refs/tags/deployed/<id>`` work only if the remote names the applied repo as the manager
sees it: ``hive.inside(manager, <state_dir>/applied/<n>/.git)`` through the backend's mount
table (``/applied/<n>/.git`` in a NixOS container; the host path for the process backend, whose
sandbox shows the applied repos at their host paths). When the manager sees no applied repo, the
host path is used (what an operator on the host can fetch).

The remote is written when a proposed repo is made, re-pointed whenever an agent comes up (spawn,
rebuild, deploy, start: hook ``agent_started``; for the manager, every agent's, since its mount
table is what they depend on) and, for every agent and tombstone, at startup: a backend's table
may have changed, and so may the repo, which is the manager's to write. A repo whose dir,
``.git`` and config are untouched since hivekit last found its remote right is not read again:
re-pointing costs a deploy no git command unless the manager changed the repo's config.

Because it is the manager's to write, a proposed repo is opened by hivekit's rules
(:func:`hivekit.git.check_proposed`) and its config rewritten without following any link: the
directories are opened one by one from ``<state_dir>/agents`` refusing links, git edits a private
copy of the config, and the result is written into ``.git`` and renamed over the old file.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from hivekit import hookimpl
from hivekit.errors import CommandFailed, OperationFailed
from hivekit.git import check_proposed, config_file

if TYPE_CHECKING:
    from hivekit.hive import Hive
    from hivekit.records import AgentSpec

log = logging.getLogger("hivekit.remotes")

#: The remote's name in every proposed repo.
REMOTE = "applied"
#: Its fetch refspec, as `git remote add` writes it.
FETCH = f"+refs/heads/*:refs/remotes/{REMOTE}/*"


def url_for(hive: Hive, name: str) -> str:
    """The applied repo of ``name`` (its git dir) as the manager sees it."""
    target = hive.agent(name).paths.applied / ".git"
    seen = hive.inside(hive.agent(hive.manager), target)
    return seen if seen is not None else str(target)


def point(hive: Hive, name: str) -> bool:
    """Make the ``applied`` remote of ``name``'s proposed repo name its applied repo as the
    manager sees it; True if it changed. A missing repo, or one hivekit must not touch, is left
    alone (the latter logged).

    :raises OperationFailed: git could not edit the config (the message says why).
    """
    agents = hive.paths.agents_root
    repo = hive.agent(name).paths.config
    if not os.path.lexists(repo):
        return False
    url = url_for(hive, name)
    seen = hive.plugin_state("core-remotes", dict)
    before = _signature(repo)
    if before is not None and seen.get(name) == (url, before):
        return False  # the files hivekit last found right are untouched (a deploy's case)
    seen.pop(name, None)
    dirs = _dirs_signature(repo)  # before anything is read: a later change shows as a change
    why = check_proposed(repo, agents)
    if why is not None:
        log.warning("not pointing %s's %s remote: %s", name, REMOTE, why)
        return False
    changed, config = _set_url(agents, (*repo.relative_to(agents).parts, ".git"), url)
    if dirs is not None:
        # The config as read (or as written): a write by the manager after that read is seen
        # by the next call, never taken for the version found right.
        seen[name] = (url, (*dirs, *_file_signature(config)))
    return changed


def _signature(repo: Path) -> tuple[int, ...] | None:
    """What changes whenever the repo dir or its ``.git`` is replaced (their device and inode,
    links not followed) or its config is replaced or written (its inode, mode, size and mtime
    too); None if one is missing.

    Git writes a config through a lock file renamed over it (a new inode), an editor at least
    moves its mtime: either way the next :func:`point` checks the repo again. (The dirs' own
    mtimes move with every commit, so they are not part of it.)
    """
    dirs = _dirs_signature(repo)
    try:
        config = os.lstat(repo / ".git" / "config")
    except OSError:
        return None
    return None if dirs is None else (*dirs, *_file_signature(config))


def _dirs_signature(repo: Path) -> tuple[int, ...] | None:
    out: list[int] = []
    try:
        for path in (repo, repo / ".git"):
            st = os.lstat(path)
            out += (st.st_dev, st.st_ino, st.st_mode)
    except OSError:
        return None
    return tuple(out)


def _file_signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns)


def point_all(hive: Hive) -> int:
    """:func:`point` for every agent and tombstone with a proposed repo; how many changed.
    A failure is logged and the others go on."""
    try:
        names = sorted(e.name for e in os.scandir(hive.paths.agents_root) if e.is_dir(
            follow_symlinks=False))
    except FileNotFoundError:
        return 0
    changed = 0
    for name in names:
        if hive.stopping.is_set():
            break
        try:
            changed += point(hive, name)
        except Exception as exc:
            log.warning("could not point %s's %s remote: %s", name, REMOTE, exc)
    return changed


def _open_dir(root: Path, parts: tuple[str, ...]) -> int:
    """A descriptor of ``root/parts...``, each component opened refusing links."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags)
    try:
        for part in parts:
            nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _git_config(path: Path, *args: str) -> str | None:
    """``git config --file path ARGS``; None when a ``--get`` finds nothing (exit 1)."""
    try:
        return config_file(path, *args).strip()
    except CommandFailed as exc:
        if exc.exit_code == 1 and "--get" in args:
            return None
        raise OperationFailed(f"git could not edit a proposed repo's config: "
                              f"{exc.stderr_tail.strip()}") from None


def _set_url(root: Path, parts: tuple[str, ...], url: str) -> tuple[bool, os.stat_result]:
    """Point the remote of the config in ``root/parts``; whether it changed, and the stat of
    the config file it read (unchanged) or wrote."""
    git_dir = _open_dir(root, parts)
    try:
        try:
            fd = os.open("config", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=git_dir)
        except FileNotFoundError:
            old, mode, read = b"", 0o644, None
        else:
            with os.fdopen(fd, "rb") as f:
                read = os.fstat(f.fileno())
                old, mode = f.read(), read.st_mode & 0o777
        with tempfile.TemporaryDirectory(prefix="hivekit-remote-") as tmp:
            copy = Path(tmp) / "config"
            copy.write_bytes(old)
            if read is not None and _git_config(copy, "--get", f"remote.{REMOTE}.url") == url:
                return False, read
            _git_config(copy, f"remote.{REMOTE}.url", url)
            if _git_config(copy, "--get", f"remote.{REMOTE}.fetch") is None:
                _git_config(copy, f"remote.{REMOTE}.fetch", FETCH)
            new = copy.read_bytes()
        staging = f".config.hivekit-{os.getpid()}-{threading.get_ident()}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=git_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(new)
                f.flush()
                written = os.fstat(f.fileno())
            os.replace(staging, "config", src_dir_fd=git_dir, dst_dir_fd=git_dir)
        except BaseException:
            os.unlink(staging, dir_fd=git_dir)
            raise
        return True, written
    finally:
        os.close(git_dir)


class Remotes:
    """The core's plugin ``core-remotes``: re-points the remotes whenever they may be stale."""

    @hookimpl
    def startup(self, hive: Hive) -> None:
        def run_all() -> None:
            changed = point_all(hive)
            if changed:
                log.info("re-pointed the %s remote of %d proposed repo(s) at the applied repos "
                         "as the manager sees them", REMOTE, changed)

        threading.Thread(target=run_all, name="remotes", daemon=True).start()

    @hookimpl
    def agent_started(self, hive: Hive, agent: AgentSpec, reason: str) -> None:
        if agent.is_manager:
            point_all(hive)  # its mount table is what every remote depends on
        else:
            point(hive, agent.name)
