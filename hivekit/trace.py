"""``HIVEKIT_TRACE_PLUGINS=1``: every hook call, plugin by plugin, with what each returned.

One line per implementation called, written to stderr when it returns (or raises)::

    hivekit trace: spawn(agent=coder): port_check (wrapper) -> None
    hivekit trace: spawn(agent=coder): fake -> None
    hivekit trace: agent_badges(agent=coder): core-badges -> [Badge(label='needs login', ...)]
    hivekit trace: rebuild(agent=coder, deploy=#3 coder): fake raised OperationFailed: ...
    hivekit trace: approval_requested(approval=#4 spawn tester pending): (no plugin)

It wraps the plugin manager's hook executor, which every call goes through: a hook called on
every plugin at once (``hive.hook.spawn(...)``) and one called plugin by plugin
(:meth:`hivekit.hive.Hive.each`) alike.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

import pluggy

PREFIX = "hivekit trace: "
#: Longest rendering of one argument or result.
MAX_VALUE = 160

_write_lock = threading.Lock()


def _write(line: str) -> None:
    with _write_lock:
        print(PREFIX + line, file=sys.stderr, flush=True)


def short(value: Any, limit: int = MAX_VALUE) -> str:
    """``value`` in a few words: records by what names them, the rest by a clipped repr."""
    from hivekit.records import AgentSpec, Approval, Deploy, Request

    if isinstance(value, Request):
        sha = f" {value.sha[:12]}" if value.sha else ""
        return f"{value.kind.value} {value.agent.name}{sha}"
    if isinstance(value, AgentSpec):
        return value.name
    if isinstance(value, Deploy):
        return f"#{value.approval_id} {value.agent.name}"
    if isinstance(value, Approval):
        return f"#{value.id} {value.kind.value} {value.agent} {value.status.value}"
    if isinstance(value, list) and all(isinstance(v, AgentSpec | Approval) for v in value):
        text = "[" + ", ".join(short(v) for v in value) + "]"
    elif callable(value) and hasattr(value, "__name__"):
        text = f"<{value.__name__}>"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def describe_call(hook: str, kwargs: Mapping[str, Any]) -> str:
    # The hive is in every call and says nothing.
    args = ", ".join(f"{k}={short(v, 60)}" for k, v in kwargs.items() if k != "hive")
    return f"{hook}({args})"


class _Traced:
    """A hook implementation as pluggy's executor uses it, reporting its own outcome."""

    __slots__ = ("argnames", "function", "hookwrapper", "kwargnames", "optionalhook", "opts",
                 "plugin", "plugin_name", "tryfirst", "trylast", "wrapper")

    def __init__(self, impl: pluggy.HookImpl, call: str) -> None:
        for attr in self.__slots__:
            if attr != "function":
                setattr(self, attr, getattr(impl, attr))
        self.function = self._wrap(impl, call)

    def _wrap(self, impl: pluggy.HookImpl, call: str) -> Callable[..., Any]:
        name, function = impl.plugin_name, impl.function
        if impl.wrapper or impl.hookwrapper:
            def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
                try:
                    result = yield from function(*args, **kwargs)
                except BaseException as exc:
                    _write(f"{call}: {name} (wrapper) raised {type(exc).__name__}: {exc}")
                    raise
                _write(f"{call}: {name} (wrapper) -> {short(result)}")
                return result
            return wrapper

        def plain(*args: Any, **kwargs: Any) -> Any:
            try:
                result = function(*args, **kwargs)
            except BaseException as exc:
                _write(f"{call}: {name} raised {type(exc).__name__}: {exc}")
                raise
            _write(f"{call}: {name} -> {short(result)}")
            return result
        return plain


def enable(pm: pluggy.PluginManager) -> None:
    """Trace every hook call of ``pm`` to stderr (see the module's docstring)."""
    # pluggy's public monitoring (add_hookcall_monitoring) sees a call's merged result only;
    # wrapping the executor it wraps too lets each implementation report its own.
    inner = pm._inner_hookexec

    def traced(hook: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any],
               firstresult: bool) -> Any:
        call = describe_call(hook, kwargs)
        if not impls:
            _write(f"{call}: (no plugin)")
        return inner(hook, [_Traced(i, call) for i in impls], kwargs, firstresult)

    pm._inner_hookexec = traced
