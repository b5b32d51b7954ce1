"""Git, the audit trail: every call through one baked command with a fixed identity.

Every call names its repository explicitly (``--git-dir``/``--work-tree``: no discovery, no
gitfile followed), runs in a fixed environment (nothing of the caller's ``GIT_*``, no system or
global config, hivekit's identity) with hooks, fsmonitor and external diff/textconv drivers off,
so commits and tags look the same on every machine and nothing of the operator's or of a repo's
own config runs.

The proposed repos are written by the manager, an AI agent: :func:`check_proposed` opens one
only by hivekit's rules before anything reads it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hivekit.errors import CommandFailed
from hivekit.proc import run, run_head

IDENTITY = {"name": "hivekit", "email": "hivekit@localhost"}
TIMEOUT = 60.0

#: Settings every git call runs with, whatever the repository's own config says.
OVERRIDES = ("core.hooksPath=/dev/null", "core.fsmonitor=false", "core.untrackedCache=false",
             "protocol.allow=never", "protocol.file.allow=always", "submodule.recurse=false",
             "fetch.recurseSubmodules=false")


def _env() -> dict[str, str]:
    # The whole environment: nothing of the caller's (GIT_DIR, GIT_CONFIG_PARAMETERS,
    # GIT_EXTERNAL_DIFF, GIT_SSH...) reaches git.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": IDENTITY["name"],
        "GIT_AUTHOR_EMAIL": IDENTITY["email"],
        "GIT_COMMITTER_NAME": IDENTITY["name"],
        "GIT_COMMITTER_EMAIL": IDENTITY["email"],
    }


_ENV = _env()
_CONFIG_ARGS = [arg for item in OVERRIDES for arg in ("-c", item)]


class Repo:
    """One git repository with a working tree at ``path`` (its git dir is ``path/.git``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def git_dir(self) -> Path:
        return self.path / ".git"

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = TIMEOUT) -> str:
        """Run git on this repository; raises :class:`CommandFailed` with stderr's tail."""
        return run(self._argv(*args), env=_ENV, timeout=timeout, stdin=stdin)

    def _argv(self, *args: str) -> list[str]:
        return ["git", "--no-pager", f"--git-dir={self.git_dir}", f"--work-tree={self.path}",
                *_CONFIG_ARGS, *args]

    # --- reading -------------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether ``path/.git`` is a directory (a link or a gitfile does not count)."""
        try:
            return stat.S_ISDIR(os.lstat(self.git_dir).st_mode)
        except OSError:
            return False


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

    def diff(self, a: str, b: str, limit: int) -> tuple[bytes, int]:
        """The first ``limit`` bytes of ``git diff a..b`` and the whole diff's size in bytes
        (the rest is counted, never held in memory)."""
        return run_head(self._argv("diff", "--no-color", "--no-ext-diff", "--no-textconv",
                                   f"{a}..{b}"), limit, env=_ENV, timeout=TIMEOUT)

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
        """Fetch ``refspec`` from the repository at ``source`` (give a git dir: no discovery).
        The source side (upload-pack) reads the source's own config: check it first
        (:func:`check_proposed`)."""
        self("fetch", "--quiet", "--no-tags", "--no-recurse-submodules", str(source), refspec)

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


def config_file(path: Path, *args: str) -> str:
    """``git config --file <path> ARGS`` with hivekit's fixed environment: a config file read or
    edited by git's own parser, outside any repository.

    :raises CommandFailed: git's exit code and message (1 for a ``--get`` that finds nothing).
    """
    return run(["git", "config", "--file", str(path), *args], env=_ENV, timeout=TIMEOUT)


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


# --- opening a repository the manager writes ---------------------------------------------------

#: Config sections of a proposed repo that only ever affect the manager's own git commands
#: (remotes, branches, its identity, display): accepted. Anything else in its config is refused,
#: because git would act on it when hivekit reads the repo, or upload-pack would when hivekit
#: fetches from it (``include.path``, ``core.worktree``, ``core.fsmonitor``,
#: ``core.alternateRefsCommand``, ``uploadpack.*``, ``extensions.*``...).
SAFE_SECTIONS = frozenset({"remote", "branch", "user", "init", "advice", "color", "log", "pull",
                           "push", "status", "commit", "tag", "fetch", "gc", "i18n", "column",
                           "help"})
#: The ``core`` keys a proposed repo may set (what ``git init`` writes, and display settings).
SAFE_CORE = frozenset({"repositoryformatversion", "filemode", "bare", "logallrefupdates",
                       "ignorecase", "precomposeunicode", "symlinks", "autocrlf", "eol",
                       "safecrlf", "quotepath", "abbrev", "editor", "pager", "whitespace",
                       "commentchar"})


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def check_proposed(repo: Path, folder: Path) -> str | None:
    """Why hivekit must not read the repository at ``repo``, or None when it may. ``folder`` is
    hivekit's own directory the repo lies under (``<state_dir>/agents``).

    It may when every directory below ``folder`` down to ``repo/.git`` is a real directory (no
    link anywhere), ``.git`` is a directory (not a gitfile), nothing inside ``.git`` is a link
    or a special file, it borrows no objects (``objects/info/alternates``), is no worktree of
    another repository (``commondir``), and its config sets only keys that affect the manager's
    own commands (:data:`SAFE_SECTIONS`, :data:`SAFE_CORE`).
    """
    rel = repo.relative_to(folder)
    here = folder
    for part in ("", *rel.parts):
        here = here / part if part else here
        st = _lstat(here)
        if st is None:
            return f"its proposed repo is missing ({here} does not exist)"
        if stat.S_ISLNK(st.st_mode):
            return f"its proposed repo's folder {here.name} is a link to another place"
        if not stat.S_ISDIR(st.st_mode):
            return f"its proposed repo's folder {here.name} is not a directory"
    git_dir = repo / ".git"
    st = _lstat(git_dir)
    if st is None:
        return "its proposed repo has no .git directory"
    if stat.S_ISLNK(st.st_mode):
        return "its proposed repo's .git is a link to another place"
    if stat.S_ISREG(st.st_mode):
        return "its proposed repo's .git is a file pointing to another place (a gitfile)"
    if not stat.S_ISDIR(st.st_mode):
        return "its proposed repo's .git is not a directory"
    for name in ("commondir", "objects/info/alternates", "objects/info/http-alternates"):
        if _lstat(git_dir / name) is not None:
            return (f"its proposed repo's .git/{name} makes git read another repository's "
                    "objects")
    found = _links_or_specials(git_dir)
    if found is not None:
        return found
    return _unsafe_config(git_dir / "config")


def _links_or_specials(git_dir: Path) -> str | None:
    # Runs on every request and deploy over every file of .git: plain strings and scandir's
    # own answers, a Path only for the message.
    stack = [str(git_dir)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    return (f"its proposed repo's {_below(entry.path, git_dir)} is a link to "
                            "another place")
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif not entry.is_file(follow_symlinks=False):
                    return (f"its proposed repo's {_below(entry.path, git_dir)} is not a "
                            "regular file")
    return None


def _below(path: str, git_dir: Path) -> Path:
    return Path(path).relative_to(git_dir.parent)


def _unsafe_config(config: Path) -> str | None:
    if _lstat(config) is None:
        return None
    try:
        # git's own parser; --no-includes: an include is reported, never followed.
        names = config_file(config, "--no-includes", "--name-only", "--list").split("\n")
    except CommandFailed as exc:
        return f"its proposed repo's config cannot be read by git ({exc.stderr_tail.strip()})"
    for name in filter(None, names):
        section, _, rest = name.partition(".")
        key = rest.rpartition(".")[2]
        if section == "core" and key in SAFE_CORE and "." not in rest:
            continue
        if section in SAFE_SECTIONS and not (section in ("remote", "branch") and key.endswith(
                ("command", "uploadpack", "receivepack", "proxy", "vcs"))):
            continue
        return (f"its proposed repo's config sets {name}, which hivekit does not allow (git "
                "would act on it when hivekit reads the repo)")
    return None
