"""The outbox: a transition and everything it owes, written in one transaction, told after it.

A terminal transition (an approval approved, failed or denied; an agent destroyed; an operator's
rebuild done) owes messages: helper events in the manager's inbox, the agent's wake-up. Those are
rows of the same database, so they are written in the transition's own transaction: they exist
exactly when the transition does, and exactly once. What cannot be part of a transaction — the
``approval_resolved`` observers, the bus's events, the inboxes' doorbells — is written in it as
one outbox entry, done after the commit, and then marked delivered. Startup delivers whatever
entries a crash left undelivered (:func:`drain`).

So every inbox hears an outcome exactly once, and observers hear it **at least once**: after a
crash between a call and its entry's mark they are called again, with the same ``outbox_id``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hivekit import events
from hivekit.convert import converter, to_json
from hivekit.records import Approval, ApprovalStatus, Message
from hivekit.store import OUTBOX_KEEP_SECONDS

if TYPE_CHECKING:
    from hivekit.hive import Hive

log = logging.getLogger("hivekit.outbox")


class Outcome:
    """What one transition owes, collected inside its transaction (see :func:`record`).

    Messages are stored at once (in the transaction); events, doorbells and observer calls are
    kept for the outbox entry the transaction ends with, and done by :meth:`deliver`.
    """

    def __init__(self, hive: Hive) -> None:
        self.hive = hive
        #: The outbox entry's id, once written (None when nothing is owed outside the store).
        self.id: int | None = None
        self.events: list[events.Event] = []
        self.rings: list[str] = []
        #: Ids of the approvals whose ``approval_resolved`` observers are owed a call.
        self.resolved: list[int] = []
        self.messages: list[Message] = []
        self._delivered = False

    # --- inside the transaction --------------------------------------------------------------

    def send(self, sender: str, recipient: str, body: str) -> Message:
        """Store a message now (in the transaction); its doorbell and bus event come later."""
        message = self.hive.store.add_message(sender, recipient, body)
        self.messages.append(message)
        self.rings.append(recipient)
        self.events.append(events.MessageSent(message=message))
        return message

    def notify(self, agent: str, event: events.HelperEvent) -> Message:
        """A helper event (JSON, tagged by ``type``) from ``system`` into ``agent``'s inbox."""
        from hivekit.hive import SYSTEM

        return self.send(SYSTEM, agent, to_json(event, events.HelperEvent))

    def notify_manager(self, event: events.HelperEvent) -> Message:
        return self.notify(self.hive.manager, event)

    def publish(self, event: events.Event) -> None:
        """A bus event, published once the transaction committed."""
        self.events.append(event)

    def approval_resolved(self, approval: Approval) -> None:
        """The ``approval_resolved`` observers are owed a call for ``approval``."""
        self.resolved.append(approval.id)

    def _payload(self) -> str:
        return json.dumps({
            "events": [converter.unstructure(e, events.Event) for e in self.events],
            "rings": self.rings,
            "approval_resolved": self.resolved,
        }, separators=(",", ":"))

    @classmethod
    def _load(cls, hive: Hive, entry_id: int, payload: str) -> Outcome:
        raw: dict[str, Any] = json.loads(payload)
        outcome = cls(hive)
        outcome.id = entry_id
        outcome.events = [converter.structure(e, events.Event)  # type: ignore[arg-type]
                          for e in raw.get("events", [])]
        outcome.rings = list(raw.get("rings", []))
        outcome.resolved = list(raw.get("approval_resolved", []))
        return outcome

    # --- after the commit --------------------------------------------------------------------

    def deliver(self) -> None:
        """Ring the doorbells, publish the events, call the observers; mark the entry done.

        Idempotent for the caller (a second call does nothing). Observers' exceptions are logged
        and ignored, as for every observer hook.
        """
        if self._delivered:
            return
        self._delivered = True
        hive = self.hive
        for inbox in dict.fromkeys(self.rings):
            hive.doorbell.ring(inbox)
        for event in self.events:
            env = hive.bus.publish(event)
            if isinstance(event, events.ApprovalChanged) and event.approval.status in (
                    ApprovalStatus.APPROVED, ApprovalStatus.DENIED, ApprovalStatus.FAILED):
                hive.history.add(event.approval.agent, env)  # the live log shows outcomes
        for approval_id in self.resolved:
            try:
                approval = hive.store.approval(approval_id)
            except Exception:  # gone (cannot happen: approvals are never deleted once visible)
                log.exception("outbox entry %s: approval #%s unreadable", self.id, approval_id)
                continue
            hive.call_each("approval_resolved", hive=hive, approval=approval,
                           outbox_id=self.id)
        if self.id is not None:
            hive.store.delivered([self.id])


@contextmanager
def record(hive: Hive) -> Iterator[Outcome]:
    """One transaction for a transition and what it owes; the outcome is delivered by the caller.

    Inside the ``with`` block, make the transition with the store (its methods nest in this
    transaction) and collect what it owes on the yielded :class:`Outcome`. When the block ends
    the transaction commits with the outbox entry; an exception rolls all of it back. Call
    :meth:`Outcome.deliver` once the rest of the work that must precede telling is done (a
    crash before that leaves the entry to :func:`drain`).
    """
    outcome = Outcome(hive)
    with hive.store.transaction():
        yield outcome
        if outcome.events or outcome.rings or outcome.resolved:
            outcome.id = hive.store.add_outbox(outcome._payload())


def drain(hive: Hive, before: Callable[[Outcome], None] | None = None) -> int:
    """Deliver every entry a previous daemon left undelivered (startup); returns how many.

    ``before(outcome)`` runs first for each: the work a crash may have cut short between the
    commit and the delivery (the core plants the tags the approvals record).
    """
    entries = hive.store.undelivered()
    for entry_id, payload in entries:
        log.warning("delivering outbox entry %s, left undelivered by a stop", entry_id)
        try:
            outcome = Outcome._load(hive, entry_id, payload)
        except Exception:  # written by this code: unreadable means a bug, not bad input
            log.exception("outbox entry %s is unreadable; marked delivered", entry_id)
            hive.store.delivered([entry_id])
            continue
        if before is not None:
            before(outcome)
        outcome.deliver()
    hive.store.prune_outbox(time.time() - OUTBOX_KEEP_SECONDS)
    return len(entries)
