"""The running hive: what every hook receives as ``hive``.

It holds the config, the paths, the store, the event bus and the plugin manager, and offers the
few services plugins and actions share: per-agent operations (lock + transient state), the live
log, and messages to inboxes. It does no domain work itself: see :mod:`hivekit.actions` and
:mod:`hivekit.deploy`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pluggy

from hivekit import events, plugins
from hivekit.bus import EventBus
from hivekit.config import Config
from hivekit.convert import to_json
from hivekit.doorbell import Doorbell
from hivekit.errors import Conflict
from hivekit.events import Envelope
from hivekit.names import agent_port
from hivekit.paths import Paths, private_dir
from hivekit.plugins import Loaded
from hivekit.records import AgentSpec, Message, Mount, Transient
from hivekit.store import Store
from hivekit.view import HiveView

log = logging.getLogger("hivekit")
T = TypeVar("T")

#: The sender name of messages hivekit itself sends (helper events, wake-ups).
SYSTEM = "system"
#: The sender name of the operator's messages.
OPERATOR = "operator"


class Operation:
    """One lifecycle operation on one agent: holds its lock and shows its transient state.

    Created by :meth:`Hive.begin` (which refuses a second operation on a busy agent); released
    when its ``with`` block ends, however it ends. It may be handed to another thread first.
    """

    def __init__(self, hive: Hive, name: str, kind: Transient, lock: threading.Lock) -> None:
        self.hive, self.name, self.kind, self._lock = hive, name, kind, lock
        self._done = False

    def __enter__(self) -> Operation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._done:
            return
        self._done = True
        self.hive._transients.pop(self.name, None)
        self._lock.release()
        self.hive.bus.publish(events.TransientChanged(name=self.name, transient=None))
        try:
            self.hive.view.end(self.name)
        except Exception:  # a plugin's badges are logged there; anything else must not escape
            log.exception("could not remake %r's row after its %s", self.name, self.kind.value)


class Unset:
    """The type of :data:`UNSET`: an argument that was not given (None means something)."""


UNSET = Unset()

#: Agent specs kept (far more than a hive has agents).
MAX_SPECS = 10_000
#: Lines of the live log kept per agent for a page that opens later (``GET /api/logs``).
LOG_HISTORY = 200


class LogHistory:
    """The live log's recent lines, per agent, each with its seq and time: what a dashboard
    opened now shows before the events that follow. Bounded per agent; thread-safe."""

    def __init__(self, per_agent: int = LOG_HISTORY) -> None:
        self.per_agent = per_agent
        self._lock = threading.Lock()
        self._lines: dict[str, deque[tuple[float, Envelope]]] = {}

    def add(self, agent: str, env: Envelope) -> None:
        with self._lock:
            kept = self._lines.get(agent)
            if kept is None:
                if len(self._lines) >= MAX_SPECS:  # agent names are the hive's; still bounded
                    return
                kept = self._lines[agent] = deque(maxlen=self.per_agent)
            kept.append((time.time(), env))

    def recent(self, agent: str | None = None, limit: int = LOG_HISTORY) -> list[
            tuple[float, Envelope]]:
        """The newest ``limit`` entries (of ``agent``, or of every agent), oldest first."""
        with self._lock:
            if agent is not None:
                found = list(self._lines.get(agent, ()))
            else:
                found = sorted((e for kept in self._lines.values() for e in kept),
                               key=lambda e: e[1].seq)
        return found[-limit:] if limit > 0 else []

    def forget(self, agent: str) -> None:
        with self._lock:
            self._lines.pop(agent, None)


class Hive:
    """The running hive, as every hook receives it.

    What a plugin may use (:data:`PLUGIN_API`; a test holds the bundled plugins to it):

    * ``config`` (the read config: ``config.hive`` is the ``[hive]`` table), ``paths``
      (:class:`hivekit.paths.Paths`: state, runtime, agents, applied, meta, shared dirs),
      ``manager`` (the manager's name), :meth:`resolve_path` (a path from the config file,
      relative to its directory);
    * :meth:`plugin_config` (a plugin's structured table), :meth:`plugin_state` (an object a
      plugin keeps for this hive), ``stopping`` (a ``threading.Event`` set when the daemon
      stops: long work checks it);
    * :meth:`agent` (an agent's :class:`AgentSpec`), :meth:`agent_names`, :meth:`has_agent`,
      :meth:`port`, :meth:`agent_env` (the identity environment a backend gives an agent);
    * :meth:`log` and :meth:`line_logger` (the live log), :meth:`log_event` (an event the live
      log shows as an agent's line, kept in its history), ``history`` (the live log's recent
      lines: ``history.recent(name)``), :meth:`send`, :meth:`notify`,
      :meth:`notify_manager` (messages to inboxes), ``bus`` (``bus.publish(event)``: the
      dashboard's event stream), ``doorbell`` (wakes long-polling receivers);
    * :meth:`report_status` (a backend's status channel: what it learnt of an agent's status)
      and :meth:`refresh` (an agent's badges changed), ``view`` (every agent's row and every
      tombstone, kept in memory: :class:`hivekit.view.HiveView`; ``view.rows()``,
      ``view.row(name)``: reading it calls no plugin);
    * ``hook`` (call a hook: ``hive.hook.is_running(hive=hive, agent=agent)``), :meth:`each`
      and :meth:`call_each` (call one plugin at a time), :meth:`now`.

    Everything else (``store``, ``loaded``, ``pm``, the locks) is the core's own.
    """

    #: The attributes a plugin may use (see the class docstring).
    PLUGIN_API = frozenset({
        "config", "paths", "manager", "resolve_path", "plugin_config", "plugin_state",
        "stopping", "agent", "agent_names", "has_agent", "port", "agent_env", "log",
        "line_logger", "log_event", "history", "send", "notify", "notify_manager", "bus",
        "doorbell", "hook", "each", "call_each", "now", "report_status", "refresh", "view",
    })

    def __init__(self, config: Config, loaded: Loaded, store: Store | None = None,
                 bus: EventBus | None = None) -> None:
        self.config = config
        self.loaded = loaded
        self.pm: pluggy.PluginManager = loaded.pm
        self.hook = loaded.pm.hook
        self.paths = Paths(config.state_dir, config.runtime_dir)
        self.manager = config.hive.manager
        self.bus = bus or EventBus()
        private_dir(self.paths.state_dir)
        self.store = store or Store(self.paths.db)
        #: Rung for every message sent: wakes ``recv`` long-polls (see :mod:`hivekit.broker`).
        self.doorbell = Doorbell()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._transients: dict[str, Transient] = {}
        self._plugin_state: dict[str, Any] = {}
        self._state_lock = threading.Lock()
        self._specs: dict[str, AgentSpec] = {}
        #: The live log's recent lines (:meth:`log`, deploy steps, outcomes) for late pages.
        self.history = LogHistory()
        #: Every agent's row and every tombstone, kept in memory (see :mod:`hivekit.view`).
        self.view = HiveView(self)
        #: Set when the daemon is stopping; background work checks it.
        self.stopping = threading.Event()
        #: Agent → the sha deployed before the apply now running on it: what the agent is shown
        #: as running until that apply succeeds (its ``main`` moves before the build).
        self.deploying: dict[str, str] = {}

    # --- plugins ---------------------------------------------------------------------------

    def plugin_config(self, name: str) -> Any:
        """The named plugin's structured config table (its ``config_schema`` class)."""
        return self.loaded.plugin_configs[name]

    def each(self, hook: str, **kwargs: Any) -> Iterator[tuple[str, Callable[[], Any]]]:
        """Each plugin's implementation of ``hook`` in call order, as ``(plugin, call)``.

        For hooks whose results or failures must be told apart by plugin (pluggy's own call
        merges results and stops at the first exception). Each ``call()`` goes through pluggy,
        so ``HIVEKIT_TRACE_PLUGINS`` shows it. Such hooks are listed in
        :data:`hivekit.hookspecs.PER_PLUGIN` and take no wrapper implementations.
        """
        return plugins.each(self.pm, hook, **kwargs)

    def plugin_state(self, key: str, factory: Callable[[], T]) -> T:
        """The object a plugin keeps for this hive between hook calls, made once by ``factory``.

        Hooks run on several threads: the first caller makes it (under a lock), every later one
        gets the same object. Key it by the plugin's name. It lives as long as the hive.
        """
        with self._state_lock:
            if key not in self._plugin_state:
                self._plugin_state[key] = factory()
            return self._plugin_state[key]

    def call_each(self, hook: str, **kwargs: Any) -> None:
        """Call an observer hook one plugin at a time, logging (not raising) their exceptions.

        Observers (deploy_step, approval_resolved, agent_started, shutdown...) must each get
        their call even when another plugin's fails.
        """
        for plugin, call in self.each(hook, **kwargs):
            try:
                call()
            except Exception:
                log.exception("plugin %r failed in hook %s (ignored)", plugin, hook)

    # --- agents ----------------------------------------------------------------------------

    def port(self, name: str) -> int:
        h = self.config.hive
        return agent_port(name, manager=self.manager, manager_port=h.manager_port,
                          base=h.port_base, span=h.port_range)

    def agent_names(self) -> list[str]:
        """Every registered agent's name (spawned and not destroyed), sorted."""
        return self.store.agent_names()

    def has_agent(self, name: str) -> bool:
        """Whether agent ``name`` is registered."""
        return self.store.has_agent(name)

    def resolve_path(self, path: Path | str) -> Path:
        """A path from the config: relative ones are relative to the config file's directory
        (the current directory for the embedded defaults), as hivekit's own are."""
        path = Path(path)
        return path if path.is_absolute() else (self.config.base_dir / path).resolve()

    def agent(self, name: str) -> AgentSpec:
        """The spec of agent ``name`` (whether or not it exists: callers check)."""
        # Derived from the config alone, and frozen: made once per name. Building its paths
        # was a third of GET /api/state's time with 900 agents (bench/state.py).
        spec = self._specs.get(name)
        if spec is None:
            spec = AgentSpec(name=name, port=self.port(name), is_manager=name == self.manager,
                             paths=self.paths.agent(name))
            if len(self._specs) < MAX_SPECS:  # names from requests: keep the cache bounded
                self._specs[name] = spec
        return spec

    def mounts(self, agent: AgentSpec) -> list[Mount] | None:
        """The agent's mount table, as its backend gives it (hook ``agent_mounts``); None when
        the agent sees the host's own filesystem."""
        mounts = self.hook.agent_mounts(hive=self, agent=agent)
        return None if mounts is None else list(mounts)

    def inside(self, agent: AgentSpec, path: Path | str) -> str | None:
        """Where ``agent`` sees host ``path``: under the mount with the longest matching host
        path; ``path`` itself when the agent sees the host; None when nothing shows it."""
        from hivekit.identity import inside

        mounts = self.mounts(agent)
        return inside(Path(path), None if mounts is None else
                      [(m.host, m.inside) for m in mounts])

    def agent_env(self, agent: AgentSpec,
                  mounts: Iterable[tuple[Path, str]] | Unset | None = UNSET) -> dict[str, str]:
        """The agent's identity environment (every ``HIVE_*`` variable, :mod:`hivekit.identity`).

        :param mounts: ``(host path, path inside)`` for each host directory the backend makes
            visible to the agent; paths are given as the agent sees them, and a variable whose
            path it cannot see is left out. None: the agent sees the host's paths as they are.
            Left out: the backend's mount table (:meth:`mounts`).
        """
        from hivekit.identity import agent_env

        if isinstance(mounts, Unset):
            table = self.mounts(agent)
            mounts = None if table is None else [(m.host, m.inside) for m in table]
        return agent_env(self, agent, mounts)

    def begin(self, name: str, kind: Transient) -> Operation:
        """Start a lifecycle operation on ``name``; refused while another one runs on it."""
        with self._locks_guard:
            lock = self._locks.setdefault(name, threading.Lock())
        if not lock.acquire(blocking=False):
            busy = self._transients.get(name)
            doing = f" ({busy.value})" if busy else ""
            raise Conflict(f"agent {name!r} is busy{doing}; wait for it to finish and retry")
        self._transients[name] = kind
        self.bus.publish(events.TransientChanged(name=name, transient=kind))
        self.view.begin(name, kind)
        return Operation(self, name, kind, lock)

    def shift(self, name: str, kind: Transient) -> None:
        """The operation running on ``name`` goes on as ``kind`` (a deploy verifying its
        build): shown at once, what was known of the agent's status kept."""
        if name not in self._transients:
            raise RuntimeError(f"no operation runs on {name!r}")
        self._transients[name] = kind
        self.bus.publish(events.TransientChanged(name=name, transient=kind))
        self.view.shift(name, kind)

    def transients(self) -> dict[str, Transient]:
        return dict(self._transients)

    def report_status(self, agent: AgentSpec | str, status: str, *, detail: str | None = None,
                      exit_code: int | None = None, output: list[str] | None = None) -> None:
        """The backend's status channel: say that the agent's status changed.

        Callable from any thread, at any time, as often as the backend learns something
        (cheap when nothing changed: no event then). The agent's row takes ``status`` (one of
        ``running``, ``stopped``, ``failing``; ``spawning`` is the core's own), ``detail`` (your
        words, shown beside it: "crashed, restarting (restart 4)"), ``exit_code`` and ``output``
        (its last lines; the last 20 are kept) — each replacing what an earlier report said —
        and every client hears the new row as an ``agent_changed`` event. What a report says
        holds until the next report, or until a lifecycle operation on the agent begins (its
        outcome is learnt anew when it ends). A report for an agent being spawned is kept for
        the row its spawn makes; one for a name without a row, until it gets one.

        :raises ValueError: ``status`` is not one of the above (nothing changes).
        :raises TypeError: another argument has the wrong type (nothing changes).
        """
        self.view.report(agent, status, detail=detail, exit_code=exit_code, output=output)

    def refresh(self, agent: AgentSpec | str) -> None:
        """Remake the agent's row now: every plugin's ``agent_badges`` runs again for it.

        Badges run only when a row is made (when the hive starts, when an operation on the
        agent ends), not for every snapshot: a plugin whose badges for ``agent`` changed in
        between calls this (from any thread). An ``agent_changed`` event follows if the row
        changed. Does nothing for a name the hive does not know.
        """
        self.view.refresh(agent)

    def log(self, agent: AgentSpec | str, line: str, stream: str = "stdout") -> None:
        """A line of an agent's output or of an operation on it: the daemon's log, the
        dashboard's live log, and the live log's history (:attr:`history`).

        :param agent: the agent, as the hooks pass it (an :class:`AgentSpec`) or by name.
        :param stream: where the line came from: ``stdout``, ``stderr``, or ``hive`` for what
            hivekit or a plugin says about the agent.
        Safe from any thread. Any other type for ``agent`` is a TypeError (a bug in the caller).
        """
        name = agent.name if isinstance(agent, AgentSpec) else agent
        if not isinstance(name, str):
            raise TypeError(f"hive.log: agent must be an AgentSpec or a name, not "
                            f"{type(agent).__name__}")
        log.info("[%s] %s", name, line)
        self.log_event(name, events.LogLine(agent=name, line=str(line), stream=str(stream)))

    def log_event(self, agent: str, event: events.Event) -> Envelope:
        """Publish an event the live log shows as a line of ``agent``'s, and keep it in the
        live log's history (deploy steps and outcomes, besides :meth:`log`'s lines)."""
        env = self.bus.publish(event)
        self.history.add(agent, env)
        return env

    def line_logger(self, agent: AgentSpec | str) -> Callable[[str, str], None]:
        """An ``on_line(stream, line)`` for :func:`hivekit.proc.run` that feeds :meth:`log`."""
        return lambda stream, line: self.log(agent, line, stream)

    # --- messages --------------------------------------------------------------------------

    def send(self, sender: str, recipient: str, body: str) -> Message:
        """Put a message in ``recipient``'s inbox (stored first, then announced on the bus)."""
        message = self.store.add_message(sender, recipient, body)
        self.doorbell.ring(recipient)
        self.bus.publish(events.MessageSent(message=message))
        return message

    def notify(self, agent: str, event: events.HelperEvent) -> Message:
        """A helper event (JSON, tagged by ``type``) from ``system`` into ``agent``'s inbox."""
        return self.send(SYSTEM, agent, to_json(event, events.HelperEvent))

    def notify_manager(self, event: events.HelperEvent) -> None:
        """A helper event (JSON, tagged by ``type``) into the manager's inbox."""
        self.notify(self.manager, event)

    # --- crash points ------------------------------------------------------------------------

    def checkpoint(self, point: str, agent: str) -> None:
        """Durable state of ``agent`` just changed at ``point`` (declared in
        :mod:`hivekit.crashpoints`): the ``checkpoint`` observers hear it.

        :raises KeyError: ``point`` is not declared (a bug: every point must be in the table).
        """
        from hivekit.crashpoints import POINTS

        if point not in POINTS:
            raise KeyError(f"crash point {point!r} is not declared in hivekit.crashpoints")
        self.call_each("checkpoint", hive=self, agent=agent, point=point)

    # --- misc ------------------------------------------------------------------------------

    @staticmethod
    def now() -> float:
        return time.time()

    def ensure_dirs(self) -> None:
        """The hive's directories: the state and runtime dirs private (:func:`private_dir`)."""
        for d in (self.paths.state_dir, self.paths.runtime_dir):
            private_dir(d)
        for d in (self.paths.agents_root, self.paths.applied_root, self.paths.shared):
            Path(d).mkdir(parents=True, exist_ok=True)
