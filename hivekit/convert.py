"""The one converter for every boundary: TOML config, JSON API, inbox helper events, SQLite rows.

Extra keys are forbidden everywhere, and structuring errors are turned into one line per problem
with :func:`problems` (``hive.backend: expected str``) instead of a traceback.
"""

from __future__ import annotations

import json
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter
from cattrs.strategies import configure_tagged_union

from hivekit import events


def _tag(cls: type) -> str:
    return cls.TYPE  # type: ignore[attr-defined]


def make() -> cattrs.Converter:
    conv = make_converter(forbid_extra_keys=True)
    configure_tagged_union(events.Event, conv, tag_generator=_tag, tag_name="type")
    configure_tagged_union(events.HelperEvent, conv, tag_generator=_tag, tag_name="type")
    return conv


converter = make()


def to_json(obj: Any, as_: Any = None) -> str:
    """Compact JSON for ``obj``; pass ``as_=events.Event`` (or HelperEvent) to include the tag."""
    return json.dumps(converter.unstructure(obj, as_ or type(obj)), separators=(",", ":"))


def event_dict(event: events.Event) -> dict[str, Any]:
    """A dashboard event as a JSON-ready dict with its ``type``."""
    return converter.unstructure(event, events.Event)


def problems(exc: BaseException, path: str = "") -> list[str]:
    """One line per problem in a cattrs error, each qualified by ``path`` (``[hive]`` etc.)."""
    if isinstance(exc, cattrs.BaseValidationError):
        lines = cattrs.transform_error(exc, path=path or "$")
        return [_tidy(line) for line in lines]
    return [f"{path}: {exc}" if path else str(exc)]


def _tidy(line: str) -> str:
    # cattrs says "extra fields found (x) @ $.hive"; operators read "hive: extra fields found (x)".
    if " @ " in line:
        msg, _, where = line.rpartition(" @ ")
        where = where.removeprefix("$.").removeprefix("$")
        return f"{where}: {msg}" if where else msg
    return line
