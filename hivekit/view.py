"""The hive as the operator sees it, kept in memory: every agent's row and every tombstone.

A row (:class:`~hivekit.records.AgentView`) is *made* — its badges run, its deployed sha read,
its status taken from what the core knows — when the hive starts, when a lifecycle operation or
a deploy on the agent ends, and when a plugin asks for it (:meth:`HiveView.refresh`). Between
those, two things *update* it in place: an operation beginning (its ``transient``) and the
backend reporting a status (:meth:`HiveView.report`, reached as ``hive.report_status``). So
reading rows, and serialising them for ``GET /api/state``, never calls a plugin.

What the core knows of an agent's status comes from the backend's reports; when it knows
nothing (the backend has not reported since the last operation on the agent began), it asks
the backend's ``is_running`` once, when the row is made, and remembers the answer.

Every change to a row or a tombstone is published as one ``agent_changed`` event carrying the
whole new row (and the tombstone), under this view's lock, so events leave in the order the
changes were made.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import evolve, frozen

from hivekit import events
from hivekit.convert import to_json
from hivekit.git import read_ref
from hivekit.names import check_name
from hivekit.records import AgentSpec, AgentStatus, AgentView, Badge, Tombstone, Transient

if TYPE_CHECKING:
    from hivekit.hive import Hive

log = logging.getLogger("hivekit")
T = TypeVar("T")

STATUSES = tuple(s.value for s in AgentStatus)
#: Output lines kept with a report (the last ones).
MAX_OUTPUT_LINES = 20
#: Characters kept of each output line and of a detail.
MAX_TEXT = 1000
#: Names whose reports are kept before any row exists for them (a report racing a spawn).
MAX_UNKNOWN = 10_000


@frozen
class Known:
    """What the core last learned about an agent's status: a report, or ``is_running``'s answer."""

    status: str
    detail: str | None = None
    exit_code: int | None = None
    output: tuple[str, ...] = ()


def check_report(status: object, detail: object, exit_code: object, output: object) -> Known:
    """A backend's report, checked: :class:`TypeError`/:class:`ValueError` naming what is wrong.

    A long detail or line is cut to :data:`MAX_TEXT` characters and only the last
    :data:`MAX_OUTPUT_LINES` lines are kept.
    """
    if not isinstance(status, str) or status not in STATUSES:
        raise ValueError(f"report_status: status must be one of {', '.join(STATUSES)}, "
                         f"got {status!r}")
    if detail is not None and not isinstance(detail, str):
        raise TypeError(f"report_status: detail must be a str or None, got "
                        f"{type(detail).__name__}")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
        raise TypeError(f"report_status: exit_code must be an int or None, got "
                        f"{type(exit_code).__name__}")
    lines: tuple[str, ...] = ()
    if output is not None:
        if isinstance(output, str) or not isinstance(output, list | tuple):
            raise TypeError("report_status: output must be a list of str (the last lines), got "
                            f"{type(output).__name__}")
        if not all(isinstance(line, str) for line in output):
            raise TypeError("report_status: output must be a list of str")
        lines = tuple(line[:MAX_TEXT] for line in output[-MAX_OUTPUT_LINES:])
    return Known(status=status, detail=detail[:MAX_TEXT] if detail else detail,
                 exit_code=exit_code, output=lines)


class HiveView:
    """Every agent's row and every tombstone of one hive (``hive.view``); thread-safe."""

    def __init__(self, hive: Hive) -> None:
        self.hive = hive
        self._lock = threading.Lock()
        self._rows: dict[str, AgentView] = {}
        self._row_json: dict[str, str] = {}
        self._tombstones: dict[str, Tombstone] = {}
        self._known: dict[str, Known] = {}
        #: Bumped on every change to a row or a tombstone.
        self._version = 0
        self._cache: dict[str, tuple[int, Any]] = {}
        # Tickets: a row made from older facts never replaces one made from newer ones.
        self._started: dict[str, int] = {}
        self._installed: dict[str, int] = {}
        self._seeded = False
        self._seed_lock = threading.Lock()
        # Crashes to tell the agent_crashed observers, in order, on one thread of the view's.
        self._crashes: queue.SimpleQueue[tuple[AgentSpec, str, str]] = queue.SimpleQueue()
        self._teller: threading.Thread | None = None

    # --- reading (never calls a plugin once seeded) ---------------------------------------------

    @property
    def seeded(self) -> bool:
        """Whether the rows were made (reading them no longer calls any plugin)."""
        return self._seeded

    @property
    def version(self) -> int:
        """Changes with every change to a row or a tombstone."""
        self._ensure_seeded()
        return self._version

    def rows(self) -> list[AgentView]:
        """Every agent's row (registered, or being spawned), by name."""
        self._ensure_seeded()
        return self._cached("rows", lambda: [self._rows[n] for n in sorted(self._rows)])

    def row(self, name: str) -> AgentView | None:
        self._ensure_seeded()
        return self._rows.get(name)

    def reported(self, name: str) -> Known | None:
        """What the backend reported of the agent's status since the last operation on it
        began (None: nothing)."""
        with self._lock:
            return self._known.get(name)

    def last_output(self, name: str) -> list[str]:
        """The agent's last output lines as its backend last reported them (also while an
        operation runs on it, or it is being spawned)."""
        with self._lock:
            known = self._known.get(name)
            if known is not None and known.output:
                return list(known.output)
            row = self._rows.get(name)
            return list(row.output) if row is not None else []

    def tombstones(self) -> list[Tombstone]:
        """Agents destroyed with their state kept, by name (none that is being spawned again)."""
        self._ensure_seeded()
        return self._cached("tombstones",
                            lambda: [self._tombstones[n] for n in sorted(self._tombstones)])

    def rows_json(self) -> bytes:
        """:meth:`rows` as a JSON array (each row encoded once, when it changed)."""
        self._ensure_seeded()
        return self._cached("rows_json", lambda: (
            "[" + ",".join(self._row_json[n] for n in sorted(self._rows)) + "]").encode())

    def tombstones_json(self) -> bytes:
        self._ensure_seeded()
        return self._cached("tombstones_json", lambda: ("[" + ",".join(
            to_json(self._tombstones[n]) for n in sorted(self._tombstones)) + "]").encode())

    def _cached(self, key: str, make: Callable[[], T]) -> T:
        """``make()`` (run under the lock), remembered until the next change."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == self._version:
                return hit[1]
            value = make()
            self._cache[key] = (self._version, value)
            return value

    # --- seeding ---------------------------------------------------------------------------------

    def seed(self) -> None:
        """Make every registered agent's row and list the tombstones (once; the daemon does it
        at the end of startup, after the backend's own startup could report). Rows an operation
        already made are kept."""
        self._ensure_seeded()

    def _ensure_seeded(self) -> None:
        if self._seeded:
            return
        with self._seed_lock:
            if self._seeded:
                return
            for name in self.hive.store.agent_names():
                if name not in self._rows:
                    self._remake(name, publish=False)
            for name in self._tombstone_dirs():
                if name not in self._rows and name not in self._tombstones:
                    self._remake(name, publish=False)
            self._seeded = True

    def _tombstone_dirs(self) -> list[str]:
        try:
            # scandir: its entries know whether they are dirs without a stat each.
            with os.scandir(self.hive.paths.agents_root) as entries:
                return sorted(e.name for e in entries if e.is_dir())
        except FileNotFoundError:
            return []

    # --- what changes rows -----------------------------------------------------------------------

    def begin(self, name: str, kind: Transient) -> None:
        """An operation began on ``name``: its outcome supersedes what was known of the status."""
        port, is_manager = self.hive.port(name), name == self.hive.manager
        sha = read_ref(self.hive.paths.agent(name).applied) if kind == Transient.SPAWNING else None
        with self._lock:
            self._known.pop(name, None)
            row = self._rows.get(name)
            tomb = self._tombstones.get(name)
            if kind == Transient.SPAWNING:
                row = AgentView(name=name, status=AgentStatus.SPAWNING.value, port=port,
                                deployed_sha=sha, transient=kind, is_manager=is_manager)
                tomb = None
            elif row is not None:
                row = evolve(row, transient=kind)
            else:
                return
            self._set(name, row, tomb)

    def shift(self, name: str, kind: Transient) -> None:
        """The operation on ``name`` goes on as ``kind``; the status known is kept."""
        with self._lock:
            row = self._rows.get(name)
            if row is not None and row.status != AgentStatus.SPAWNING:
                self._set(name, evolve(row, transient=kind), self._tombstones.get(name))

    def end(self, name: str) -> None:
        """An operation on ``name`` ended (however it ended): remake its row."""
        self._remake(name)

    def refresh(self, agent: AgentSpec | str) -> None:
        """Remake the agent's row now (its badges run again); an event only if it changed."""
        name = agent.name if isinstance(agent, AgentSpec) else check_name(agent)
        self._remake(name)

    def report(self, agent: AgentSpec | str, status: object, *, detail: object = None,
               exit_code: object = None, output: object = None) -> None:
        """The backend says the agent's status changed (see ``Hive.report_status``)."""
        name = agent.name if isinstance(agent, AgentSpec) else check_name(agent)
        known = check_report(status, detail, exit_code, output)
        with self._lock:
            if name not in self._rows and name not in self._known and \
                    len(self._known) >= MAX_UNKNOWN:
                return
            self._known[name] = known
            row = self._rows.get(name)
            if row is None or row.status == AgentStatus.SPAWNING:
                return  # remembered for the row the spawn's end makes
            # A crash: it was up, and it went down on its own (an operation's own reports,
            # and a stopping daemon's, are the operation's outcome, not a crash).
            crashed = (row.status == AgentStatus.RUNNING and known.status != row.status
                       and row.transient is None and name not in self.hive.transients()
                       and not self.hive.stopping.is_set())
            self._set(name, _with_status(row, known), self._tombstones.get(name))
        if crashed:
            self._tell_crashed(name, known)

    def _tell_crashed(self, name: str, known: Known) -> None:
        """``agent_crashed``, off the reporting (backend's) thread: queued for the view's one
        teller thread, so that observers hear crashes in the order they were reported, and a
        storm of them (every container of a host failing at once) costs one thread."""
        reason = known.detail or ("it stopped on its own" if known.status == "stopped"
                                  else "it is failing")
        if known.exit_code is not None and not known.detail:
            reason += f" (exit code {known.exit_code})"
        self._crashes.put((self.hive.agent(name), known.status, reason))
        with self._lock:
            if self._teller is None:
                self._teller = threading.Thread(target=self._tell, name="agent_crashed",
                                                daemon=True)
                self._teller.start()

    def _tell(self) -> None:
        while True:
            spec, status, reason = self._crashes.get()
            self.hive.call_each("agent_crashed", hive=self.hive, agent=spec, status=status,
                                reason=reason)

    # --- making rows -----------------------------------------------------------------------------

    def _remake(self, name: str, publish: bool = True) -> None:
        hive = self.hive
        with self._lock:
            ticket = self._started[name] = self._started.get(name, 0) + 1
        spec = hive.agent(name)
        transient = hive.transients().get(name)
        row: AgentView | None = None
        tomb: Tombstone | None = None
        if transient == Transient.SPAWNING:
            row = AgentView(name=name, status=AgentStatus.SPAWNING.value, port=spec.port,
                            deployed_sha=read_ref(spec.paths.applied), transient=transient,
                            is_manager=spec.is_manager)
        elif hive.store.has_agent(name):
            badges = self._badges(spec)
            with self._lock:
                known = self._known.get(name)
            if known is None:
                known = self._ask(spec)
                with self._lock:  # a report that came meanwhile is newer than the answer
                    known = self._known.setdefault(name, known)
            row = _with_status(
                AgentView(name=name, status=known.status, port=spec.port,
                          deployed_sha=self._deployed_sha(spec), transient=transient,
                          badges=badges, is_manager=spec.is_manager), known)
        elif spec.paths.config.is_dir():
            tomb = Tombstone(name=name, deployed_sha=read_ref(spec.paths.applied))
        with self._lock:
            if ticket < self._installed.get(name, 0):
                return  # a row made from newer facts is in place already
            self._installed[name] = ticket
            if row is None:
                self._known.pop(name, None)
                self._started.pop(name, None)
                self._installed.pop(name, None)
            else:
                # What may have moved while the row was made: the status, the transient.
                known = self._known.get(name)
                if known is not None and row.status != AgentStatus.SPAWNING:
                    row = _with_status(row, known)
                current = hive.transients().get(name)
                if current != row.transient and current != Transient.SPAWNING:
                    row = evolve(row, transient=current)
            self._set(name, row, tomb, publish)

    def _deployed_sha(self, spec: AgentSpec) -> str | None:
        # While an apply runs, main is the proposal already: not deployed until it succeeds.
        return self.hive.deploying.get(spec.name) or read_ref(spec.paths.applied)

    def _badges(self, spec: AgentSpec) -> list[Badge]:
        badges: list[Badge] = []
        for plugin, call in self.hive.each("agent_badges", hive=self.hive, agent=spec):
            try:
                badges += [b if isinstance(b, Badge) else Badge(label=str(b))
                           for b in call() or []]
            except Exception:
                log.exception("plugin %r failed in agent_badges (skipped)", plugin)
        return badges

    def _ask(self, spec: AgentSpec) -> Known:
        try:
            running = bool(self.hive.hook.is_running(hive=self.hive, agent=spec))
        except Exception:
            log.exception("the backend failed in is_running for %r (shown as stopped)", spec.name)
            running = False
        return Known(AgentStatus.RUNNING.value if running else AgentStatus.STOPPED.value)

    def _set(self, name: str, row: AgentView | None, tomb: Tombstone | None,
             publish: bool = True) -> None:
        """Install ``row`` and ``tomb`` for ``name`` (lock held); publish if anything changed."""
        if self._rows.get(name) == row and self._tombstones.get(name) == tomb:
            return
        if row is None:
            self._rows.pop(name, None)
            self._row_json.pop(name, None)
        else:
            self._rows[name] = row
            self._row_json[name] = to_json(row)
        if tomb is None:
            self._tombstones.pop(name, None)
        else:
            self._tombstones[name] = tomb
        self._version += 1
        if publish:
            self.hive.bus.publish(events.AgentChanged(name=name, agent=row, tombstone=tomb))


def _with_status(row: AgentView, known: Known) -> AgentView:
    return evolve(row, status=known.status, detail=known.detail, exit_code=known.exit_code,
                  output=list(known.output))
