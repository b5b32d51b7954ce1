"""What hivekit must accept for each declared type, written independently of the converter
the boundary tests check (DESIGN.md: a value of the wrong type is refused, never coerced)."""

from __future__ import annotations

import enum
import math
import types
import typing
from pathlib import Path
from typing import Any

import attrs

I64 = 2**63


def is_union(t: Any) -> bool:
    return typing.get_origin(t) in (typing.Union, types.UnionType)


def is_optional(t: Any) -> bool:
    return is_union(t) and type(None) in typing.get_args(t)


def fields(cls: type | None) -> list[attrs.Attribute]:
    """The fields of a record class, their types resolved (modules use annotations)."""
    return list(attrs.fields(attrs.resolve_types(cls))) if cls is not None else []


def fits(value: Any, t: Any) -> bool:
    """Whether hivekit must accept ``value`` (parsed JSON or TOML) for type ``t``."""
    if is_union(t):
        return any(fits(value, a) for a in typing.get_args(t))
    if t is type(None):
        return value is None
    if t is bool:
        return isinstance(value, bool)
    if t is int:
        return type(value) is int and -I64 <= value < I64
    if t is float:
        return (type(value) is int and -I64 <= value < I64) or (
            type(value) is float and math.isfinite(value))
    if t is str:
        return isinstance(value, str)
    if isinstance(t, type) and issubclass(t, Path):
        return isinstance(value, str) and value != "" and "\0" not in value
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return value in {m.value for m in t}
    if attrs.has(t):
        return isinstance(value, dict) and all(
            f.name in value and fits(value[f.name], f.type) if f.default is attrs.NOTHING
            else f.name not in value or fits(value[f.name], f.type) for f in fields(t)) \
            and set(value) <= {f.name for f in fields(t)}
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is list:
        return isinstance(value, list) and all(fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(fits(v, args[1]) for v in value.values())
    raise AssertionError(f"no rule for {t!r}: add one to type_rules.fits()")


def sample(t: Any) -> Any:
    """A value of type ``t`` (for the fields a case does not break)."""
    if is_union(t):
        if is_optional(t):
            return None
        return sample(typing.get_args(t)[0])
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return next(iter(t)).value
    if isinstance(t, type) and issubclass(t, Path):
        return "x"
    origin = typing.get_origin(t) or t
    return {bool: False, int: 1, float: 1.0, str: "coder", list: [], dict: {}}.get(origin, {})
