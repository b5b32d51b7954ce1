"""What one ``hivekit`` run learnt about the plugins and the config, kept for the next runs.

``hivekit --help`` lists the commands the enabled plugins contribute, and every operator command
needs the admin socket's path, which the config says. Learning the first means scanning every
installed distribution's entry points and importing every enabled plugin; the second, structuring
the config with the strict converter. Together that is several times what ``hivekit agents``
itself costs, so a run that did it writes down what it learnt — each plugin command's name,
owner and help, each enabled plugin's entry point, the config's runtime and state dirs — and
later runs read that instead:

* ``hivekit --help`` imports no plugin at all; ``hivekit agents`` imports the one plugin that
  owns ``agents`` (and nothing that plugin does not import itself).

The record is keyed by everything that decides what it says: hivekit's version, the interpreter,
``HIVEKIT_LOAD_PLUGINS``, the config file (path, inode, size, mtime; or the working directory
when there is none), and the **installed distributions**: the ``*.dist-info`` (and egg-info)
directories in every ``sys.path`` entry, each with its inode and mtime (installing, upgrading or
removing a distribution adds, replaces or removes its ``*.dist-info``). It also lists the
source files of the plugins it imported, with their mtimes, so that editing a plugin's commands
invalidates it too. Anything else, and a record that cannot be read, is a miss: the run does
the full work and writes a new record. A run that met a problem (a plugin that does not import,
a config that does not validate) writes none, so the problem is reported every time.

Records live in ``$HIVEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/hivekit``, else
``~/.cache/hivekit``; if none is writable, nothing is kept (every run does the full work).
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any

#: Bumped when the record's layout changes.
LAYOUT = 1
#: Records kept (one per config and environment); the oldest go first.
KEEP = 16


def cache_dir() -> Path | None:
    explicit = os.environ.get("HIVEKIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "hivekit"
    home = os.environ.get("HOME")
    return Path(home) / ".cache" / "hivekit" if home else None


def _stat(path: str | Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _distributions(entry: str) -> list[Any] | None:
    """The distributions installed in one ``sys.path`` directory: each ``*.dist-info`` (or
    egg-info) with its inode and mtime (pip replaces it on every install of the distribution)."""
    try:
        names = os.listdir(entry or ".")
    except OSError:
        return None
    return sorted([name, _stat(os.path.join(entry, name))] for name in names
                  if name.endswith((".dist-info", ".egg-info", ".egg-link")))


def key(config_path: Path | None) -> str:
    """The record's key for a run with this config file (None: the embedded defaults): a text
    naming everything the record depends on."""
    from hivekit import __version__

    parts: list[Any] = [LAYOUT, __version__, sys.executable, sys.version,
                        os.environ.get("HIVEKIT_LOAD_PLUGINS")]
    parts += [[entry, _distributions(entry)] for entry in sys.path]
    if config_path is None:
        parts.append(["embedded defaults", os.getcwd()])
    else:
        parts.append([str(config_path), _stat(config_path)])
    return json.dumps(parts)


def _path(record_key: str) -> Path | None:
    # The file is named by a checksum of the key; the record holds the key itself, compared
    # in full when read (so two keys sharing a checksum only evict each other).
    base = cache_dir()
    return base / f"cli-{zlib.crc32(record_key.encode()):08x}.json" if base else None


def load(record_key: str) -> dict[str, Any] | None:
    """The record for ``record_key`` if there is one and the plugin files it lists are
    unchanged; else None."""
    path = _path(record_key)
    if path is None:
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != record_key:
        return None
    files = record.get("files")
    if not isinstance(files, dict):
        return None
    for file, seen in files.items():
        if _stat(file) != seen:
            return None
    return record


def store(record_key: str, record: dict[str, Any], modules: list[str]) -> None:
    """Write ``record`` for ``record_key``, listing the source files of ``modules`` (and their
    submodules loaded now). Never fails the command: a cache it cannot write is no cache."""
    path = _path(record_key)
    if path is None:
        return
    files = {}
    for name, module in list(sys.modules.items()):
        if any(name == m or name.startswith(m + ".") for m in modules):
            file = getattr(module, "__file__", None)
            if file:
                files[file] = _stat(file)
    data = {**record, "key": record_key, "files": files}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
        _prune(path.parent)
    except OSError:
        pass


def _prune(directory: Path) -> None:
    def mtime(path: Path) -> int:
        seen = _stat(path)
        return seen[2] if seen else 0

    for old in sorted(directory.glob("cli-*.json"), key=mtime)[:-KEEP]:
        old.unlink(missing_ok=True)
