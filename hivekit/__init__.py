"""hivekit: a control plane for a hive of AI agents.

**The plugin API.** Everything a plugin may import and rely on is a name of this module, listed
in ``__all__``; import it from here (``from hivekit import hookimpl, Hive, OperationFailed``),
never from hivekit's submodules, whose insides may change. Bundled plugins are held to the same
rule by a test. The names are grouped as follows:

* **hooks**: ``hookimpl`` (and ``hookspec``); the hooks are documented in
  :mod:`hivekit.hookspecs` and ``docs/plugin-hooks.md``.
* **the hive** a hook receives: :class:`Hive` (its docstring lists the attributes a plugin may
  use: ``hive.log``, ``hive.stopping``, ``hive.plugin_state``, ``hive.resolve_path``...),
  :class:`Paths` (``hive.paths``) and the records it hands out: :class:`AgentSpec`,
  :class:`AgentPaths`, :class:`AgentView` (its ``status`` one of :class:`AgentStatus`),
  :class:`AgentLog`, :class:`Approval`, :class:`ApprovalKind`, :class:`ApprovalDetail`,
  :class:`ApprovalStatus`, :class:`Badge`, :class:`BadgeLevel`, :class:`Deploy`,
  :class:`ExecPlan` (what ``agent_exec`` returns), :class:`Message`, :class:`Question`,
  :class:`Request`, :class:`Tombstone`, :class:`Transient`.
* **errors**: :class:`HiveError` and its kinds (:class:`BadRequest`, :class:`Forbidden`,
  :class:`NotFound`, :class:`Conflict`, :class:`OperationFailed`, :class:`PluginError`,
  :class:`ConfigError`), :class:`CommandFailed` (an external program failed) and
  :func:`describe` (an exception as the operator reads it).
* **tools**: :func:`run` (every external program: a timeout, its own process group, one
  :class:`CommandFailed`), :func:`follow` (a long-lived one's lines as they come: ``journalctl
  -f``) and :class:`ProgramMissing`; :class:`Repo` and :func:`read_ref` (git
  with hivekit's fixed environment); :func:`check_name` and ``NAME_RULE``; :func:`positive` (a
  validator for config classes); the module :mod:`~hivekit.identity` (the table of ``HIVE_*``
  variables) and :func:`environment_file` (an environment as systemd reads it);
  :func:`structure` (raw data into an attrs class, strictly: :class:`Invalid`, a
  ``BadRequest``, names the field), ``converter`` and :func:`to_json` (the converter every
  boundary uses), :func:`helper_event` (a ``system`` message's body as its helper event);
  :class:`Health` (what an agent's own config declares about its health, checked) and
  :func:`http_probe` (a GET on the agent's port), for a backend's ``health_check``.
* **operations** (what a surface offers, as the admin API calls them): the modules
  :mod:`~hivekit.actions`, :mod:`~hivekit.broker`, :mod:`~hivekit.questions` and
  :mod:`~hivekit.state` (``state.agent_view``, ``state.snapshot``), :mod:`~hivekit.creds` (an
  agent's credentials: ``creds.env_dir(agent)`` for a backend that hands them over), and the
  sender names ``OPERATOR`` and ``SYSTEM``.
* **events**: the module :mod:`~hivekit.events` (what clients hear; for a log line use
  ``hive.log``; an agent's row changes through ``hive.report_status`` and ``hive.refresh``,
  which publish its ``agent_changed``).
* **HTTP** (``register_routes``): ``HiveDep`` (a handler's ``hive: HiveDep``), ``PathStr``,
  ``FromQuery``; a route declares its body and query classes as ``opt={"body": Cls}`` /
  ``opt={"query": Cls}`` and reads them with :func:`body`, :func:`query` and :func:`path_id`
  (:func:`check_input`, the app's ``before_request``, structures them strictly first);
  :func:`error_handler`, :func:`create_app` (the whole API app, to serve it elsewhere, as the
  dashboard does), :func:`bind_unix` (a 0600 Unix socket), :class:`QuietServer` (a
  ``uvicorn.Server`` that sleeps when idle and stops at once: serve with it), and the request
  bodies :class:`SpawnRequest`, :class:`ApplyRequest`.
* **CLI** (``register_commands``): :func:`api_command` (a command that talks to the daemon gets
  its client: ``client.get/post/request/events/watch``), :class:`HiveContext` (``ctx.obj``:
  the config and ``client()``), :func:`fail`, :func:`print_json`; the click types
  :data:`AGENT_NAME` and :data:`ID` (checked before anything is sent: bad usage, exit 2),
  :func:`api_path` (percent-encoded path segments) and :func:`expect` (an answer checked to
  have its record's shape, else :class:`UnexpectedAnswer`).

Importing this module costs nothing: every name is imported on first use, pluggy included
(``hookimpl`` and ``hookspec`` are pluggy's markers for the ``hivekit`` project, made when a
plugin's import first asks for them), so ``hivekit --help`` imports none of it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: ``hookspec`` marks the declaration of a hook (in :mod:`hivekit.hookspecs`); ``hookimpl``
#: marks a plugin's implementation of one.
_MARKERS = {"hookspec": "HookspecMarker", "hookimpl": "HookimplMarker"}

#: Every other name of the plugin API, and the module it comes from.
_LAZY: dict[str, str] = {
    # the hive and its records
    "Hive": "hivekit.hive",
    "Paths": "hivekit.paths",
    **dict.fromkeys(("AgentLog", "AgentPaths", "AgentSpec", "AgentStatus", "AgentView",
                     "Approval", "ApprovalKind", "ApprovalDetail", "ApprovalStatus", "Badge",
                     "BadgeLevel", "Deploy", "ExecPlan", "Message", "Mount", "Question",
                     "Request", "Tombstone", "Transient"),
                    "hivekit.records"),
    # errors
    **dict.fromkeys(("HiveError", "BadRequest", "Forbidden", "NotFound", "Conflict",
                     "OperationFailed", "PluginError", "ConfigError", "CommandFailed",
                     "describe"), "hivekit.errors"),
    # tools
    "run": "hivekit.proc",
    "follow": "hivekit.proc",
    "ProgramMissing": "hivekit.proc",
    "Repo": "hivekit.git",
    "read_ref": "hivekit.git",
    "check_name": "hivekit.names",
    "NAME_RULE": "hivekit.names",
    "positive": "hivekit.config",
    "environment_file": "hivekit.identity",
    "converter": "hivekit.convert",
    "structure": "hivekit.convert",
    "Invalid": "hivekit.convert",
    "to_json": "hivekit.convert",
    "helper_event": "hivekit.convert",
    "Health": "hivekit.verify",
    "http_probe": "hivekit.verify",
    # operations and events: modules offered whole
    **dict.fromkeys(("actions", "broker", "questions", "state", "events", "identity",
                     "creds", "wake"),
                    "hivekit"),
    "OPERATOR": "hivekit.hive",
    "SYSTEM": "hivekit.hive",
    # HTTP
    **dict.fromkeys(("HiveDep", "PathStr", "FromQuery", "body", "query", "path_id",
                     "check_input", "error_handler", "create_app", "SpawnRequest",
                     "ApplyRequest"), "hivekit.api"),
    "bind_unix": "hivekit.sockets",
    "QuietServer": "hivekit.serving",
    # CLI
    **dict.fromkeys(("api_command", "HiveContext", "fail", "print_json", "AGENT_NAME", "ID",
                     "api_path", "expect", "UnexpectedAnswer"), "hivekit.cli"),
}

__all__ = ["__version__", "hookimpl", "hookspec", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _MARKERS:
        import pluggy

        marker = getattr(pluggy, _MARKERS[name])("hivekit")
        globals()[name] = marker
        return marker
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hivekit' has no attribute {name!r}")
    if module == "hivekit":  # a submodule offered whole
        value: Any = importlib.import_module(f"hivekit.{name}")
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
