"""Which config file a run uses (kept apart from :mod:`hivekit.config` so that finding it imports
nothing but the standard library: every ``hivekit`` command does it first)."""

from __future__ import annotations

import os
from pathlib import Path

from hivekit.errors import ConfigError


def find_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to use, or None for the embedded defaults.

    First match wins: ``explicit`` (``--config``), ``$HIVEKIT_CONFIG``, ``./hivekit.toml``. An
    explicitly named file must exist.
    """
    named = explicit or os.environ.get("HIVEKIT_CONFIG") or None
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError([f"{path}: no such config file"])
        return path.resolve()
    default = Path("hivekit.toml")
    return default.resolve() if default.is_file() else None
