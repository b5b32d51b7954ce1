"""Git, the audit trail: every call through one baked command with a fixed identity.

The host user's git config is never read (``GIT_CONFIG_GLOBAL=/dev/null``, no system config), so
commits and tags look the same on every machine and no hook or alias of the operator's runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from hivekit.errors import CommandFailed
from hivekit.proc import run

IDENTITY = {"name": "hivekit", "email": "hivekit@localhost"}
TIMEOUT = 60.0


def _env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": IDENTITY["name"],
        "GIT_AUTHOR_EMAIL": IDENTITY["email"],
        "GIT_COMMITTER_NAME": IDENTITY["name"],
        "GIT_COMMITTER_EMAIL": IDENTITY["email"],
    }


_ENV = _env()


class Repo:
    """One git repository (worktree or bare) at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = TIMEOUT) -> str:
        """Run ``git -C <path> <args>``; raises :class:`CommandFailed` with stderr's tail."""
        return run(["git", "--no-pager", "-C", str(self.path), *args], env=_ENV,
                   timeout=timeout, stdin=stdin)

    # --- reading -------------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.path / ".git").exists() or (self.path / "HEAD").is_file()

    def rev(self, ref: str) -> str | None:
        """The full sha ``ref`` names (peeled to a commit), or None if it names nothing."""
        try:
            return self("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip() or None
        except CommandFailed:
            return None

    def ref(self, name: str) -> str | None:
        """The sha a full ref name (``refs/heads/main``, ``refs/tags/x``) holds, read from the
        repo's files: no subprocess. For an annotated tag, the tag object's sha."""
        return read_ref(self.path, name)

    def has_tag(self, tag: str) -> bool:
        return self.ref(f"refs/tags/{tag}") is not None

    def tag_message(self, tag: str) -> str:
        """The body of an annotated tag."""
        return self("tag", "-l", "--format=%(contents)", tag).rstrip("\n")

    def diff(self, a: str, b: str) -> str:
        return self("diff", "--no-color", "--no-ext-diff", f"{a}..{b}")

    # --- writing -------------------------------------------------------------------------------

    def init(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self("init", "--quiet", "--initial-branch=main")

    def commit_all(self, message: str) -> str:
        self("add", "--all")
        self("commit", "--quiet", "--allow-empty", "-m", message)
        sha = self.rev("HEAD")
        assert sha is not None
        return sha

    def fetch(self, source: Path | str, refspec: str) -> None:
        self("fetch", "--quiet", "--no-tags", str(source), refspec)

    def tag(self, name: str, target: str, message: str | None = None) -> None:
        """Tag ``target``; annotated when ``message`` is given (it may be empty)."""
        if message is None:
            self("tag", name, target)
        else:
            self("tag", "--annotate", "--cleanup=verbatim", "-F", "-", name, target,
                 stdin=message)

    def create_refs(self, refs: dict[str, str]) -> None:
        """Create several refs in one atomic transaction; fails if any of them exists."""
        lines = "".join(f"create {name} {sha}\n" for name, sha in refs.items())
        self("update-ref", "--stdin", stdin=f"start\n{lines}prepare\ncommit\n")

    def update_ref(self, ref: str, sha: str) -> None:
        self("update-ref", ref, sha)

    def sync_worktree(self, ref: str = "refs/heads/main") -> None:
        """Make the index and working tree match ``ref`` without moving HEAD."""
        self("read-tree", "--reset", "-u", ref)


def read_ref(repo: Path, ref: str = "refs/heads/main") -> str | None:
    """The sha of ``ref`` read straight from the repo's files (no subprocess: used per agent on
    every state snapshot). Loose ref first, then ``packed-refs``; None if absent."""
    gitdir = repo / ".git"
    if not gitdir.is_dir():
        gitdir = repo
    try:
        return (gitdir / ref).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        pass
    try:
        packed = (gitdir / "packed-refs").read_text()
    except FileNotFoundError:
        return None
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref:
            return sha
    return None
