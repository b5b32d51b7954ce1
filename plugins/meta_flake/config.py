"""The ``[meta_flake]`` config table."""

from __future__ import annotations

from typing import Any

import attrs
from attrs import field, frozen

from hivekit import positive


def _nonempty(_inst: Any, att: attrs.Attribute, value: str) -> None:
    if not value.strip():
        raise ValueError(f"{att.name} must not be empty")



def _domain(_inst: Any, att: attrs.Attribute, value: str) -> None:
    if not value or any(c.isspace() or c in "@\"'\\<>" for c in value):
        raise ValueError(f"{att.name} must be a mail domain such as 'hive.local', got {value!r}")


#: What ``auto_update`` may say.
AUTO_UPDATE = ("off", "check", "rebuild")


def _auto_update(_inst: Any, att: attrs.Attribute, value: str) -> None:
    if value not in AUTO_UPDATE:
        raise ValueError(f"must be one of {', '.join(AUTO_UPDATE)}, got {value!r}")


@frozen
class MetaFlakeConfig:
    #: The hivekit flake (a flake URL): the meta flake's ``hivekit`` input, whose ``lib.mkAgent``
    #: builds every agent. The NixOS module sets it to the hivekit it runs.
    hivekit_flake: str = field(default="github:hivekit/hivekit", validator=_nonempty)
    #: The ``nix`` executable (a name on PATH or a path).
    nix: str = field(default="nix", validator=_nonempty)
    #: Seconds any one Nix call may take (locking may fetch the hivekit flake).
    timeout: float = field(default=600.0, validator=positive)
    #: Agents commit as ``<name>@<git_email_domain>``.
    git_email_domain: str = field(default="hive.local", validator=_domain)
    #: At startup and every ``update_interval``: ``"off"`` does nothing, ``"check"`` relocks the
    #: hivekit input (the agents it leaves behind show "needs update"), ``"rebuild"`` also
    #: rebuilds those agents, as ``hivekit meta update-hive`` does.
    auto_update: str = field(default="off", validator=_auto_update)
    #: Seconds between two automatic checks (with ``auto_update`` on).
    update_interval: float = field(default=3600.0, validator=positive)
