"""The ``[forge]`` config table."""

from __future__ import annotations

import shlex
from typing import Any

import attrs
from attrs import field, frozen

from hivekit import positive

SCOPE_KINDS = ("activitypub", "admin", "issue", "misc", "notification", "organization",
               "package", "repository", "user")


def _words(required: bool) -> Any:
    def check(_inst: Any, att: attrs.Attribute, value: str) -> None:
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"{att.name}: cannot split {value!r} into words: {exc}") from None
        if required and not words:
            raise ValueError(f"{att.name} must name a command")

    return check


def _scopes(_inst: Any, att: attrs.Attribute, value: str) -> None:
    known = {"all", "public-only"} | {f"{rw}:{k}" for rw in ("read", "write")
                                      for k in SCOPE_KINDS}
    scopes = [s for s in value.split(",") if s]
    if not scopes:
        raise ValueError(f"{att.name} must list at least one scope")
    for scope in scopes:
        if scope not in known:
            raise ValueError(f"{att.name}: unknown Forgejo token scope {scope!r} "
                             f"(known: {', '.join(sorted(known))})")


def _domain(_inst: Any, att: attrs.Attribute, value: str) -> None:
    if not value or any(c.isspace() or c in "@\"'\\<>" for c in value):
        raise ValueError(f"{att.name} must be a mail domain such as 'hive.local', got {value!r}")



def _container(_inst: Any, att: attrs.Attribute, value: str) -> None:
    # nixos-container.pl: /^[a-zA-Z0-9_-]+$/
    if not value or not all(c.isascii() and (c.isalnum() or c in "_-") for c in value):
        raise ValueError(f"{att.name} must be a container name (letters, digits, '-', '_'), "
                         f"got {value!r}")


def _program(_inst: Any, att: attrs.Attribute, value: str) -> None:
    if not value.strip() or any(c.isspace() for c in value):
        raise ValueError(f"{att.name} must be one program (a name on PATH or a path), got "
                         f"{value!r}")


def _unit(_inst: Any, att: attrs.Attribute, value: str) -> None:
    if not value or value.startswith("-") or any(c.isspace() or c == "/" for c in value):
        raise ValueError(f"{att.name} must be a systemd unit name such as 'forgejo.service', "
                         f"got {value!r}")


@frozen
class ForgeConfig:
    #: The NixOS container the forge runs in (nixpkgs' ``services.forgejo`` inside it).
    container: str = field(default="hive-forge", validator=_container)
    #: The ``nixos-container`` executable on the host.
    nixos_container: str = field(default="nixos-container", validator=_program)
    #: Forgejo's unit inside the container: its ``User=`` and ``Environment=`` (``PATH``,
    #: ``FORGEJO_WORK_DIR``, ``FORGEJO_CUSTOM``) say how to run ``forgejo admin`` as the service
    #: itself runs Forgejo.
    unit: str = field(default="forgejo.service", validator=_unit)
    #: The command that runs ``forgejo admin`` (shell words; ``user create``... are appended),
    #: for a forge that is not a NixOS container. Empty: found through ``unit`` in
    #: ``container``.
    command: str = field(default="", validator=_words(required=False))
    #: Whether the forge runs: this command must exit 0 and print ``up``. Unset:
    #: ``<nixos_container> status <container>``. Empty: don't probe.
    probe: str | None = field(default=None, validator=attrs.validators.optional(_words(False)))
    #: The scopes of each agent's token (comma-separated Forgejo scopes).
    scopes: str = field(default="read:user,write:repository,write:issue", validator=_scopes)
    #: Users are created as ``<name>@<email_domain>``.
    email_domain: str = field(default="hive.local", validator=_domain)
    #: ``destroy --purge`` also deletes the agent's Forgejo user (a plain destroy keeps it).
    purge_user: bool = True
    #: Seconds one ``forgejo admin`` call (or the probe) may take.
    timeout: float = field(default=60.0, validator=positive)
