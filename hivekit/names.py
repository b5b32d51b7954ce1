"""Agent names and ports: both deterministic, both checked before anything touches the disk."""

from __future__ import annotations

import re

from hivekit.errors import BadRequest

NAME_RULE = re.compile(r"[a-z][a-z0-9-]{0,8}")
RULE_TEXT = (
    "a name is 1-9 characters: a lowercase letter, then lowercase letters, digits or '-' "
    "(the container name is 'h-' + the name, and nixos-container allows 11)"
)


#: Names that are never agents: senders and recipients hivekit itself stands for.
RESERVED = frozenset({"operator", "system"})


def check_name(name: object) -> str:
    """``name`` if it is a valid agent name; else :class:`BadRequest` stating the rule."""
    if not isinstance(name, str) or not NAME_RULE.fullmatch(name):
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        raise BadRequest(f"invalid agent name {shown}: {RULE_TEXT}")
    return name


def fnv1a_32(data: bytes) -> int:
    """The 32-bit FNV-1a hash (offset basis 0x811c9dc5, prime 0x01000193)."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def agent_port(name: str, *, manager: str, manager_port: int, base: int, span: int) -> int:
    """The agent's web port: the manager's fixed port, else ``base + fnv1a(name) % span``."""
    if name == manager:
        return manager_port
    return base + fnv1a_32(name.encode()) % span
