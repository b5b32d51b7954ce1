"""The hive's records: immutable attrs classes; :mod:`hivekit.convert` turns them into JSON/rows.

Times are UNIX epoch seconds (floats): sortable, timezone-free, and what a browser's ``Date`` takes
after ``* 1000``.
"""

from __future__ import annotations

import enum
from pathlib import Path

from attrs import field, frozen


class ApprovalKind(enum.StrEnum):
    SPAWN = "spawn"
    APPLY = "apply"


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    APPROVED = "approved"
    DENIED = "denied"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (ApprovalStatus.APPROVED, ApprovalStatus.DENIED, ApprovalStatus.FAILED)


class Transient(enum.StrEnum):
    """What a lifecycle operation is doing to an agent right now (shown as a pulsing pill)."""

    SPAWNING = "spawning"
    STARTING = "starting"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    REBUILDING = "rebuilding"
    #: A deploy waits for the agent to prove healthy after its build (the ``verify`` step).
    VERIFYING = "verifying"
    DESTROYING = "destroying"


@frozen
class AgentPaths:
    """Every directory that belongs to one agent (all derived from the hive's config)."""

    #: The "proposed" repo: the manager edits and commits here.
    config: Path
    #: The agent's durable notes (forge-token lives here).
    state: Path
    #: Model credentials, mode 0700, kept across destroy.
    creds: Path
    #: The "applied" repo: hivekit-only; what the container builds from.
    applied: Path
    #: Runtime dir holding ``hive.sock``; bound at ``/run/hive`` inside the container.
    runtime: Path

    @property
    def root(self) -> Path:
        """``<state_dir>/agents/<n>``: config, state and creds live under it."""
        return self.config.parent

    @property
    def socket(self) -> Path:
        return self.runtime / "hive.sock"


@frozen
class AgentSpec:
    """Who an agent is: what a backend needs to create, build and run it."""

    name: str
    #: The agent's deterministic web port (see :mod:`hivekit.ports`).
    port: int
    is_manager: bool
    paths: AgentPaths


@frozen
class Mount:
    """One entry of an agent's mount table: a host directory its sandbox or container shows."""

    #: The directory on the host.
    host: Path
    #: Where the agent sees it (an absolute path inside its sandbox or container).
    inside: str
    #: Whether the agent may only read it.
    read_only: bool = False


class BadgeLevel(enum.StrEnum):
    """How much a badge asks of the operator: ``info`` (to know), ``warning`` (to act on soon),
    ``error`` (the agent cannot work until someone acts)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@frozen
class Badge:
    """A short label next to an agent, with how serious it is and what to do about it."""

    #: A few words: "needs login", "no sandbox".
    label: str
    level: BadgeLevel = BadgeLevel.INFO
    #: What it means and the command that fixes it (shown as a tooltip, and by ``hivekit agents``).
    detail: str = ""


class AgentStatus(enum.StrEnum):
    """What an agent's container is doing, as the backend last said (see ``hive.report_status``)."""

    #: Up.
    RUNNING = "running"
    #: Not running, and not trying to (stopped, never started, or a start that failed).
    STOPPED = "stopped"
    #: Wanted up but not staying up: crash-looping, or its unit failed.
    FAILING = "failing"
    #: Being spawned: not registered yet (and not shown as a tombstone meanwhile).
    SPAWNING = "spawning"


@frozen
class AgentView:
    """An agent as the operator sees it: one row of ``GET /api/state``'s ``agents``, of
    ``hivekit agents --json``, and the ``agent`` of every ``agent_changed`` event.

    The core keeps every row in memory (:mod:`hivekit.view`), remade when a lifecycle operation
    or a deploy ends and updated when the backend reports a status change, so reading one never
    asks the backend anything.
    """

    name: str
    #: One of :class:`AgentStatus`: ``running``, ``stopped``, ``failing`` or ``spawning``.
    status: str
    port: int
    #: The applied repo's ``main``: what is deployed.
    deployed_sha: str | None
    transient: Transient | None
    badges: list[Badge] = field(factory=list)
    is_manager: bool = False
    #: The backend's own words about the status ("crashed, restarting (restart 4)"), if any.
    detail: str | None = None
    #: The exit code of the agent's last process, when the backend knows it (a crash, a failed
    #: start); negative for a signal.
    exit_code: int | None = None
    #: The last lines of the agent's output the backend reported with the status (oldest first).
    output: list[str] = field(factory=list)


@frozen
class ExecPlan:
    """How to run a command inside an agent's sandbox or container (``hivekit exec``).

    The daemon only plans; the CLI runs the plan on the hive's host, as its own process, so an
    interactive command gets the operator's terminal. A plan carries no secret: a backend points
    its command at the agent's creds instead of copying their values into ``env``.
    """

    #: The command line to run on the host (the command inside the sandbox comes last).
    argv: list[str]
    #: Its whole environment (the CLI adds ``TERM`` when it has a terminal).
    env: dict[str, str] = field(factory=dict)
    #: The host directory to run it in; None for the CLI's own.
    cwd: str | None = None


@frozen
class AgentLog:
    """The end of an agent's own output (``GET /api/agents/{name}/logs``, ``hivekit logs``)."""

    agent: str
    lines: list[str] = field(factory=list)


@frozen
class Tombstone:
    """A destroyed agent whose state was kept: re-spawnable under the same name, purgeable."""

    name: str
    deployed_sha: str | None


@frozen
class Approval:
    """A spawn or apply request and what became of it."""

    id: int
    kind: ApprovalKind
    agent: str
    status: ApprovalStatus
    #: The commit an apply deploys: always the full sha fetched as ``proposal/<id>`` (never a
    #: ref such as ``HEAD``: what was typed is :attr:`ref`); None for spawns.
    commit: str | None
    #: The full sha fetched as ``proposal/<id>`` (for spawns: the deployed init commit).
    sha: str | None
    description: str
    #: The operator's deny note, or the failure reason.
    note: str | None
    #: The terminal git tag (``deployed/<id>``, ``failed/<id>``, ``denied/<id>``, ``deployed/0``).
    tag: str | None
    created_at: float
    resolved_at: float | None = None
    #: ``main`` before the deploy moved it; what a failed or interrupted deploy goes back to.
    prev_sha: str | None = None
    #: An apply's commit as the requester typed it (``HEAD``, ``main``, an abbreviated sha),
    #: resolved to :attr:`commit` when it was requested; None for spawns.
    ref: str | None = None
    #: The template a spawn seeds a new agent's config with (``hivekit request spawn NAME
    #: --template claude``); None for the backend's default, and for applies.
    template: str | None = None


@frozen
class Request:
    """A spawn or apply the manager (or the operator) asks for, before it becomes an approval:
    what ``check_request`` hooks judge."""

    kind: ApprovalKind
    #: The agent to spawn (it does not exist yet: nothing of it is made) or to apply to.
    agent: AgentSpec
    #: For an apply: the ref or sha asked for, and the full sha it names in the agent's
    #: proposed repo (not yet fetched into the applied repo). None for a spawn.
    commit: str | None = None
    sha: str | None = None
    description: str = ""


@frozen
class ApprovalDetail:
    """One approval with the diff the operator decides on."""

    approval: Approval
    #: The diff, at most ``[hive] max_diff_bytes`` of it; a cut one ends with the marker line
    #: "… diff truncated: N of M bytes shown; ...".
    diff: str
    #: The whole diff's size in bytes (0 for a spawn).
    diff_bytes: int = 0
    #: Whether :attr:`diff` was cut.
    diff_truncated: bool = False


@frozen
class Message:
    """One broker message in a recipient's inbox."""

    id: int
    sender: str
    recipient: str
    body: str
    created_at: float
    acked_at: float | None = None


@frozen
class Question:
    """A question asked by an agent of the operator (``target == "operator"``) or of a peer."""

    id: int
    asker: str
    target: str
    question: str
    options: list[str] = field(factory=list)
    multi: bool = False
    deadline: float | None = None
    #: ``pending``, ``answered``, ``cancelled`` or ``expired``.
    status: str = "pending"
    answer: str | None = None
    answered_by: str | None = None
    created_at: float = 0.0
    resolved_at: float | None = None


@frozen
class Deploy:
    """One approval's deploy, as the deploy-phase hooks see it."""

    approval_id: int
    agent: AgentSpec
    #: The commit being deployed (the proposal).
    sha: str
    #: ``main`` before this deploy.
    prev_sha: str

    @property
    def deployed_tag(self) -> str:
        return f"deployed/{self.approval_id}"
