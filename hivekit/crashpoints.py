"""Every place where hivekit changes durable state: the points where a crash must be survived.

Each point is declared here once, with the operation that reaches it and what has just become
durable when it is reached; the code calls :meth:`hivekit.hive.Hive.checkpoint` with its name
right there (an undeclared name is a bug, refused at the call). The ``checkpoint`` hook hears
every point: the fake backend's crash control (``crash = {agent = "<point>"}``) SIGKILLs the
daemon at one, and ``tests/test_crash.py`` walks this table, killing a real daemon at each point
and checking that the restarted hive agrees with itself, so a new point is tested as soon as it
is declared.

The deploy steps (``tagged`` … ``finalized``, announced through ``deploy_step``) are points too.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class CrashPoint:
    name: str
    #: The operation that reaches it (the crash test drives one scenario per operation):
    #: ``apply``, ``apply-failure`` (its build fails), ``recovery`` (startup finishing an apply
    #: that was killed after its build), ``spawn``, ``spawn-failure``, ``deny``, ``destroy``,
    #: ``purge``, ``rebuild`` (the operator's).
    operation: str
    #: What has just become durable.
    durable: str


POINTS: dict[str, CrashPoint] = {p.name: p for p in (
    # An approved apply (hivekit.deploy.approve_apply).
    CrashPoint("apply.running", "apply",
               "the approval is running, main's sha recorded for the rollback; no tag yet"),
    CrashPoint("tagged", "apply", "approved/<id> and building/<id> are planted"),
    CrashPoint("main-moved", "apply", "main and the working tree are at the proposal"),
    CrashPoint("prepare", "apply", "nothing new: prepare_deploy hooks are about to run"),
    CrashPoint("build", "apply",
               "prepare_deploy ran and the agent is marked as building: the backend's rebuild "
               "is about to start, so the container may change from here on"),
    CrashPoint("apply.built", "apply",
               "the backend's rebuild returned: the container runs the proposal, untagged"),
    CrashPoint("verify", "apply",
               "nothing new: the build returned and the health checks are about to run (an "
               "interrupted verification is a failed deploy, rolled back)"),
    CrashPoint("deployed", "apply", "deployed/<id> is planted"),
    CrashPoint("finalized", "apply",
               "finalize_deploy ran; status approved, the build mark cleared, the manager's "
               "helper events, the agent's wake-up and the outbox entry are written"),
    CrashPoint("apply.delivered", "apply", "the outbox entry is delivered"),
    # A failing apply (hivekit.deploy._fail), also the end of every recovered apply.
    CrashPoint("apply.failing", "apply-failure",
               "the failure's reason is recorded on the running approval"),
    CrashPoint("apply.rolled-back", "apply-failure",
               "main and the working tree are back at the recorded sha"),
    CrashPoint("apply.aborted", "apply-failure", "abort_deploy hooks ran"),
    CrashPoint("apply.reconverged", "recovery",
               "the container was rebuilt from the restored main, or it could not be and the "
               "agent is marked as needing a rebuild"),
    CrashPoint("apply.failed-tagged", "apply-failure",
               "failed/<id> is planted, its body saying what became of the container"),
    CrashPoint("apply.failed", "apply-failure",
               "status failed, the manager's helper events and the outbox entry are written"),
    CrashPoint("apply.failed-delivered", "apply-failure", "the outbox entry is delivered"),
    # An approved spawn (hivekit.deploy.approve_spawn).
    CrashPoint("spawn.running", "spawn", "the approval is running"),
    CrashPoint("spawn.seeded", "spawn", "the agent's repos and folders exist, unregistered"),
    CrashPoint("spawn.built", "spawn", "the backend's spawn returned: the container exists"),
    CrashPoint("spawn.approved", "spawn",
               "the agent is registered; status approved, the manager's helper events and the "
               "outbox entry are written"),
    CrashPoint("spawn.delivered", "spawn", "the outbox entry is delivered"),
    CrashPoint("spawn.cleaned", "spawn-failure",
               "the failed spawn's reason is recorded; its half-made container is removed"),
    CrashPoint("spawn.failed", "spawn-failure",
               "status failed, the manager's helper events and the outbox entry are written"),
    CrashPoint("spawn.failed-delivered", "spawn-failure", "the outbox entry is delivered"),
    # A deny (hivekit.deploy.deny).
    CrashPoint("deny.denied", "deny",
               "status denied, the manager's helper event and the outbox entry are written; "
               "the denied/<id> tag is not"),
    CrashPoint("deny.tagged", "deny", "denied/<id> is planted"),
    CrashPoint("deny.delivered", "deny", "the outbox entry is delivered"),
    # A destroy keeping the tombstone (hivekit.actions.destroy), failing pending approvals.
    CrashPoint("destroy.marked", "destroy", "the destroy's intent is recorded"),
    CrashPoint("destroy.destroyed", "destroy", "the backend's destroy returned"),
    CrashPoint("destroy.removed", "destroy",
               "the agent is unregistered and its pending approvals failed, with the manager's "
               "helper events and the outbox entry, in one transaction"),
    CrashPoint("destroy.tagged", "destroy", "failed/<id> is planted for each failed apply"),
    CrashPoint("destroy.delivered", "destroy", "the outbox entry is delivered"),
    # A purge (destroy --purge).
    CrashPoint("purge.marked", "purge", "the purge's intent is recorded"),
    CrashPoint("purge.destroyed", "purge", "the backend's destroy returned"),
    CrashPoint("purge.trashed-agent", "purge",
               "agents/<n> (config, notes, creds) is moved into the trash in one rename"),
    CrashPoint("purge.trashed-applied", "purge",
               "applied/<n> is moved into the trash in one rename"),
    CrashPoint("purge.removed", "purge",
               "the agent is unregistered and its pending approvals failed, with the manager's "
               "helper events and the outbox entry, in one transaction"),
    CrashPoint("purge.deleted", "purge", "the trash is deleted"),
    CrashPoint("purge.delivered", "purge", "the outbox entry is delivered"),
    # The operator's rebuild (hivekit.actions.rebuild).
    CrashPoint("rebuild.marked", "rebuild", "the agent is marked as building"),
    CrashPoint("rebuild.built", "rebuild", "the backend's rebuild returned"),
    CrashPoint("rebuild.done", "rebuild",
               "the build mark cleared, the manager's helper event and the outbox entry are "
               "written"),
    CrashPoint("rebuild.delivered", "rebuild", "the outbox entry is delivered"),
)}

#: The deploy steps, in order, as ``deploy_step`` announces them (each is a point above).
DEPLOY_STEPS = ("tagged", "main-moved", "prepare", "build", "verify", "deployed", "finalized")
