"""Nix, as the meta flake calls it: locking and relocking one input, on any Nix version.

Relocking one input is spelled two ways: ``nix flake update <input>`` since Nix 2.19 (and on Lix,
which rejects the old spelling), ``nix flake lock --update-input <input>`` before (2.19.0 and
2.19.1 reject it too). Which one is chosen from ``nix --version``, asked once. Flakes are enabled
on every call (``--extra-experimental-features 'nix-command flakes'``), so no nix.conf is needed;
every call has a timeout, runs in the flake's directory (the flake is ``.``), and a failure says
what ran and ends with the end of Nix's stderr.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

from attrs import frozen

from hivekit import OperationFailed, run

FEATURES = ("--extra-experimental-features", "nix-command flakes")
VERSION_TIMEOUT = 30.0
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
#: Nix says this on every call against a flake with uncommitted changes: noise in a live log.
_DIRTY = re.compile(r"^warning: Git tree '.*' is dirty$")


@frozen
class NixVersion:
    """What ``nix --version`` said."""

    major: int
    minor: int
    patch: int
    lix: bool
    text: str

    @property
    def update_takes_inputs(self) -> bool:
        """Whether ``nix flake update <input>`` relocks one input (else ``flake lock
        --update-input``)."""
        return self.lix or (self.major, self.minor) >= (2, 19)


def parse_version(text: str) -> NixVersion:
    """Parse ``nix (Nix) 2.24.9`` or ``nix (Lix, like Nix) 2.91.1``."""
    m = _VERSION.search(text)
    if m is None:
        raise OperationFailed(f"cannot tell the Nix version from `nix --version`: {text.strip()!r}")
    return NixVersion(major=int(m[1]), minor=int(m[2]), patch=int(m[3] or 0),
                      lix="lix" in text.lower(), text=text.strip())


class Nix:
    """One Nix executable, with the meta flake's few commands."""

    def __init__(self, program: str = "nix", timeout: float = 600.0) -> None:
        self.program = program
        self.timeout = timeout
        self._version: NixVersion | None = None
        self._lock = threading.Lock()

    def version(self) -> NixVersion:
        with self._lock:
            if self._version is None:
                out = run([self.program, "--version"], timeout=VERSION_TIMEOUT)
                self._version = parse_version(out)
            return self._version

    def run(self, args: list[str], flake: Path,
            on_line: Callable[[str, str], None] | None = None) -> str:
        """``nix --extra-experimental-features 'nix-command flakes' <args>`` in ``flake``."""
        def quiet(stream: str, line: str) -> None:
            if on_line is not None and not _DIRTY.match(line):
                on_line(stream, line)

        return run([self.program, *FEATURES, *args], cwd=flake, timeout=self.timeout,
                   on_line=quiet if on_line else None)

    def lock(self, flake: Path, on_line: Callable[[str, str], None] | None = None) -> None:
        """Lock what ``flake.nix`` names and ``flake.lock`` lacks; drop what it no longer names.
        Inputs already locked stay as they are."""
        self.run(["flake", "lock"], flake, on_line)

    def update_input(self, flake: Path, name: str,
                     on_line: Callable[[str, str], None] | None = None) -> None:
        """Relock input ``name`` to what its URL names now; no other input moves."""
        self.run(self.update_args(name), flake, on_line)

    def update_args(self, name: str) -> list[str]:
        if self.version().update_takes_inputs:
            return ["flake", "update", name]
        return ["flake", "lock", "--update-input", name]
