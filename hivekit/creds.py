"""An agent's credentials: named secrets in its creds dir, handed to it by the backend.

``hivekit creds NAME set KEY`` (the value on stdin) stores the value in
``<state_dir>/agents/<n>/creds/env/<KEY>``: the directories 0700, the file 0600, written to a
temporary file and renamed into place, so a crash leaves the old value or the new one. Backends
pass every key to the agent as an environment variable of that name (see
:func:`environment`; the process backend's README says how each backend does it). Values are
never returned by the API, printed or logged: only their names are (:func:`listing`).

The creds dir is also where an interactive login leaves its files (``hivekit exec NAME --
claude login``): listed as ``files``, by relative path.

A key is untrusted input: it names a file, so it is checked strictly (an environment variable's
name; no path separator, no ``..``), and the names hivekit or the backend set themselves are
refused.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from attrs import field, frozen

from hivekit.errors import BadRequest, NotFound
from hivekit.names import check_name

if TYPE_CHECKING:
    from hivekit.hive import Hive
    from hivekit.records import AgentSpec

#: The subdirectory of the creds dir holding one file per key.
ENV_DIR = "env"
#: A key: an environment variable's name.
KEY_RULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: Names set by hivekit or the backend, which a credential may not replace.
RESERVED_KEYS = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "TERM"})
RESERVED_PREFIXES = ("HIVE_", "LD_")
#: The largest value, in bytes (an API key is ~100; a credentials JSON a few KiB).
MAX_VALUE = 64 * 1024
#: The most files :func:`listing` reports from a login's tree.
MAX_FILES = 200
#: What a login's credentials file is called (``.claude/.credentials.json``, ``auth.json``,
#: ``token``...). The creds dir is the agent's HOME, where programs leave other files too
#: (caches, settings): those do not make an agent logged in.
LOGIN_WORDS = ("credential", "token", "auth", "secret", "apikey", "api_key", ".key", ".pem")


@frozen
class Listing:
    """What an agent's creds dir holds, by name only."""

    agent: str
    #: The keys set with ``hivekit creds set``: each reaches the agent as an environment variable.
    keys: list[str] = field(factory=list)
    #: Other files (a login's), relative to the creds dir, sorted; at most :data:`MAX_FILES`.
    files: list[str] = field(factory=list)


def check_key(key: object) -> str:
    """``key`` if it may name a credential; else :class:`BadRequest` saying the rule."""
    if not isinstance(key, str) or not KEY_RULE.fullmatch(key):
        shown = repr(key) if isinstance(key, str) else type(key).__name__
        raise BadRequest(f"invalid credential key {shown}: a key is an environment variable's "
                         "name (a letter or '_', then letters, digits or '_'; at most 128)")
    if key in RESERVED_KEYS or key.startswith(RESERVED_PREFIXES):
        raise BadRequest(f"credential key {key!r} is reserved: the hive sets it itself "
                         "(HIVE_*, LD_*, PATH, HOME...); use another name")
    return key


def _agent(hive: Hive, name: object) -> AgentSpec:
    """An agent or a tombstone (its creds outlive its container)."""
    name = check_name(name)
    spec = hive.agent(name)
    if not hive.store.has_agent(name) and not spec.paths.config.is_dir():
        known = ", ".join(hive.store.agent_names()) or "none"
        raise NotFound(f"no agent named {name!r} (agents: {known})")
    return spec


def env_dir(agent: AgentSpec) -> Path:
    return agent.paths.creds / ENV_DIR


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def set_key(hive: Hive, name: object, key: object, value: object) -> Listing:
    """Store ``value`` as credential ``key`` of agent ``name``; returns the names it now has.

    The agent sees it from its next start (``hivekit restart NAME``).
    """
    spec = _agent(hive, name)
    key = check_key(key)
    if not isinstance(value, str) or not value:
        raise BadRequest("value must be a non-empty string")
    if "\0" in value:
        raise BadRequest("value must not contain NUL characters (an environment variable "
                         "cannot hold one)")
    data = value.encode()
    if len(data) > MAX_VALUE:
        raise BadRequest(f"value is too long ({len(data)} bytes; the limit is {MAX_VALUE})")
    _private_dir(spec.paths.creds)
    directory = env_dir(spec)
    _private_dir(directory)
    tmp = directory / f".{key}.new"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / key)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return listing(hive, spec.name)


def remove_key(hive: Hive, name: object, key: object) -> Listing:
    """Remove credential ``key`` of agent ``name``; :class:`NotFound` if it has none."""
    spec = _agent(hive, name)
    key = check_key(key)
    try:
        (env_dir(spec) / key).unlink()
    except FileNotFoundError:
        have = ", ".join(environment(spec)) or "none"
        raise NotFound(f"{spec.name} has no credential {key!r} (keys: {have})") from None
    return listing(hive, spec.name)


def listing(hive: Hive, name: object) -> Listing:
    """The names of agent ``name``'s credentials and login files (never their values)."""
    spec = _agent(hive, name)
    keys = sorted(environment(spec))
    files: list[str] = []
    root = spec.paths.creds
    for path in _files(root):
        rel = path.relative_to(root)
        if rel.parts[0] == ENV_DIR:
            continue
        files.append(str(rel))
        if len(files) >= MAX_FILES:
            break
    return Listing(agent=spec.name, keys=keys, files=sorted(files))


def _files(root: Path) -> list[Path]:
    """Regular files under ``root`` (symlinks not followed), breadth first, bounded."""
    found: list[Path] = []
    todo = [root]
    while todo and len(found) < MAX_FILES * 2:
        here = todo.pop(0)
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                todo.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                found.append(Path(entry.path))
    return found


def environment(agent: AgentSpec) -> dict[str, str]:
    """The agent's credentials as environment variables (for backends; values included).

    A file whose name is not a valid key (put there by hand) is skipped, as is one that cannot
    be read.
    """
    out: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(env_dir(agent)), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        if not entry.is_file(follow_symlinks=False) or not KEY_RULE.fullmatch(entry.name):
            continue
        if entry.name in RESERVED_KEYS or entry.name.startswith(RESERVED_PREFIXES):
            continue
        try:
            value = Path(entry.path).read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "\0" not in value:
            out[entry.name] = value
    return out


def login_file(name: str) -> bool:
    """Whether a file called ``name`` looks like a login's credentials (:data:`LOGIN_WORDS`)."""
    lowered = name.lower()
    return any(word in lowered for word in LOGIN_WORDS)


def has_any(agent: AgentSpec) -> bool:
    """Whether the agent has anything to authenticate with: a key, or a login's credentials
    file (:func:`login_file`) anywhere in its creds dir.

    Cheap (it runs for every agent row): it stops at the first one found.
    """
    keys = env_dir(agent)
    todo = [agent.paths.creds]
    while todo:
        here = todo.pop()
        try:
            with os.scandir(here) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False) and (
                            KEY_RULE.fullmatch(entry.name) if here == keys
                            else login_file(entry.name)):
                        return True  # in env/ only a key counts (not a half-written .KEY.new)
        except OSError:
            continue
    return False
