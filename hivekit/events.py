"""Events: what the dashboard hears (on the bus) and what the manager hears (in its inbox).

Both are tagged unions: one small frozen class per type, serialised by :mod:`hivekit.convert` as
JSON with a ``"type"`` key taken from the class's ``TYPE``. Consumers ``match`` on the classes.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import ClassVar

from attrs import field, frozen

from hivekit.records import AgentView, Approval, Message, Question, Tombstone, Transient

# --- dashboard events (published on the bus, stamped with a seq) --------------------------------


@frozen
class ApprovalAdded:
    TYPE: ClassVar[str] = "approval_added"
    approval: Approval


@frozen
class ApprovalChanged:
    """An approval's status moved (pending → running, or to a terminal state)."""

    TYPE: ClassVar[str] = "approval_changed"
    approval: Approval


@frozen
class QuestionAdded:
    TYPE: ClassVar[str] = "question_added"
    question: Question


@frozen
class QuestionResolved:
    TYPE: ClassVar[str] = "question_resolved"
    question: Question


@frozen
class MessageSent:
    TYPE: ClassVar[str] = "message"
    message: Message


@frozen
class MessagesRead:
    """Messages of the operator's inbox were marked read (acknowledged) by the operator."""

    TYPE: ClassVar[str] = "messages_read"
    recipient: str
    ids: list[int]


@frozen
class AgentChanged:
    """An agent's row changed, whatever changed in it: the whole new row, so a client replaces
    its copy instead of reloading the snapshot.

    ``agent`` is the row (also while it is being spawned: status ``spawning``), or None when
    the agent has no row any more (destroyed, or a spawn that failed). ``tombstone`` is the
    tombstone the name leaves when there is no row and its state was kept (destroyed without
    ``--purge``), else None: a client sets or deletes both entries by ``name``.
    """

    TYPE: ClassVar[str] = "agent_changed"
    name: str
    agent: AgentView | None
    tombstone: Tombstone | None = None


@frozen
class TransientChanged:
    """A lifecycle operation began (``transient`` set) or ended (None) on agent ``name``.

    An agent with a row also gets an ``agent_changed`` with the row's new ``transient``; this
    event keeps the snapshot's ``transients`` map current (also for names without a row: a
    purge of a tombstone)."""

    TYPE: ClassVar[str] = "transient"
    name: str
    transient: Transient | None


@frozen
class LogLine:
    """One line of a lifecycle operation's output (a build, a start...)."""

    TYPE: ClassVar[str] = "log"
    agent: str
    line: str
    stream: str = "stdout"


@frozen
class DeployStep:
    TYPE: ClassVar[str] = "deploy_step"
    approval_id: int
    agent: str
    step: str


Event = (
    ApprovalAdded
    | ApprovalChanged
    | QuestionAdded
    | QuestionResolved
    | MessageSent
    | MessagesRead
    | AgentChanged
    | TransientChanged
    | LogLine
    | DeployStep
)


@frozen
class Envelope:
    """An event as delivered: its seq (monotonic across the daemon's life) and the event."""

    seq: int
    event: Event

    @cached_property
    def json(self) -> str | None:
        """The event as compact JSON with its ``type``, computed once however many subscribers
        send it on (a race computes it twice, harmlessly).

        None when the event cannot be encoded (a plugin published a value of the wrong type):
        logged once with the event's seq, and subscribers skip that event only; their
        streams stay open.
        """
        from hivekit.convert import to_json

        try:
            return to_json(self.event, Event)
        except Exception:
            logging.getLogger("hivekit.bus").exception(
                "event #%s (%s) cannot be encoded; dropped", self.seq, type(self.event).__name__)
            return None


# --- helper events (JSON bodies of ``system`` messages in an agent's inbox) ---------------------
# The manager hears about approvals, spawns, rebuilds and destroys; any agent hears about the
# questions it asked (``question_answered``) and the questions peers ask it (``question_asked``).


@frozen
class ApprovalResolvedHelper:
    """An approval reached a terminal state. ``tag`` names the git tag that proves it.

    ``commit`` is the full sha an apply deployed (or tried to); ``ref`` what was asked for
    (``HEAD``, a branch, an abbreviated sha), resolved to that sha when it was requested.
    """

    TYPE: ClassVar[str] = "approval_resolved"
    id: int
    kind: str
    agent: str
    status: str
    commit: str | None
    sha: str | None
    tag: str | None
    note: str | None
    ref: str | None = None


@frozen
class SpawnedHelper:
    TYPE: ClassVar[str] = "spawned"
    agent: str
    ok: bool
    sha: str | None
    note: str | None


@frozen
class RebuiltHelper:
    TYPE: ClassVar[str] = "rebuilt"
    agent: str
    ok: bool
    sha: str | None
    tag: str | None
    note: str | None


@frozen
class DestroyedHelper:
    TYPE: ClassVar[str] = "destroyed"
    agent: str
    purge: bool


@frozen
class QuestionAskedHelper:
    """A peer agent asked this agent a question; answer it with the ``answer`` operation."""

    TYPE: ClassVar[str] = "question_asked"
    id: int
    asker: str
    question: str
    options: list[str]
    multi: bool
    #: UNIX time after which the question expires unanswered; None for no deadline.
    deadline: float | None


@frozen
class QuestionAnsweredHelper:
    """A question this agent asked was resolved.

    ``status`` is ``answered`` (``answer``/``selected`` hold the answer, ``answered_by`` who gave
    it: ``operator`` or an agent's name), ``expired`` (its deadline passed) or ``cancelled``
    (``answered_by`` says who cancelled it). ``selected`` lists the chosen options of an option
    question (one for single-choice), empty for free text.
    """

    TYPE: ClassVar[str] = "question_answered"
    id: int
    question: str
    target: str
    status: str
    answer: str | None
    answered_by: str | None
    selected: list[str] = field(factory=list)


HelperEvent = (
    ApprovalResolvedHelper
    | SpawnedHelper
    | RebuiltHelper
    | DestroyedHelper
    | QuestionAskedHelper
    | QuestionAnsweredHelper
)
