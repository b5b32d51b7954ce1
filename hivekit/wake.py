"""What an agent is told when it comes back up: one template for every wake-up.

A wake-up is a message from ``system`` in the agent's inbox, sent after its config update was
applied, after the operator started, restarted or rebuilt it, and after an update rebuild
(``hivekit meta update-hive``). Its text is ``[hive] wake_template`` with three placeholders:

* ``{reason}``: what happened, in the operator's words ("config update applied: approval #7
  deployed ab12cd34ef56 (deployed/7)", "restarted by the operator"...);
* ``{notes}``: the agent's notes dir as the agent sees it (its backend's mount table:
  ``/agents/<n>/state`` in a NixOS container, the host path for a plain process);
* ``{name}``: the agent's name.

The default is what hive-c0re told its agents (coordinator.rs ``kick_agent``), word for word.
"""

from __future__ import annotations

import logging
import string
from typing import TYPE_CHECKING

from hivekit.config import WAKE_TEMPLATE

if TYPE_CHECKING:
    from hivekit.hive import Hive
    from hivekit.records import AgentSpec

log = logging.getLogger("hivekit.wake")

#: hive-c0re's wake-up: ``[hive] wake_template``'s default.
DEFAULT_TEMPLATE = WAKE_TEMPLATE
#: The placeholders a template may use.
FIELDS = frozenset({"reason", "notes", "name"})


def check_template(value: str) -> None:
    """Raise ValueError unless ``value`` is a template hivekit can fill in (a config check)."""
    try:
        fields = {f for _text, f, spec, conv in string.Formatter().parse(value)
                  if f is not None}
        specs = [(f, spec, conv) for _text, f, spec, conv in string.Formatter().parse(value)
                 if f is not None and (spec or conv)]
    except ValueError as exc:
        raise ValueError(f"is not a template: {exc} (write a literal brace as {{{{ or }}}})"
                         ) from None
    unknown = sorted(fields - FIELDS)
    if unknown:
        raise ValueError(f"names {', '.join('{' + f + '}' for f in unknown)}, which hivekit "
                         f"does not fill in (it knows {{reason}}, {{notes}} and {{name}}; "
                         "write a literal brace as {{ or }})")
    if specs:
        raise ValueError("takes plain placeholders only ({reason}, not {reason:x} or "
                         "{reason!r})")
    if len(value) > 8000:
        raise ValueError(f"is too long ({len(value)} characters; at most 8000)")


def message(hive: Hive, agent: AgentSpec, reason: str) -> str:
    """The wake-up ``agent`` gets for ``reason``, its notes path as it sees it."""
    try:
        notes = hive.inside(agent, agent.paths.state)
    except Exception as exc:  # a backend's mount table that failed: the host's path is a hint
        log.warning("wake-up of %s: its backend's mount table failed (%s); naming the host "
                    "path of its notes", agent.name, exc)
        notes = None
    notes = (notes or str(agent.paths.state)).rstrip("/")
    return hive.config.hive.wake_template.format(reason=reason, notes=notes, name=agent.name)
