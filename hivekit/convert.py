"""The one strict converter for every boundary: JSON (admin API, agent sockets), TOML (the
``[hive]`` table, every plugin's table, ``agent.toml``), helper events, SQLite rows, query
strings and CLI arguments.

**Nothing is coerced.** A value of the wrong type is refused with its field path, never turned
into the type that was wanted:

* ``bool`` only from a boolean (``"false"``, ``0``, ``"no"`` are refused);
* ``int`` only from an integer (not a boolean, not ``1.0``) between -2^63 and 2^63-1, the range
  SQLite stores: anything larger cannot be an id, a limit or a size;
* ``float`` from a finite number; an integer is accepted where a number of seconds is meant
  (``timeout = 30``), a boolean, ``NaN`` or infinity is not;
* ``str`` only from a string (``5`` and ``null`` are refused); a ``Path`` from a non-empty string
  without NUL;
* ``list`` only from an array (``"abc"`` is not a list of three letters), a mapping (attrs
  classes, ``dict``) only from an object/table;
* an enum from one of its values (a string); a union by the JSON kind of the value, never by
  trying each member in turn;
* unknown keys are refused everywhere.

Every refusal is a :class:`Problem`: a field path and what was wrong, in one formatter
(``purge: expected a boolean, got the string "false"``). :func:`structure` raises
:class:`Invalid` (a 400 :class:`~hivekit.errors.BadRequest`) carrying them; the config reader
prefixes each with its file and table. Attribute validators run one by one when a record is
refused, so every bad key is reported at once, not only the first.

Text (query strings, CLI arguments) is structured by :data:`text_converter`: the same classes,
with an integer read only from ASCII decimal digits, a boolean only from ``true``/``false``
(:func:`structure_query`, :func:`parse_id`).
"""

from __future__ import annotations

import enum
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import is_mapping, is_mutable_sequence, list_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn, make_mapping_structure_fn
from cattrs.preconf.json import make_converter
from cattrs.strategies import configure_tagged_union

from hivekit import events
from hivekit.errors import BadRequest
from hivekit.names import MAX_ID

T = TypeVar("T")

#: The integer range every boundary accepts: SQLite's signed 64-bit integers.
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1
#: How deeply a JSON request may nest (hivekit's own bodies nest two levels at most).
MAX_DEPTH = 32


# --- problems ----------------------------------------------------------------------------------


@attrs.frozen
class Problem:
    """One thing wrong with an input: where (``purge``, ``options[2]``, ``agents.coder.memory``;
    empty for the input as a whole) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class Invalid(BadRequest):
    """Input refused by the converter; :attr:`problems` holds one :class:`Problem` each."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class WrongType(TypeError):
    """A value of the wrong type: ``expected a boolean, got the string "false"``."""

    def __init__(self, expected: str, value: object, *, text: bool = False) -> None:
        self.expected, self.value = expected, value
        got = _quoted(value) if text and isinstance(value, str) else describe(value)
        super().__init__(f"expected {expected}, got {got}")


class OutOfRange(ValueError):
    """A value of the right type outside what the field can hold."""


def _quoted(text: str, limit: int = 40) -> str:
    shown = json.dumps(text[:limit], ensure_ascii=False)
    return f"{shown[:-1]}…\" ({len(text)} characters)" if len(text) > limit else shown


def describe(value: object) -> str:
    """A value as an error message shows what was given: ``the string "false"``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        digits = str(value) if abs(value) < 10**30 else f"{str(value)[:20]}… "\
            f"({len(str(abs(value)))} digits)"
        return f"the integer {digits}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "infinity" if value > 0 else "-infinity"
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {_quoted(value)}"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item{'s' if len(value) > 1 else ''}" if value \
            else "an empty list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def expected(type_: Any) -> str:
    """What a value of ``type_`` is called in an error message."""
    if type_ is type(None) or type_ is None:
        return "null"
    if type_ is bool:
        return "a boolean"
    if type_ is int:
        return "an integer"
    if type_ is float:
        return "a number"
    if type_ is str:
        return "a string"
    if isinstance(type_, type) and issubclass(type_, Path):
        return "a path (a string)"
    if isinstance(type_, type) and issubclass(type_, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in type_)
    if _is_union(type_):
        # An optional value is also left out (TOML has no null): name what it is when given.
        return " or ".join(expected(a) for a in typing.get_args(type_) if a is not type(None))
    if is_mutable_sequence(type_):
        args = typing.get_args(type_)
        return f"a list of {_plural(args[0])}" if args else "a list"
    if is_mapping(type_) or attrs.has(type_):
        return "a mapping"
    return getattr(type_, "__name__", repr(type_))


def _plural(type_: Any) -> str:
    plain = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
    return plain.get(type_, "values")


def problems(exc: BaseException) -> list[Problem]:
    """Every problem a structuring error holds, each with its field path."""
    found: list[Problem] = []
    _walk(exc, "", None, found)
    return found


def _join(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        text = json.dumps(text)
    return f"{path}.{text}" if path else text


def _unprefixed(message: str, path: str) -> str:
    key = re.split(r"[.\[]", path)[-1] if path else ""
    for sep in (": ", " "):
        if key and message.startswith(key + sep) and len(message) > len(key + sep):
            return message[len(key + sep):]
    return message


def _walk(exc: BaseException, path: str, type_: Any, out: list[Problem]) -> None:
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            _walk(sub, _join(path, note.name), note.type, out)
        names = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        for sub in without:
            # A check of the whole record (__attrs_post_init__) that names its key first
            # ("timeout must be positive") is that key's problem.
            key = next((n for n in names if re.match(rf"{n}\b(?![.\[])", str(sub))), None)
            _walk(sub, _join(path, key) if key else path, None, out)
    elif isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            _walk(sub, _join(path, note.index), note.type, out)
        for sub in without:
            _walk(sub, path, None, out)
    elif isinstance(exc, ForbiddenExtraKeysError):
        known = ", ".join(a.name for a in attrs.fields(exc.cl)) if attrs.has(exc.cl) else ""
        for key in sorted(exc.extra_fields):
            out.append(Problem(_join(path, key),
                               f"unknown key (known keys: {known})" if known else "unknown key"))
    elif isinstance(exc, KeyError):
        what = expected(type_) if type_ is not None else "a value"
        out.append(Problem(path, f"missing: {what} is required"))
    elif isinstance(exc, WrongType | OutOfRange):
        out.append(Problem(path, str(exc)))
    elif isinstance(exc, ValueError | TypeError) and str(exc):
        # A validator's or __attrs_post_init__'s own words say what is wrong; most start with
        # the key's name, which the path says already.
        out.append(Problem(path, _unprefixed(str(exc), path)))
    else:
        out.append(Problem(path, f"invalid value ({type(exc).__name__})"))


# --- the hooks ---------------------------------------------------------------------------------


def _is_union(type_: Any) -> bool:
    return typing.get_origin(type_) in (typing.Union, types.UnionType)


def _is_plain_union(type_: Any) -> bool:
    # Unions of records only are tagged unions (events): their own hook picks the member.
    return _is_union(type_) and not all(attrs.has(a) for a in typing.get_args(type_))


def _bool(value: object, _t: Any) -> bool:
    if not isinstance(value, bool):
        raise WrongType("a boolean", value)
    return value


def _check_int(value: int) -> int:
    if not MIN_INT <= value <= MAX_INT:
        raise OutOfRange(f"expected an integer between {MIN_INT} and {MAX_INT}, got "
                         f"{describe(value)}")
    return value


def _int(value: object, _t: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise WrongType("an integer", value)
    return _check_int(value)


def _float(value: object, _t: Any) -> float:
    # An integer is a number of seconds too (`timeout = 30`); a boolean is not a number.
    if isinstance(value, int) and not isinstance(value, bool):
        return float(_check_int(value))
    if not isinstance(value, float):
        raise WrongType("a number", value)
    if not math.isfinite(value):
        raise WrongType("a finite number", value)
    return value


def _is_enum(type_: Any) -> bool:
    return isinstance(type_, type) and issubclass(type_, enum.Enum)


def _str(value: object, type_: Any) -> Any:
    # cattrs dispatches str's subclasses here too: string enums (ApprovalStatus...).
    if type_ is not str and _is_enum(type_):
        return _enum(value, type_, text=False)
    if not isinstance(value, str):
        raise WrongType("a string", value)
    return value


def _text_str(value: object, type_: Any) -> Any:
    if type_ is not str and _is_enum(type_):
        return _enum(value, type_, text=True)
    return _str(value, type_)


def _enum(value: object, type_: type[enum.Enum], *, text: bool) -> enum.Enum:
    for member in type_:
        if isinstance(value, str) and value == str(member.value):
            return member
    raise WrongType(expected(type_), value, text=text)


def _path(value: object, type_: Any) -> Path:
    if not isinstance(value, str):
        raise WrongType("a path (a string)", value)
    if not value or "\0" in value:
        raise OutOfRange(f"expected a non-empty path without NUL characters, got {describe(value)}")
    return type_(value)


def _list_factory(type_: Any, conv: cattrs.Converter) -> Callable[[object, Any], list[Any]]:
    inner = list_structure_factory(type_, conv)

    def structure(value: object, t: Any) -> list[Any]:
        if not isinstance(value, list):
            raise WrongType(expected(type_), value)
        return inner(value, t)

    return structure


def _mapping_factory(type_: Any, conv: cattrs.Converter) -> Callable[[object, Any], Any]:
    inner = make_mapping_structure_fn(type_, conv)

    def structure(value: object, t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise WrongType("a mapping", value)
        return inner(value, t)

    return structure


def _kind_of(value: object) -> tuple[type, ...]:
    """The union members that may take ``value``, by its JSON kind, most fitting first."""
    if value is None:
        return (type(None),)
    if isinstance(value, bool):
        return (bool,)
    if isinstance(value, int):
        return (int, float)
    if isinstance(value, float):
        return (float,)
    if isinstance(value, str):
        return (str, Path, enum.Enum)
    if isinstance(value, list):
        return (list,)
    if isinstance(value, Mapping):
        return (dict, object)
    return ()


def _member_kind(member: Any) -> type:
    if member is type(None) or member in (bool, int, float, str):
        return member
    if isinstance(member, type) and issubclass(member, Path):
        return Path
    if isinstance(member, type) and issubclass(member, enum.Enum):
        return enum.Enum
    if is_mutable_sequence(member):
        return list
    if is_mapping(member):
        return dict
    if attrs.has(member):
        return object
    return _Never


class _Never:
    """The kind of a union member no JSON value is taken as."""


def _union_factory(type_: Any, conv: cattrs.Converter) -> Callable[[object, Any], Any]:
    members = typing.get_args(type_)
    by_kind: dict[type, Any] = {}
    for member in members:
        by_kind.setdefault(_member_kind(member), member)

    def structure(value: object, _t: Any) -> Any:
        for kind in _kind_of(value):
            if kind in by_kind:
                member = by_kind[kind]
                return None if member is type(None) else conv.structure(value, member)
        raise WrongType(expected(type_), value)

    return structure


def _attrs_factory(type_: Any, conv: cattrs.Converter) -> Callable[[object, Any], Any]:
    inner = make_dict_structure_fn(type_, conv, _cattrs_forbid_extra_keys=True)

    def structure(value: object, t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise WrongType("a mapping", value)
        try:
            return inner(value, t)
        except ClassValidationError as exc:
            raise _every_problem(exc, value, type_, conv) from None

    return structure


def _every_problem(exc: ClassValidationError, value: Mapping[str, Any], type_: Any,
                   conv: cattrs.Converter) -> ClassValidationError:
    """``exc`` with each failing attribute validator reported too.

    attrs stops at the first validator that raises, and cattrs runs none once a field has the
    wrong type; an operator fixing a config wants every bad key at once, so the validator of
    each field that structured is run alone.
    """
    with_notes, _ = exc.group_exceptions()
    typed_badly = {note.name for _sub, note in with_notes}
    found: list[Exception] = []
    for att in attrs.fields(type_):
        if att.validator is None or att.name not in value or att.name in typed_badly:
            continue
        try:
            att.validator(None, att, conv.structure(value[att.name], att.type))
        except (ValueError, TypeError) as sub:
            sub.__notes__ = [AttributeValidationNote(f"Validating {att.name}", att.name,
                                                     att.type)]
            found.append(sub)
        except Exception:  # a validator that needs the instance: its error stands as raised
            continue
    if not found:
        return exc
    # A construction error (no notes) is a validator's, reported now under its key.
    return ClassValidationError(exc.message, [*(sub for sub, _ in with_notes), *found], type_)


# --- text: query strings, CLI arguments -------------------------------------------------------

_DIGITS = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _text_int(value: object, _t: Any) -> int:
    if not isinstance(value, str) or not _DIGITS.fullmatch(value) or len(value) > 40:
        raise WrongType("an integer", value, text=True)
    return _check_int(int(value))


def _text_float(value: object, _t: Any) -> float:
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value) or len(value) > 40:
        raise WrongType("a number", value, text=True)
    return float(value)


def _text_bool(value: object, _t: Any) -> bool:
    if value not in ("true", "false"):
        raise WrongType("true or false", value, text=True)
    return value == "true"


def _text_optional_factory(type_: Any, conv: cattrs.Converter) -> Callable[[object, Any], Any]:
    members = [m for m in typing.get_args(type_) if m is not type(None)]
    if len(members) != 1:
        raise TypeError(f"a query parameter cannot be {type_!r}")

    def structure(value: object, _t: Any) -> Any:
        return conv.structure(value, members[0])

    return structure


# --- the converters ----------------------------------------------------------------------------


def _tag(cls: type) -> str:
    return cls.TYPE  # type: ignore[attr-defined]


def make(*, text: bool = False) -> cattrs.Converter:
    """A strict converter (see the module's docstring); ``text=True``: for strings from a query
    or a command line. Unstructuring is cattrs' JSON preset."""
    conv = make_converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, _text_str if text else _str)
    conv.register_structure_hook(Path, _path)
    conv.register_structure_hook_factory(lambda t: is_mutable_sequence(t) and t is not str,
                                         lambda t: _list_factory(t, conv))
    conv.register_structure_hook_factory(is_mapping, lambda t: _mapping_factory(t, conv))
    conv.register_structure_hook_factory(attrs.has, lambda t: _attrs_factory(t, conv))
    # Enums that are not strings (none in hivekit) are refused unless a string matches.
    conv.register_structure_hook_factory(_is_enum, lambda t: lambda v, _t: _enum(v, t, text=text))
    if text:
        conv.register_structure_hook(bool, _text_bool)
        conv.register_structure_hook(int, _text_int)
        conv.register_structure_hook(float, _text_float)
        conv.register_structure_hook_factory(_is_union, lambda t: _text_optional_factory(t, conv))
        return conv
    conv.register_structure_hook(bool, _bool)
    conv.register_structure_hook(int, _int)
    conv.register_structure_hook(float, _float)
    conv.register_structure_hook_factory(_is_plain_union, lambda t: _union_factory(t, conv))
    # Registered last, so they win over the general union hook for these two unions.
    configure_tagged_union(events.Event, conv, tag_generator=_tag, tag_name="type")
    configure_tagged_union(events.HelperEvent, conv, tag_generator=_tag, tag_name="type")
    return conv


#: The converter for JSON, TOML and SQLite rows (and every unstructuring).
converter = make()
#: The converter for text: query strings and command-line arguments.
text_converter = make(text=True)


def structure(data: object, cls: type[T], *, conv: cattrs.Converter | None = None) -> T:
    """``data`` as a ``cls``; :class:`Invalid` (every problem, each with its path) otherwise."""
    try:
        return (conv or converter).structure(data, cls)
    except (cattrs.BaseValidationError, WrongType, OutOfRange, ValueError, TypeError) as exc:
        raise Invalid(problems(exc)) from None


def structure_query(params: Mapping[str, list[str]], cls: type[T]) -> T:
    """Query parameters (each name with every value it was given) as a ``cls``.

    A parameter given twice, or one ``cls`` does not have, is refused; values are text, read by
    :data:`text_converter`.
    """
    found: list[Problem] = []
    single: dict[str, str] = {}
    for name, values in params.items():
        if len(values) != 1:
            found.append(Problem(name, f"given {len(values)} times; give it once"))
        else:
            single[name] = values[0]
    known = {a.name for a in attrs.fields(cls)} if attrs.has(cls) else set()
    for name in sorted(set(single) - known):
        what = f"known: {', '.join(sorted(known))}" if known else "this route takes none"
        found.append(Problem(name, f"unknown query parameter ({what})"))
        del single[name]
    try:
        value = text_converter.structure(single, cls)
    except (cattrs.BaseValidationError, WrongType, OutOfRange, ValueError, TypeError) as exc:
        found += problems(exc)
    if found:
        raise Invalid(found)
    return value


def parse_id(text: str, name: str) -> int:
    """An id (approval, question, message) from text: ASCII digits, 1 to 2^63-1."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or not 0 < int(text) <= MAX_ID:
        raise Invalid([Problem(name, f"expected an id (an integer from 1 to {MAX_ID}), got "
                                     f"{_quoted(text)}")])
    return int(text)


# --- JSON --------------------------------------------------------------------------------------


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {key!r} is given twice")
        obj[key] = value
    return obj


def _depth(data: object, limit: int) -> bool:
    """Whether ``data`` nests at most ``limit`` levels (iteratively: no recursion)."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            return False
        stack.extend((child, level + 1) for child in children)
    return True


def loads(raw: bytes | str, *, what: str = "request body", max_depth: int = MAX_DEPTH) -> Any:
    """Strict JSON: UTF-8, no ``NaN``/``Infinity``, no key given twice, at most ``max_depth``
    levels deep. :class:`~hivekit.errors.BadRequest` saying what is wrong otherwise."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = json.loads(text, parse_constant=_refuse_constant,
                          object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not UTF-8 text") from None
    except RecursionError:
        raise BadRequest(f"{what} nests deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
    if not _depth(data, max_depth):
        raise BadRequest(f"{what} nests deeper than {max_depth} levels")
    return data


def to_json(obj: Any, as_: Any = None) -> str:
    """Compact JSON for ``obj``; pass ``as_=events.Event`` (or HelperEvent) to include the tag."""
    return json.dumps(converter.unstructure(obj, as_ or type(obj)), separators=(",", ":"))


def event_dict(event: events.Event) -> dict[str, Any]:
    """A dashboard event as a JSON-ready dict with its ``type``."""
    return converter.unstructure(event, events.Event)


def helper_event(body: str) -> events.HelperEvent | None:
    """The helper event a ``system`` message's body holds, or None when it holds none (a
    wake-up note, or an event type this hivekit does not know)."""
    try:
        return structure(loads(body, what="the helper event"), events.HelperEvent)  # type: ignore[arg-type]
    except BadRequest:
        return None
