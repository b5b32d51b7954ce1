"""Every agent container's status from **one** ``systemctl list-units`` call, on a timer.

The hive keeps each agent's status in memory and never asks the backend per snapshot; this
watcher is how the backend tells it (``hive.report_status``). Every ``status_interval`` seconds
it runs::

    systemctl list-units --plain --no-legend --no-pager --full --type=service 'container@*'

which lists the container units systemd has in memory that are active, have a job pending, or
failed (systemctl(1), "list-units"): one line each, ``UNIT LOAD ACTIVE SUB DESCRIPTION``
(``--plain``: no bullet before a failed unit; ``--no-legend``: no header or footer). A unit not
listed is inactive. It reports an agent only when its status changed since the last report.

The backend's own operations say what they did at once (:meth:`Watcher.mark`); a poll that was
already running when an operation ended on a container drops what it read about that container,
so a stale poll never undoes a fresher start or stop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from hivekit import run

if TYPE_CHECKING:
    from hivekit import Hive

log = logging.getLogger("hivekit.nixos_container")

#: (status, detail) as the hive's status channel takes them.
Status = tuple[str, str | None]


def list_units_argv(systemctl: str) -> list[str]:
    return [systemctl, "list-units", "--plain", "--no-legend", "--no-pager", "--full",
            "--type=service", "container@*"]


def parse_units(out: str) -> dict[str, tuple[str, str]]:
    """``{container: (ACTIVE, SUB)}`` from list-units' lines (a leading bullet is skipped, and so
    is a JOB column, which comes after SUB when a unit has a job pending)."""
    units = {}
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] in ("●", "*"):
            fields = fields[1:]
        if len(fields) < 4 or not fields[0].startswith("container@"):
            continue
        unit = fields[0].removesuffix(".service")
        units[unit[len("container@"):]] = (fields[2], fields[3])
    return units


def status_of(unit: tuple[str, str] | None, container: str) -> Status:
    """What a unit's ACTIVE/SUB state means for the agent (absent: stopped)."""
    if unit is None:
        return "stopped", None
    active, sub = unit
    name = f"container@{container}.service"
    if active in ("active", "reloading"):
        return "running", None if active == "active" else "reloading"
    if active == "failed":
        return "failing", (f"{name} failed ({sub}); `journalctl -u {name}` says why, "
                           f"`hivekit start` tries again")
    if active == "activating" and sub == "auto-restart":
        return "failing", f"{name} failed and systemd restarts it ({sub})"
    if active == "activating":
        return "stopped", f"starting ({sub})"
    if active == "deactivating":
        return "stopped", f"stopping ({sub})"
    return "stopped", None


class Watcher:
    """The containers' statuses, polled with one call per interval, reported when they change."""

    def __init__(self, hive: Hive, systemctl: str, interval: float, timeout: float,
                 container_name: Callable[[Hive, str], str]) -> None:
        self.hive = hive
        self.systemctl, self.interval, self.timeout = systemctl, interval, timeout
        self._container = container_name
        self._lock = threading.Lock()
        #: Per container: bumped by every operation's mark, so a poll can tell it went stale.
        self._epochs: dict[str, int] = {}
        #: Per agent: what was last reported.
        self._reported: dict[str, Status] = {}
        self._thread: threading.Thread | None = None
        self._failed = False

    def start(self) -> None:
        """Poll once now (the hive makes its rows after startup), then every interval."""
        self.poll()
        self._thread = threading.Thread(target=self._run, name="nixos-container-status",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self.hive.stopping.wait(self.interval):
            try:
                self.poll()
            except Exception:  # the store going away under a poll, say: the next one retries
                log.debug("nixos_container: a status poll failed", exc_info=True)

    def poll(self) -> None:
        """One ``list-units``; report every agent whose status changed since the last report."""
        with self._lock:
            epochs = dict(self._epochs)
        try:
            out = run(list_units_argv(self.systemctl), timeout=self.timeout)
        except Exception as exc:  # CommandFailed, ProgramMissing, a timeout
            if not self._failed:
                log.warning("nixos_container: cannot read the containers' status (%s); the "
                            "dashboard shows what was last known", exc)
            self._failed = True
            return
        if self._failed:
            log.info("nixos_container: reading the containers' status works again")
            self._failed = False
        units = parse_units(out)
        with self._lock:
            for name in self.hive.agent_names():
                container = self._container(self.hive, name)
                if self._epochs.get(container, 0) != epochs.get(container, 0):
                    continue  # an operation on it ended while we read: its mark is newer
                self._report(name, status_of(units.get(container), container))

    def mark(self, name: str, status: str) -> None:
        """An operation of the backend left agent ``name`` ``status``: report it now."""
        with self._lock:
            container = self._container(self.hive, name)
            self._epochs[container] = self._epochs.get(container, 0) + 1
            self._report(name, (status, None), force=True)

    def forget(self, name: str) -> None:
        with self._lock:
            container = self._container(self.hive, name)
            self._epochs[container] = self._epochs.get(container, 0) + 1
            self._reported.pop(name, None)

    def _report(self, name: str, status: Status, force: bool = False) -> None:
        # Under the lock: reports leave in the order the facts were learnt.
        if not force and self._reported.get(name) == status:
            return
        self._reported[name] = status
        try:
            self.hive.report_status(name, status[0], detail=status[1])
        except Exception:
            log.exception("nixos_container: could not report %s's status", name)
