"""Agent names, ids and ports: names and ids are checked before anything touches the disk or the
store; ports are deterministic from the name."""

from __future__ import annotations

import re

from hivekit.errors import BadRequest

NAME_RULE = re.compile(r"[a-z][a-z0-9-]{0,8}")
RULE_TEXT = (
    "a name is 1-9 characters: a lowercase letter, then lowercase letters, digits or '-' "
    "(the container name is 'h-' + the name, and nixos-container allows 11)"
)


#: The largest id (approvals, messages, questions): SQLite's largest rowid.
MAX_ID = 2**63 - 1

#: Names that are never agents: senders and recipients hivekit itself stands for.
RESERVED = frozenset({"operator", "system"})


def check_name(name: str) -> str:
    """``name`` if it is a valid agent name; else :class:`BadRequest` stating the rule."""
    if not NAME_RULE.fullmatch(name):
        shown = repr(name) if len(name) <= 40 else f"{name[:40]!r}... ({len(name)} characters)"
        raise BadRequest(f"invalid agent name {shown}: {RULE_TEXT}")
    return name


def check_id(value: int, what: str) -> int:
    """``value`` if it can be a ``what`` id (1 to 2^63-1); ids naming nothing are a 404."""
    if not 0 < value <= MAX_ID:
        raise BadRequest(f"{what} id must be a positive integer up to {MAX_ID}, got {value}")
    return value


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
