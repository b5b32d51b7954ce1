"""Questions: an agent asks the operator or a peer agent, and hears what became of it.

A question is free text, or a choice among ``options`` (one, or several with ``multi``), with an
optional deadline. It ends exactly once:

* **answered** by its target (the operator, or the peer asked). The operator may also answer a
  peer's question (to unblock an asker whose peer does not answer).
* **cancelled** by its asker, or by hivekit when the asker or the target is destroyed.
* **expired** by the :class:`Watchdog` once its deadline passed. Deadlines are in the store, so
  a question whose deadline passed while the daemon was down expires when it starts.

The asker then gets a ``question_answered`` helper event in its inbox (with the answer and who
gave it, or that it expired or was cancelled); a peer target gets ``question_asked`` when asked.
Only questions to the operator are dashboard events (``question_added``/``question_resolved``).

Answers to option questions are checked against the options, and stored in the options' own
spelling (matching ignores case when unambiguous). A multi-select answer is a list of options or
one string of options separated by commas; so that a comma-separated answer is never ambiguous,
the options of a multi-select question may not contain commas. The stored ``answer`` of a
multi-select question is the chosen options, in the options' order, joined by ``", "``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from hivekit import events, hookimpl, outbox
from hivekit.errors import BadRequest, Conflict, Forbidden, NotFound
from hivekit.hive import OPERATOR, SYSTEM
from hivekit.names import check_id, check_name
from hivekit.records import Question

if TYPE_CHECKING:
    from hivekit.hive import Hive
    from hivekit.records import AgentSpec

log = logging.getLogger("hivekit.questions")

PENDING, ANSWERED, CANCELLED, EXPIRED = "pending", "answered", "cancelled", "expired"
STATUSES = (PENDING, ANSWERED, CANCELLED, EXPIRED)
MAX_QUESTION = 4000
MAX_OPTIONS = 20
MAX_OPTION = 200
MAX_ANSWER = 20000
#: The longest deadline a question may have, in seconds (30 days).
MAX_TIMEOUT = 30 * 86400.0
#: The separator of a multi-select answer's options, in and out.
SEPARATOR = ", "


def _options(options: list[str] | None, multi: bool) -> list[str]:
    if options is None:
        return []
    cleaned = [o.strip() for o in options]
    if len(cleaned) > MAX_OPTIONS:
        raise BadRequest(f"too many options ({len(cleaned)}; at most {MAX_OPTIONS})")
    for option in cleaned:
        if not option:
            raise BadRequest("options must not be empty")
        if len(option) > MAX_OPTION:
            raise BadRequest(f"option {option[:40]!r}... is too long (at most {MAX_OPTION} "
                             "characters)")
        if multi and "," in option:
            raise BadRequest(f"option {option!r} contains a comma: the options of a "
                             "multi-select question may not (answers list them comma-separated)")
    if len({o.casefold() for o in cleaned}) != len(cleaned):
        raise BadRequest("options must differ from each other (ignoring case)")
    return cleaned


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if not 0 < timeout <= MAX_TIMEOUT:  # also refuses NaN
        raise BadRequest(f"timeout must be more than 0 and at most {int(MAX_TIMEOUT)} seconds "
                         f"(30 days), got {timeout}")
    return time.time() + float(timeout)


def ask(hive: Hive, asker: str, question: str, *, to: str | None = OPERATOR,
        options: list[str] | None = None, multi: bool = False,
        timeout: float | None = None) -> Question:
    """``asker`` asks ``to`` (``"operator"`` or a registered agent) a question.

    :param options: the choices, or None/empty for a free-text answer.
    :param multi: the answer may pick several options (needs options).
    :param timeout: seconds until the question expires unanswered; None for never.
    :raises BadRequest: bad input (nothing is stored). :raises NotFound: no such target agent.
    """
    if not question.strip():
        raise BadRequest("question must not be empty")
    if len(question) > MAX_QUESTION:
        raise BadRequest(f"question is too long ({len(question)} characters; the limit is "
                         f"{MAX_QUESTION})")
    target = OPERATOR if to is None or to == OPERATOR else check_name(to)
    if target == asker:
        raise BadRequest("an agent cannot ask itself a question")
    if target != OPERATOR and not hive.store.has_agent(target):
        known = ", ".join(hive.store.agent_names()) or "none"
        raise NotFound(f"no agent named {target!r} to ask (agents: {known}; or ask the "
                       f"{OPERATOR})")
    choices = _options(options, multi)
    if multi and not choices:
        raise BadRequest("a multi-select question needs options")
    # The question and the helper event telling its target are written together (an outbox).
    with outbox.record(hive) as out:
        asked = hive.store.add_question(asker, target, question.strip(), options=choices,
                                        multi=multi, deadline=_deadline(timeout))
        if target == OPERATOR:
            out.publish(events.QuestionAdded(question=asked))
        else:
            out.notify(target, events.QuestionAskedHelper(
                id=asked.id, asker=asker, question=asked.question, options=asked.options,
                multi=asked.multi, deadline=asked.deadline))
    out.deliver()
    return asked


def _match(option: str, options: list[str]) -> str:
    if option in options:
        return option
    folded = [o for o in options if o.casefold() == option.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise BadRequest(f"{option!r} is not one of the options: {', '.join(options)}")


def selection(question: Question, answer: str | list[str]) -> tuple[str, list[str]]:
    """The stored text of ``answer`` to ``question`` and the options it selects.

    :raises BadRequest: the answer is empty, or not among the options, or several options for a
        single-choice question.
    """
    if not question.options:
        if not isinstance(answer, str) or not answer.strip():
            raise BadRequest("answer must be a non-empty string (this question has no "
                             "options to choose from)")
        if len(answer) > MAX_ANSWER:
            raise BadRequest(f"answer is too long ({len(answer)} characters; the limit is "
                             f"{MAX_ANSWER})")
        return answer, []
    if isinstance(answer, str):
        parts = answer.split(",") if question.multi else [answer]
    elif question.multi:
        parts = answer
    else:
        raise BadRequest("answer must be one of the options (a string), not a list: this "
                         "question takes one option")
    parts = [p.strip() for p in parts if p.strip()]
    if not parts:
        raise BadRequest(f"choose {'at least ' if question.multi else ''}one of the options: "
                         f"{', '.join(question.options)}")
    chosen = {_match(p, question.options) for p in parts}
    if not question.multi and len(chosen) > 1:
        raise BadRequest("this question takes one option, not several: "
                         f"{', '.join(question.options)}")
    ordered = [o for o in question.options if o in chosen]
    return SEPARATOR.join(ordered), ordered


def _selected(question: Question) -> list[str]:
    if not question.options or question.answer is None:
        return []
    return question.answer.split(SEPARATOR) if question.multi else [question.answer]


def _resolve(hive: Hive, question_id: int, status: str, *, answer: str | None = None,
             answered_by: str | None = None) -> Question:
    """Resolve a pending question and tell the dashboard (operator questions) and the asker,
    in one transaction with the helper event (an outbox): told exactly once, crash or not.

    :raises Conflict: it is no longer pending.
    """
    with outbox.record(hive) as out:
        question = hive.store.resolve_question(question_id, status, answer=answer,
                                               answered_by=answered_by)
        if question.target == OPERATOR:
            out.publish(events.QuestionResolved(question=question))
        if hive.store.has_agent(question.asker):
            out.notify(question.asker, events.QuestionAnsweredHelper(
                id=question.id, question=question.question, target=question.target,
                status=question.status, answer=question.answer,
                answered_by=question.answered_by, selected=_selected(question)))
    out.deliver()
    return question


def get(hive: Hive, question_id: int) -> Question:
    return hive.store.question(check_id(question_id, "question"))


def answer(hive: Hive, question_id: int, text: str | list[str], *, by: str) -> Question:
    """Answer a pending question as ``by``: its target, or the operator (who may answer any).

    :raises Forbidden: ``by`` is an agent the question was not asked of.
    :raises Conflict: the question is no longer pending. :raises NotFound: no such question.
    """
    question = get(hive, question_id)
    if by != OPERATOR and by != question.target:
        asked = "the operator" if question.target == OPERATOR else repr(question.target)
        raise Forbidden(f"question #{question.id} was asked of {asked}, not of {by!r}")
    if question.status != PENDING:
        raise Conflict(f"question #{question.id} is {question.status}, not pending")
    stored, _ = selection(question, text)
    return _resolve(hive, question.id, ANSWERED, answer=stored, answered_by=by)


def cancel(hive: Hive, question_id: int, *, by: str) -> Question:
    """The asker ``by`` withdraws its pending question.

    :raises Forbidden: ``by`` did not ask it. :raises Conflict: it is no longer pending.
    """
    question = get(hive, question_id)
    if by != question.asker:
        raise Forbidden(f"question #{question.id} was asked by {question.asker!r}; only the "
                        "asker can cancel it")
    return _resolve(hive, question.id, CANCELLED, answered_by=by)


def expire_due(hive: Hive, now: float | None = None) -> list[Question]:
    """Expire every pending question whose deadline passed; returns them."""
    expired = []
    for question in hive.store.due_questions(time.time() if now is None else now):
        try:
            expired.append(_resolve(hive, question.id, EXPIRED, answered_by=SYSTEM))
        except Conflict:  # answered or cancelled just now: that outcome stands
            continue
    return expired


def forget_agent(hive: Hive, agent: str) -> list[Question]:
    """Cancel the pending questions ``agent`` asked or was asked (it is being destroyed)."""
    cancelled = []
    for question in hive.store.questions_of(agent):
        try:
            cancelled.append(_resolve(hive, question.id, CANCELLED, answered_by=SYSTEM))
        except Conflict:
            continue
    return cancelled


def list_questions(hive: Hive, *, include_resolved: bool = False,
                   target: str | None = OPERATOR) -> list[Question]:
    """Questions to ``target`` (default the operator; None for everyone's), oldest first:
    pending ones, or every one with ``include_resolved``."""
    if target is not None and target != OPERATOR:
        target = check_name(target)
    return hive.store.questions(status=None if include_resolved else PENDING, target=target)


def involving(hive: Hive, agent: str) -> list[Question]:
    """The pending questions ``agent`` asked or was asked."""
    return hive.store.questions_of(agent)


# --- the watchdog ----------------------------------------------------------------------------


class Watchdog:
    """The core's plugin ``core-questions``: expires questions whose deadline passed.

    Its thread wakes at the next deadline, and at least every :attr:`POLL` seconds to notice
    questions asked since (an expiry is at most that late). Started by ``startup``, which first
    expires what passed while the daemon was down; stopped by ``shutdown``.
    """

    POLL = 1.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @hookimpl
    def startup(self, hive: Hive) -> None:
        expire_due(hive)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(hive,),
                                        name="question-watchdog", daemon=True)
        self._thread.start()

    def _run(self, hive: Hive) -> None:
        while not self._stop.is_set():
            try:
                upcoming = hive.store.next_deadline()
                pause = self.POLL if upcoming is None else upcoming - time.time()
                if self._stop.wait(min(max(pause, 0.0), self.POLL)):
                    break
                expire_due(hive)
            except Exception:  # one bad pass must not end the watchdog
                log.exception("question watchdog pass failed (retrying)")
                self._stop.wait(self.POLL)
        hive.store.close()

    @hookimpl
    def shutdown(self, hive: Hive) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @hookimpl(trylast=True)
    def destroy(self, hive: Hive, agent: AgentSpec, purge: bool) -> None:
        forget_agent(hive, agent.name)
